"""Policy decisions on synthetic profiles with a fake clock (no model, no threads)."""

from __future__ import annotations

import numpy as np
import pytest

from hotrec.errors import HotrecError
from hotrec.serving.paths import ServingPath, parse_path
from hotrec.serving.policies import MPRecPolicy, Pending, StaticPolicy, make_policy
from hotrec.serving.policies.base import batch_limit, head_batch
from hotrec.serving.profile import PathProfile, Profile, quantile_for


def linear(path: ServingPath, acc: float, fixed_ms: float, per_item_ms: float) -> PathProfile:
    """A path whose latency is fixed + per_item x items (p95 = p99 = 1.2 x median)."""
    sizes = [1, 16, 256, 1024, 4096]
    median = [fixed_ms + per_item_ms * b for b in sizes]
    latency = {"median": median, "p95": [1.2 * m for m in median], "p99": [1.2 * m for m in median]}
    return PathProfile(path, acc, acc + 0.01, sizes, latency)


TABLE = ServingPath("table", "cpu")
DHE = ServingPath("dhe", "cpu")
HYBRID = ServingPath("hybrid", "cpu")
HYBRID_GPU = ServingPath("hybrid", "cuda")


def cpu_profile() -> Profile:
    """table: cheap, least accurate; dhe: middle; hybrid: slowest, most accurate."""
    return Profile(
        {
            "table@cpu": linear(TABLE, 0.780, 0.2, 0.01),  # 164 items: ~2.2 ms (p95)
            "dhe@cpu": linear(DHE, 0.785, 0.5, 0.06),  # ~12.4 ms
            "hybrid@cpu": linear(HYBRID, 0.790, 0.8, 0.10),  # ~20.6 ms
        }
    )


def mprec(profile: Profile | None = None, target: float = 25.0, **kw) -> MPRecPolicy:
    return MPRecPolicy(target, 95.0, **kw).fit(profile or cpu_profile())


def test_light_load_takes_the_most_accurate_path():
    d = mprec().decide([Pending(164, 0.0)], now_ms=0.0, free_at_ms={"cpu": 0.0})
    assert d.path == HYBRID and d.queries == 1 and d.items == 164 and d.meets_target
    assert d.finish_ms == pytest.approx(1.2 * (0.8 + 0.1 * 164))


def test_a_query_that_waited_falls_back_to_a_cheaper_path():
    policy = mprec()
    # waited 10 ms: hybrid (20.6 ms) would finish at 30.6 > 25, dhe (12.4) at 22.4
    assert policy.decide([Pending(164, 0.0)], 10.0, {"cpu": 10.0}).path == DHE
    # waited 20 ms: only table (2.2 ms) still meets the target
    assert policy.decide([Pending(164, 0.0)], 20.0, {"cpu": 20.0}).path == TABLE


def test_a_busy_device_counts_as_queue_wait():
    d = mprec().decide([Pending(164, 0.0)], 0.0, {"cpu": 15.0})
    assert d.path == TABLE and d.finish_ms == pytest.approx(15.0 + 1.2 * (0.2 + 1.64))


def test_an_observed_slowdown_makes_paths_slower():
    policy = mprec()
    # twice as slow as profiled: hybrid (41 ms) misses, dhe (24.8 ms) still meets
    d = policy.decide([Pending(164, 0.0)], 0.0, {"cpu": 0.0}, slowdown={"cpu": 2.0})
    assert d.path == DHE and d.finish_ms == pytest.approx(2 * 1.2 * (0.5 + 0.06 * 164))
    static = StaticPolicy(TABLE).fit(cpu_profile())
    slow = static.decide([Pending(164, 0.0)], 0.0, {"cpu": 0.0}, slowdown={"cpu": 3.0})
    assert slow.finish_ms == pytest.approx(3 * 1.2 * (0.2 + 0.01 * 164))


def test_earliest_finish_is_the_fastest_path_draining_the_queue():
    policy, static = mprec(), StaticPolicy(HYBRID).fit(cpu_profile())
    # 164 items: table (fastest) runs them in one batch of 2.2 ms after the device frees up
    assert policy.earliest_finish_ms(164, 0.0, {"cpu": 3.0}) == pytest.approx(3.0 + 2.208)
    # hybrid's batches are capped at half the target (12.5 ms -> 96 items): 3 batches
    limit = batch_limit(HYBRID, lambda b: 1.2 * (0.8 + 0.1 * b), 12.5)
    assert limit == 96
    want = 2 * 1.2 * (0.8 + 9.6) + 1.2 * (0.8 + 0.1 * 58)
    assert static.earliest_finish_ms(250, 0.0, {"cpu": 0.0}) == pytest.approx(want)
    assert np.isnan(StaticPolicy(TABLE).fit(None).earliest_finish_ms(5, 0.0, {"cpu": 0.0}))


def test_nothing_meets_the_target_takes_the_earliest_finish():
    d = mprec().decide([Pending(164, 0.0)], 40.0, {"cpu": 40.0})
    assert d.path == TABLE and not d.meets_target


def test_lookahead_protects_the_queries_behind():
    small = Profile(
        {
            "table@cpu": linear(TABLE, 0.78, 0.1, 0.004),  # 100 items 0.6 ms, 1000: 4.9 ms
            "hybrid@cpu": linear(HYBRID, 0.79, 0.1, 0.05),  # 100 items 6.1 ms
        }
    )
    limited = [ServingPath("table", "cpu", 1000), ServingPath("hybrid", "cpu", 1000)]
    # All waited 15 ms; the head batch is the 100-item query alone (1,000-item limit).
    queue = [Pending(100, -15.0), Pending(1000, -15.0), Pending(1000, -15.0)]
    policy = MPRecPolicy(25.0, 95.0, limited).fit(small)
    greedy = MPRecPolicy(25.0, 95.0, limited, lookahead=False).fit(small)
    # hybrid meets the head's target (21.1 ms) but the next batch would then end at 26 ms
    assert greedy.decide(queue, 0.0, {"cpu": 0.0}).path.representation == "hybrid"
    d = policy.decide(queue, 0.0, {"cpu": 0.0})
    assert d.path.representation == "table" and d.queries == 1 and d.meets_target


def test_batches_respect_the_path_limit():
    queue = [Pending(300, 0.0), Pending(300, 1.0), Pending(300, 2.0), Pending(300, 3.0)]
    assert head_batch(queue, 1000) == (3, 900)
    assert head_batch(queue, 100) == (1, 300)  # at least one query, even an oversized one
    static = StaticPolicy(ServingPath("table", "cpu", 600)).fit(cpu_profile())
    d = static.decide(queue, 5.0, {"cpu": 5.0})
    assert (d.queries, d.items) == (2, 600)


def test_static_always_answers_with_its_path():
    static = make_policy("static:hybrid@cpu", [TABLE, DHE, HYBRID], cpu_profile(), 25.0, 95.0)
    assert static.name == "static:hybrid@cpu"
    late = static.decide([Pending(164, 0.0)], 100.0, {"cpu": 100.0})
    assert late.path == HYBRID and not late.meets_target
    # without a profile it still decides, with no prediction
    blind = StaticPolicy(TABLE).fit(None).decide([Pending(5, 0.0)], 0.0, {"cpu": 0.0})
    assert blind.path == TABLE and np.isnan(blind.finish_ms)


def test_mprec_prefers_an_idle_gpu_path_and_waits_for_a_better_one():
    profile = cpu_profile()
    profile.paths["hybrid@cuda"] = linear(HYBRID_GPU, 0.790, 1.0, 0.001)
    policy = mprec(profile)
    free = {"cpu": 0.0, "cuda": 0.0}
    assert policy.decide([Pending(164, 0.0)], 0.0, free).path == HYBRID_GPU
    # the GPU busy for 5 ms more still beats any CPU path on accuracy within the target
    d = policy.decide([Pending(164, 0.0)], 0.0, {"cpu": 0.0, "cuda": 5.0})
    assert d.path == HYBRID_GPU and d.meets_target
    # busy for 30 ms: take the CPU's most accurate path that meets the target instead
    assert policy.decide([Pending(164, 0.0)], 0.0, {"cpu": 0.0, "cuda": 30.0}).path == HYBRID
    # a policy fitted with GPU paths but served on the CPU only ignores them
    assert policy.decide([Pending(164, 0.0)], 0.0, {"cpu": 0.0}).path == HYBRID


def simulate(
    policy, rate_qps: float, seconds: float = 30.0, seed: int = 0, use_load: bool = True
) -> dict:
    """A single-device queue with Poisson arrivals of 164-item queries on a fake clock;
    execution takes exactly the profiled median. Returns the path shares and the share of
    queries completed within 25 ms."""
    profile = cpu_profile()
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1e3 / rate_qps, int(rate_qps * seconds)))
    queue: list[Pending] = []
    now, i, done, counts, within = 0.0, 0, 0, {}, 0
    while done < len(arrivals):
        if not queue:  # idle: jump to the next arrival
            now = max(now, arrivals[i])
        while i < len(arrivals) and arrivals[i] <= now:
            queue.append(Pending(164, float(arrivals[i])))
            i += 1
        recent = i - np.searchsorted(arrivals, now - 500.0)  # arrivals in the last 500 ms
        load = 164 * recent / 500.0 if use_load else 0.0  # items/ms
        d = policy.decide(queue, now, {"cpu": now}, load)
        now += profile[d.path.name].latency_ms(d.items, "median")
        for q in queue[: d.queries]:
            within += now - q.arrival_ms <= 25.0
        counts[d.path.representation] = counts.get(d.path.representation, 0) + d.queries
        done += d.queries
        del queue[: d.queries]
    return {"share": {k: v / done for k, v in counts.items()}, "within": within / done}


ACCURACY = {"table": 0.780, "dhe": 0.785, "hybrid": 0.790}


def correct_per_s(sim: dict, rate: float) -> float:
    """Expected correct predictions/s within the target (per 164-item query)."""
    return sim["within"] * rate * 164 * sum(ACCURACY[k] * v for k, v in sim["share"].items())


def test_rising_load_moves_mprec_to_cheaper_paths():
    light, medium, heavy = (simulate(mprec(), r) for r in (5.0, 40.0, 300.0))
    assert light["share"]["hybrid"] > 0.85
    assert medium["share"]["hybrid"] < 0.5 and medium["share"]["dhe"] > 0.3  # the middle path
    assert heavy["share"]["table"] > 0.95
    assert min(light["within"], medium["within"], heavy["within"]) > 0.95


def test_mprec_matches_the_best_static_path_and_beats_the_accurate_one():
    statics = [StaticPolicy(p).fit(cpu_profile()) for p in (TABLE, DHE, HYBRID)]
    for rate in (5.0, 60.0, 300.0):
        ours = correct_per_s(simulate(mprec(), rate), rate)
        theirs = [correct_per_s(simulate(s, rate), rate) for s in statics]
        assert ours >= 0.99 * max(theirs), (rate, ours, theirs)
    # at 60 queries/s the most accurate static path is overloaded, mprec is not
    hybrid_only = correct_per_s(simulate(statics[2], 60.0), 60.0)
    assert correct_per_s(simulate(mprec(), 60.0), 60.0) > 2.5 * hybrid_only


def test_the_load_estimate_keeps_mprec_off_slow_paths_near_capacity():
    aware = simulate(mprec(), 400.0)
    blind = simulate(mprec(), 400.0, use_load=False)
    assert aware["within"] > blind["within"] + 0.05
    assert aware["share"].get("hybrid", 0) < blind["share"].get("hybrid", 0)


def test_profile_interpolation_and_round_trip(tmp_path):
    p = linear(TABLE, 0.78, 1.0, 0.01)
    assert p.latency_ms(16, "median") == pytest.approx(1.16)
    assert p.latency_ms(136, "median") == pytest.approx(1.0 + 0.01 * 136)  # between 16 and 256
    assert p.latency_ms(8192, "median") == pytest.approx((1.0 + 40.96) * 2)  # proportional
    prof = cpu_profile()
    loaded = Profile.load(prof.save(tmp_path / "p.json"))
    assert loaded.paths.keys() == prof.paths.keys()
    assert loaded["dhe@cpu"].latency == prof["dhe@cpu"].latency
    assert quantile_for(95) == "p95" and quantile_for(99) == "p99" and quantile_for(50) == "median"


def test_bad_profiles_and_specs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(HotrecError, match="not a serving profile"):
        Profile.load(bad)
    with pytest.raises(HotrecError, match="not found"):
        Profile.load(tmp_path / "missing.json")
    with pytest.raises(HotrecError, match="unknown policy"):
        make_policy("fastest", [TABLE], cpu_profile())
    with pytest.raises(HotrecError, match="no path"):
        make_policy("static:qr@cpu", [TABLE], cpu_profile())
    with pytest.raises(HotrecError, match="needs a profile"):
        make_policy("mprec", [TABLE], None)
    with pytest.raises(HotrecError, match="no path"):
        mprec(Profile({"table@cpu": cpu_profile()["table@cpu"]}), paths=[DHE])
    with pytest.raises(HotrecError, match="REPRESENTATION@DEVICE"):
        parse_path("table@tpu")
    assert parse_path("dhe") == ServingPath("dhe", "cpu")
