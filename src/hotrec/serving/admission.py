"""Deadline-aware admission at the front: an in-flight bound that follows the target.

A server past its capacity that accepts everything answers everything late: each query
waits behind all the ones accepted before it, and goodput (answers within the target)
collapses. Two checks refuse, cheaply and before a body is parsed, what would be late:

- the batcher's (`Batcher.likely_late`): the queued queries' profiled batch times times the
  slowdown observed while serving, i.e. the models' measured service rate;
- this one, `InflightLimit`: the requests in flight (read, being parsed, queued, computed,
  answered) are bounded by a limit that adapts to the measured latency of the answers, so
  that the work the batcher's queue does not see (reading, parsing, answering; a CPU shared
  with other processes) is covered too. Additive increase while answers are on time and the
  limit is in use; multiplicative decrease when more of the latest WINDOW answers took
  longer than HEADROOM x the target than the target's percentile allows (a tail of slow
  answers at light load is the service's own, not a queue). So in flight stays near what
  the server completes within the target, however much more is offered.
"""

from __future__ import annotations

from collections import deque

DECREASE = 0.75  # the limit's factor when too many of the latest answers were late
WINDOW = 20  # the latest answers judged
START = 8.0  # requests in flight allowed before answers were measured (it grows from there)
HEADROOM = 0.7  # the share of the target an answer may take inside the server: the rest
# is for what it cannot see (the kernel's and the event loop's backlog, the network). At 5x
# the capacity on 2 cores shared with the load generator (the artifact and load of
# benchmarks/serving_overload.py, one 4 s run each), 0.7 kept 0.67 of the capacity within
# the target where 0.85 kept 0.47


class InflightLimit:
    """At most `limit` requests in flight, the limit adapted to how many of the latest
    answers took longer than HEADROOM x `target_s`: more than `late_share` of them (the
    share the target's percentile allows) cuts it, an answer on time while at least half of
    it was in use grows it. Never below 1 nor above `ceiling`."""

    def __init__(self, target_s: float, ceiling: int, late_share: float = 0.05) -> None:
        self.budget_s, self.ceiling = HEADROOM * target_s, max(1, ceiling)
        self.late_share = late_share
        self.limit = min(START, float(self.ceiling))
        self.inside = 0  # requests in flight now
        self._late: deque[bool] = deque(maxlen=WINDOW)  # the latest answers: late or not

    def full(self) -> bool:
        """No room for one more request now."""
        return self.inside >= int(self.limit)

    def enter(self) -> None:
        self.inside += 1

    def leave(self, latency_s: float | None) -> None:
        """A request left; `latency_s`: its arrival -> answer time (None: no answer that
        says anything about the service, e.g. the client went away)."""
        busy = 2 * self.inside >= self.limit  # was half of the limit in use, at least?
        self.inside -= 1
        if latency_s is None:
            return
        late = latency_s > self.budget_s
        self._late.append(late)
        if len(self._late) == WINDOW and sum(self._late) > self.late_share * WINDOW:
            # cut from what was in use, not from the bound; judge afresh after a cut
            self.limit = max(1.0, min(self.limit, self.inside + 1.0) * DECREASE)
            self._late.clear()
        elif not late and busy:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
