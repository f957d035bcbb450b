"""Exactness for representations with rows: qr and the hybrid's table part are placed by the
same schedules as the plain table and give the baseline's parameters."""

from __future__ import annotations

import pytest

from hotrec.cli.main import main
from hotrec.embeddings.parts import row_part
from hotrec.placement.hot_cold import RoutedEmbedding
from tests.parity.test_schedules import assert_same, make, params, run_steps

# qr: every lookup reads two keyed rows; hybrid (select form): the table part reads a subset
# of the columns through SelectKeys, the DHE part the others; hybrid (full): both for all.
REPRESENTATIONS = [
    ["model.embedding='qr'", "model.qr_collisions=3"],
    ["model.embedding='hybrid'", "model.embedding_map='dhe_min_rows=80'", "model.dhe_hashes=16"],
    ["model.embedding='hybrid'", "model.dhe_hashes=16"],
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.conftest import write_toy_dataset

    path = tmp_path_factory.mktemp("repr-parity") / "ds"
    return write_toy_dataset(path, rows=2500, table_rows=(40, 12, 300, 6, 90))


@pytest.mark.parametrize("rep", REPRESENTATIONS, ids=["qr", "hybrid-select", "hybrid-full"])
# Dense SGD: hotline's two micro-batches sum the DHE decoder's gradient in another order than
# one batch does, and dense Adagrad's first step (g / sqrt(g^2)) turns the rounding of a
# near-zero gradient into a visible step. The rows, which placement moves, use both optimizers.
@pytest.mark.parametrize("sparse, dense", [("sgd", "sgd"), ("adagrad", "sgd")])
def test_placed_representations_equal_baseline(tmp_path, data, rep, sparse, dense):
    base = make(tmp_path, data, "base", "baseline", sparse, dense, *rep)
    base.fit()
    expected = params(base)
    for schedule, extra in [("device_only", []), ("hotline", ["placement.lookahead=3"])]:
        t = make(tmp_path, data, schedule, schedule, sparse, dense, *rep, *extra)
        t.fit()
        assert_same(params(t), expected)
        if schedule == "hotline":
            assert isinstance(row_part(t.model.embeddings), RoutedEmbedding)
            assert 0.0 < t.schedule.stats()["hot_input_share"] < 1.0
    fae = make(tmp_path, data, "fae", "fae", sparse, dense, *rep, "placement.fae_run_length=2")
    base2 = make(tmp_path, data, "base2", "baseline", sparse, dense, *rep)
    batches = [fae.schedule.loader.load(ix) for ix in fae.schedule.epoch_order(0)]
    assert len(fae.schedule.hot_batches) > 2 and len(fae.schedule.cold_batches) > 2
    run_steps(fae, batches)
    run_steps(base2, batches)
    assert_same(params(fae), params(base2))


def test_placing_dhe_is_refused_with_one_line(tmp_path, data, capsys):
    args = ["train", "--data", str(data), "--preset", "tiny", "--run-dir", str(tmp_path / "r")]
    code = main(
        [*args, "--embedding", "dhe", "--schedule", "hotline", "--set", "model.dhe_hashes=8"]
    )
    assert code == 2
    assert "has none: use --schedule baseline" in capsys.readouterr().err


@pytest.mark.parametrize(
    "rep", [["model.embedding='dhe'"], REPRESENTATIONS[2]], ids=["dhe", "hybrid"]
)
def test_deep_hash_trains_on_the_emulated_device_with_one_sync_per_step(tmp_path, data, rep):
    """Ids in device memory are decoded every one, not deduplicated (finding the distinct ones
    would make the device report a size: a hidden sync); the CPU run's parameters."""
    small = ["model.dhe_hashes=16", "model.dhe_buckets=1000", "model.dhe_prime=1009"]
    cpu = make(tmp_path, data, "cpu", "baseline", "sgd", "sgd", *rep, *small)
    cpu.fit()
    emu = make(tmp_path, data, "emu", "baseline", "sgd", "sgd", *rep, *small,
               "train.device='emulated'")  # fmt: skip
    result = emu.fit()
    assert result["syncs_per_step"]["max"] == 1
    assert_same(params(emu), params(cpu))
