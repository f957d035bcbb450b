"""The planner's cost model on hand-made rates: each schedule's arithmetic and the choice."""

from __future__ import annotations

import pytest

from hotrec.placement.planner import Popularity, Rates, Shape, plan, predict
from hotrec.training.plan import pass_cost_s

SHAPE = Shape(batch_size=100, lookups=10, dim=16, rows=10_000, table_bytes=10_000 * 68,
              train_rows=50_000)  # fmt: skip
ROW = 16 * 4


def rates(**kw) -> Rates:
    base = dict(device="cpu", net_step_s=0.010, host_gather_s_per_row=10e-9,
                host_update_s_per_row=20e-9, h2d_bytes_per_s=None, d2h_bytes_per_s=None,
                overlaps=False, device_free_bytes=None)  # fmt: skip
    return Rates(**(base | kw))


POP = Popularity(budget_bytes=64 * ROW, hot_rows=64, lookup_share=0.8, input_share=0.5,
                 unique_cold_per_batch=50.0)  # fmt: skip


def test_baseline_pays_every_lookup_on_host_and_both_ways_over_the_link():
    p = predict("baseline", SHAPE, rates(), None)
    assert p.step_s == pytest.approx(0.010 + 1000 * 30e-9)
    assert p.h2d_bytes_per_step == p.d2h_bytes_per_step == 1000 * ROW
    linked = predict("baseline", SHAPE, rates(h2d_bytes_per_s=1e9, d2h_bytes_per_s=2e9), None)
    assert linked.step_s == pytest.approx(p.step_s + 1000 * ROW / 1e9 + 1000 * ROW / 2e9)
    assert p.samples_per_s == pytest.approx(100 / p.step_s)


def test_device_only_is_the_network_alone_and_refused_when_the_tables_do_not_fit():
    assert predict("device_only", SHAPE, rates(), None).step_s == 0.010
    small = predict("device_only", SHAPE, rates(device_free_bytes=SHAPE.table_bytes), None)
    assert small.step_s is None and "do not fit" in small.note


def test_fae_mixes_device_speed_hot_batches_with_cold_batches_that_pay_their_cold_lookups():
    p = predict("fae", SHAPE, rates(), POP)
    cold_in_cold = 1000 * 0.2 / 0.5  # all cold lookups sit in the half of batches that are cold
    assert p.step_s == pytest.approx(0.010 + 0.5 * cold_in_cold * 30e-9)
    everything_hot = predict("fae", SHAPE, rates(), Popularity(1, 1, 1.0, 1.0, 0.0))
    assert everything_hot.step_s == pytest.approx(0.010)


def test_hotline_hides_its_gather_behind_the_network_only_where_there_is_a_side_stream():
    link = dict(h2d_bytes_per_s=1e9, d2h_bytes_per_s=1e9)
    ahead = 50 * 10e-9 + 50 * ROW / 1e9
    back = 200 * 20e-9 + 200 * ROW / 1e9
    serial = predict("hotline", SHAPE, rates(**link), POP)
    assert serial.step_s == pytest.approx(0.010 + ahead + back)
    hidden = predict("hotline", SHAPE, rates(overlaps=True, **link), POP)
    assert hidden.step_s == pytest.approx(0.010 + back)  # the gather is shorter than the net
    assert hidden.h2d_bytes_per_step == 50 * ROW
    assert hidden.d2h_bytes_per_step == pytest.approx(200 * ROW)


def test_hotline_on_a_device_pays_the_network_pass_twice_and_the_host_once():
    link = dict(h2d_bytes_per_s=1e9, d2h_bytes_per_s=1e9)
    back = 200 * 20e-9 + 200 * ROW / 1e9
    split = predict("hotline", SHAPE, rates(overlaps=True, net_pass_s=0.003, **link), POP)
    assert split.step_s == pytest.approx(0.010 + 0.003 + back)  # two micro-batches
    fused = predict("hotline", SHAPE, rates(net_pass_s=0.003, **link), POP)
    assert fused.step_s == pytest.approx(predict("hotline", SHAPE, rates(**link), POP).step_s)
    one_pass = rates(overlaps=True, net_pass_s=0.003, **link)  # placement.hotline_split=fused
    assert predict("hotline", SHAPE, one_pass, POP, hotline_split=False).step_s == pytest.approx(
        0.010 + back
    )
    for other in ("baseline", "device_only", "fae"):  # one pass per batch: unchanged
        with_pass = predict(other, SHAPE, rates(overlaps=True, net_pass_s=0.003), POP)
        assert with_pass.step_s == predict(other, SHAPE, rates(overlaps=True), POP).step_s


def test_the_pass_cost_is_the_step_time_at_zero_batch():
    # 2 ms per pass + 10 us per input, measured at 1024 and 128 inputs
    assert pass_cost_s(1024, 0.002 + 1024e-5, 128, 0.002 + 128e-5) == pytest.approx(0.002)
    assert pass_cost_s(1024, 0.010, 128, 0.001) == 0.0  # noise below zero: none
    assert pass_cost_s(1024, 0.010, 128, 0.012) == 0.010  # never more than the whole step


def test_the_recommendation_is_the_fastest_that_fits_and_device_only_among_near_equals():
    gpu = rates(h2d_bytes_per_s=1e8, d2h_bytes_per_s=1e8, overlaps=True)
    fits = plan(SHAPE, gpu, [POP])
    assert fits["recommended"].schedule == "device_only"
    no_room = plan(SHAPE, rates(h2d_bytes_per_s=1e8, d2h_bytes_per_s=1e8, overlaps=True,
                                device_free_bytes=1000), [POP])  # fmt: skip
    best = no_room["recommended"]
    assert best.schedule == "hotline" and best.budget_bytes == POP.budget_bytes
    assert best.step_s == min(p.step_s for p in no_room["predictions"] if p.step_s is not None)
