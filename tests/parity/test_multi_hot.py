"""Multi-hot exactness: a bag of one trains bit for bit like the one-hot id (negative control:
bags with more ids train differently)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import write_bag_dataset, write_toy_dataset
from tests.parity.test_schedules import make as make_run


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_hot")
    one_hot = write_toy_dataset(root / "one", rows=2000, table_rows=(40, 12, 300, 6, 90))
    of_one = write_bag_dataset(one_hot, root / "of_one", {1: "sum", 2: "mean", 4: "sum"})
    wider = write_bag_dataset(one_hot, root / "wider", {1: "sum", 2: "mean", 4: "sum"}, 2, 0.1)
    return {"one_hot": one_hot, "of_one": of_one, "wider": wider}


def fit(tmp_path, data, name, sparse, dense, device, schedule="baseline"):
    extra = ["train.max_steps=30", "train.eval_every=0"]
    trainer = make(tmp_path, data, name, schedule, sparse, dense, device, *extra)
    result = trainer.fit()
    return state(trainer), result


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("sparse, dense", [("sgd", "sgd"), ("adagrad", "adam")])
def test_a_bag_of_one_trains_bit_for_bit_like_one_hot(tmp_path, datasets, sparse, dense, device):
    a, ra = fit(tmp_path, datasets["one_hot"], "a", sparse, dense, device)
    b, rb = fit(tmp_path, datasets["of_one"], "b", sparse, dense, device)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ra["val"]["auc"] == rb["val"]["auc"] and ra["test"]["logloss"] == rb["test"]["logloss"]


def test_negative_control_bags_of_more_ids_train_differently(tmp_path, datasets):
    a, _ = fit(tmp_path, datasets["one_hot"], "a", "sgd", "sgd", "cpu")
    b, _ = fit(tmp_path, datasets["wider"], "b", "sgd", "sgd", "cpu")
    weights = "embeddings.store.weight"
    assert not torch.equal(a[weights], b[weights])


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("sparse, dense", [("sgd", "sgd"), ("adagrad", "adam")])
def test_device_only_equals_baseline_on_bags(tmp_path, datasets, sparse, dense, device):
    a, ra = fit(tmp_path, datasets["wider"], "a", sparse, dense, device)
    b, rb = fit(tmp_path, datasets["wider"], "b", sparse, dense, device, "device_only")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert ra["val"]["auc"] == rb["val"]["auc"]


def make(tmp_path, data, name, schedule, sparse, dense, device, *extra):
    """The schedules' parity run (tiny model, batch 32, 1 KiB hot budget) on `device`."""
    return make_run(
        tmp_path, data, name, schedule, sparse, dense, f"train.device='{device}'", *extra
    )


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("sparse, dense", [("sgd", "sgd"), ("adagrad", "adam")])
@pytest.mark.parametrize("split", ["split", "fused"])
def test_hotline_equals_baseline_on_bags(tmp_path, datasets, sparse, dense, device, split):
    """Popular inputs (every id of every bag hot) and the rest as micro-batches (split), or one
    routed forward (fused), with the cold rows gathered ahead: the baseline's parameters."""
    data = datasets["wider"]
    extra = ["train.max_steps=30", "train.eval_every=0", f"placement.hotline_split='{split}'",
             "placement.lookahead=2"]  # fmt: skip
    hl = make(tmp_path, data, "hl", "hotline", sparse, dense, device, *extra)
    hl.fit()
    base = make(tmp_path, data, "base", "baseline", sparse, dense, device, *extra[:2])
    base.fit()
    a, b = state(hl), state(base)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    stats = hl.schedule.stats()
    assert 0 < stats["hot_input_share"] < 1 and stats["micro_batches"] == split


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("sparse, dense", [("sgd", "sgd"), ("adagrad", "adam")])
def test_fae_equals_baseline_on_bags_in_fae_order(tmp_path, datasets, sparse, dense, device):
    """An input is hot when every id of every bag is hot; hot batches run on the replica, cold
    ones split; the parameters equal the baseline's on the same batches."""
    data = datasets["wider"]
    fae = make(tmp_path, data, "fae", "fae", sparse, dense, device, "placement.fae_run_length=1")
    base = make(tmp_path, data, "base", "baseline", sparse, dense, device)
    order = fae.schedule.epoch_order(0)
    batches = [fae.schedule.loader.load(ix) for ix in order]
    assert len(fae.schedule.hot_batches) > 2 and len(fae.schedule.cold_batches) > 2
    hot = [fae.schedule.prepare(b).trains_hot for b in batches]
    assert any(hot) and not all(hot)
    for trainer in (fae, base):
        for b in batches:
            trainer.step(b)
            trainer.state.step += 1
    a, b = state(fae), state(base)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_fae_classifies_bag_inputs_by_every_id(tmp_path, datasets):
    import numpy as np

    from hotrec.data.format import open_dataset
    from hotrec.data.loader import jagged_ids
    from hotrec.training.schedules.fae import classify_bag_inputs

    data = datasets["wider"]
    fae = make(tmp_path, data, "fae", "fae", "sgd", "sgd", "cpu")
    ds = open_dataset(data)
    split = ds.split("train")
    slot = fae.schedule.hotset.slot_map()
    hot = classify_bag_inputs(split, ds.schema.table_offsets, slot)
    ids, lengths = jagged_ids(split, slice(0, len(split)))
    at, brute = 0, []
    for row in lengths:
        rows = [
            int(ids[at + i]) + int(ds.schema.table_offsets[t])
            for t, n in enumerate(row)
            for i in range(int(row[:t].sum()), int(row[:t].sum()) + int(n))
        ]
        brute.append(all(slot[r] >= 0 for r in rows))
        at += int(row.sum())
    assert hot.tolist() == brute and 0 < hot.sum() < len(hot)
    assert np.asarray(fae.schedule.hotset.rows).size > 0


def state(trainer) -> dict:
    trainer.schedule.sync()
    host = trainer.device.state_to_host(trainer.model.state_dict())
    return {k: v.clone() for k, v in host.items()}


@pytest.mark.parametrize("compact", [False, True], ids=["", "compacted"])
@pytest.mark.parametrize("schedule", ["baseline", "fae", "hotline"])
def test_slipstream_on_bags_of_one_decides_as_on_one_hot(tmp_path, datasets, schedule, compact):
    """The same skip decisions and parameters as on the one-hot data (bags of one), with
    inputs skipped, also where the kept inputs' bags are re-packed (compaction); wider bags
    train with Slipstream too."""
    extra = ["train.epochs=2", "placement.slipstream=true", "placement.slipstream_sample=0.3",
             "placement.hot_budget='2KiB'", f"placement.slipstream_compact={str(compact).lower()}"]  # fmt: skip
    runs = {}
    for name in ("one_hot", "of_one", "wider"):
        t = make(tmp_path, datasets[name], name, schedule, "sgd", "sgd", "cpu", *extra)
        runs[name] = (t, t.fit())
    (a, ra), (b, rb) = runs["one_hot"], runs["of_one"]
    assert ra["placement"]["skipped_inputs"] > 0
    assert ra["placement"]["skipped_inputs"] == rb["placement"]["skipped_inputs"]
    assert ra["steps"] == rb["steps"] and (ra["placement"].get("steps_saved", 0) > 0) == compact
    sa, sb = state(a), state(b)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert runs["wider"][1]["stopped"] == "completed"


@pytest.mark.parametrize("device", ["cpu"])
def test_dhe_on_bags_of_one_trains_bit_for_bit_like_one_hot(tmp_path, datasets, device):
    """DHE decodes every id of a bag (each distinct one once) in one-hot order and pools.
    CPU only: DHE's training does not run on the emulated device, one-hot either (its
    torch.unique on device memory has no emulated kernel)."""
    small = ["model.embedding='dhe'", "model.dhe_hashes=16", "model.dhe_buckets=1000",
             "model.dhe_prime=1009", "train.max_steps=20", "train.eval_every=0"]  # fmt: skip
    runs = {}
    for name in ("one_hot", "of_one", "wider"):
        t = make(tmp_path, datasets[name], name, "baseline", "sgd", "adam", device, *small)
        result = t.fit()
        runs[name] = (state(t), result)
    (a, ra), (b, rb) = runs["one_hot"], runs["of_one"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ra["val"]["auc"] == rb["val"]["auc"]
    wider = runs["wider"][0]
    assert any(not torch.equal(a[k], wider[k]) for k in a)  # negative control


def test_dhe_on_bags_runs_on_the_emulated_device_as_on_the_cpu(tmp_path, datasets):
    """The bag path packs the distinct ids on the host and uploads them: no device-side
    torch.unique, so it runs on the emulated device (the one-hot DHE path does not yet)."""
    small = ["model.embedding='dhe'", "model.dhe_hashes=16", "model.dhe_buckets=1000",
             "model.dhe_prime=1009", "train.max_steps=20", "train.eval_every=0"]  # fmt: skip
    out = {}
    for device in ("cpu", "emulated"):
        t = make(tmp_path, datasets["wider"], device, "baseline", "sgd", "adam", device, *small)
        result = t.fit()
        out[device] = (state(t), result)
    (a, ra), (b, rb) = out["cpu"], out["emulated"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert rb["syncs_per_step"]["max"] == 1  # the step's one host wait: no hidden sync
    assert rb["val"]["auc"] == pytest.approx(ra["val"]["auc"], abs=1e-6)


REPRESENTATIONS = {
    "qr": ["model.embedding='qr'", "model.qr_collisions=4"],
    "hybrid": [
        "model.embedding='hybrid'",
        "model.dhe_hashes=16",
        "model.dhe_buckets=1000",
        "model.dhe_prime=1009",
    ],
}


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("embedding", ["qr", "hybrid"])
def test_qr_and_hybrid_on_bags_of_one_train_bit_for_bit_like_one_hot(
    tmp_path, datasets, embedding, device
):
    """QR pools each feature's quotient bag and remainder bag, then multiplies them; the hybrid
    pools its table part and its DHE part per feature; a bag of one is the one-hot vector.
    On the emulated device the one-hot DHE decodes every lookup (no device-side unique) and
    the bag path each distinct id once: equal to float32 rounding, not bit for bit (row-wise
    Adagrad and Adam grow that rounding over 20 steps: up to 5e-5 on an AMD EPYC).
    Negative control: wider bags train differently, beyond the same tolerance."""
    exact = embedding == "qr" or device == "cpu"
    extra = [*REPRESENTATIONS[embedding], "train.max_steps=20", "train.eval_every=0"]
    runs = {}
    for name in ("one_hot", "of_one", "wider"):
        t = make(tmp_path, datasets[name], name, "baseline", "adagrad", "adam", device, *extra)
        result = t.fit()
        runs[name] = (state(t), result)
    (a, ra), (b, rb) = runs["one_hot"], runs["of_one"]
    tolerance = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-3, "atol": 1e-4}
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tolerance, msg=k)
    assert ra["val"]["auc"] == pytest.approx(rb["val"]["auc"], abs=0 if exact else 1e-5)
    wider = runs["wider"][0]
    with pytest.raises(AssertionError):  # negative control
        for k in a:
            torch.testing.assert_close(a[k], wider[k], **tolerance, msg=k)


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("embedding", ["qr", "hybrid"])
@pytest.mark.parametrize("schedule", ["fae", "hotline"])
def test_placed_qr_and_hybrid_equal_baseline_on_bags(
    tmp_path, datasets, embedding, schedule, device
):
    """The placement schedules key the bags as the representation does (QR's quotient and
    remainder bags, the hybrid's table features): an input is hot when every one of those
    rows is, and the parameters equal the baseline's. Dense SGD, as for one-hot
    (test_representation_placement.py): hotline's micro-batches sum the DHE decoder's
    gradient in another order, which dense Adam's first step would magnify."""
    data = datasets["wider"]
    extra = [*REPRESENTATIONS[embedding], "train.max_steps=30", "train.eval_every=0"]
    if schedule == "fae":
        extra.append("placement.fae_run_length=1")
    placed = make(tmp_path, data, "placed", schedule, "adagrad", "sgd", device, *extra)
    if schedule == "fae":
        order = placed.schedule.epoch_order(0)
        batches = [placed.schedule.loader.load(ix) for ix in order]
        hot = [placed.schedule.prepare(b).trains_hot for b in batches]
        assert any(hot) and not all(hot)
        base = make(tmp_path, data, "base", "baseline", "adagrad", "sgd", device, *extra)
        for trainer in (placed, base):
            for b in batches[:30]:
                trainer.step(b)
                trainer.state.step += 1
    else:
        placed.fit()
        base = make(tmp_path, data, "base", "baseline", "adagrad", "sgd", device, *extra)
        base.fit()
        assert 0 < placed.schedule.stats()["hot_input_share"] < 1
    a, b = state(placed), state(base)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
