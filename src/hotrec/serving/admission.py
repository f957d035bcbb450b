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
  limit is in use; multiplicative decrease when one is late, at most once per `limit`
  answers (the requests admitted before the cut must not cut it again). So in flight stays
  near what the server completes within the target, however much more is offered.
"""

from __future__ import annotations

DECREASE = 0.75  # the limit's factor after a late answer
START = 8.0  # requests in flight allowed before answers were measured (it grows from there)
HEADROOM = 0.7  # the share of the target an answer may take inside the server: the rest is
# for what it cannot see (the kernel's and the event loop's backlog, the network); at 5x the
# capacity offered on 2 shared cores, 0.7 gave 0.71-0.92 of capacity within the target and
# 1.0 gave 0.47-0.68 (3 runs each)


class InflightLimit:
    """At most `limit` requests in flight, the limit adapted to answers' latency against
    HEADROOM x `target_s`; never below 1 nor above `ceiling`."""

    def __init__(self, target_s: float, ceiling: int) -> None:
        self.budget_s, self.ceiling = HEADROOM * target_s, max(1, ceiling)
        self.limit = min(START, float(self.ceiling))
        self.inside = 0  # requests in flight now
        self._since_cut = 0  # answers since the last decrease

    def full(self) -> bool:
        """No room for one more request now."""
        return self.inside >= int(self.limit)

    def enter(self) -> None:
        self.inside += 1

    def leave(self, latency_s: float | None) -> None:
        """A request left; `latency_s`: its arrival -> answer time (None: no answer that
        says anything about the service, e.g. the client went away)."""
        busy = self.inside >= int(self.limit)  # was the limit in use?
        self.inside -= 1
        if latency_s is None:
            return
        self._since_cut += 1
        if latency_s > self.budget_s:
            if self._since_cut >= int(self.limit):  # from what was in use, not the bound
                self.limit = max(1.0, min(self.limit, self.inside + 1.0) * DECREASE)
                self._since_cut = 0
        elif busy:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
