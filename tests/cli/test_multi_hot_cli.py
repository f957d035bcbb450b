"""Multi-hot datasets from the command line: every representation trains, evaluates and is
served from them; what cannot take bags yet refuses in one line before writing anything."""

from __future__ import annotations

import json

import pytest

from hotrec.cli.main import main
from tests.conftest import write_bag_dataset, write_toy_dataset


@pytest.fixture(scope="module")
def bag_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    toy = write_toy_dataset(root / "toy", rows=1500)
    return write_bag_dataset(
        toy, root / "bags", {1: "sum", 2: "mean"}, max_extra=2, empty_share=0.1
    )


def test_train_and_eval_a_multi_hot_dataset(tmp_path, bag_data, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(bag_data), "--preset", "tiny", "--run-dir", str(run)]
    assert main(args + ["--epochs", "2", "--lr", "0.3", "--set", "data.batch_size=64"]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["test"]["auc"] > 0.6
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(metrics["auc"] - result["test"]["auc"]) < 1e-6
    assert main(["info", str(bag_data)]) == 0
    assert "C2 (bag, sum)" in capsys.readouterr().out
    fae = ["--schedule", "fae", "--hot-budget", "2KiB", "--run-dir", str(tmp_path / "fae")]
    assert main(args[:-2] + fae + ["--max-steps", "20"]) == 0
    placement = json.loads((tmp_path / "fae" / "result.json").read_text())["placement"]
    assert placement["schedule"] == "fae" and 0 < placement["hot_input_share"] < 1, placement


@pytest.mark.parametrize("embedding", ["qr", "hybrid"])
def test_qr_and_hybrid_train_on_bags_under_hotline(tmp_path, bag_data, embedding):
    run = tmp_path / "run"
    argv = ["train", "--data", str(bag_data), "--preset", "tiny", "--run-dir", str(run),
            "--embedding", embedding, "--schedule", "hotline", "--hot-budget", "2KiB",
            "--max-steps", "20", "--set", "model.dhe_hashes=16"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["placement"]["schedule"] == "hotline" and result["test"]["auc"] > 0.5


def test_an_artifact_of_a_multi_hot_dataset_is_profiled_for_serving(tmp_path, bag_data):
    run = tmp_path / "reps"
    argv = ["train", "--data", str(bag_data), "--preset", "tiny", "--run-dir", str(run),
            "--representations", "table,qr", "--max-steps", "10"]  # fmt: skip
    assert main(argv) == 0
    out = tmp_path / "profile.json"
    argv = ["serve-profile", str(run / "artifact"), "--inline", "--batch-sizes", "1,8",
            "--repeats", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    profile = json.loads(out.read_text())
    assert set(profile["paths"]) == {"table@cpu", "qr@cpu"} and profile["inputs"] == "dataset"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--embedding", "dhe", "--set", "model.dhe_batchnorm=true"], "DHE with BatchNorm"),
        (["--embedding", "hybrid", "--set", "model.dhe_batchnorm=true"], "DHE with BatchNorm"),
    ],
)
def test_what_cannot_take_bags_refuses_in_one_line(tmp_path, bag_data, capsys, extra, message):
    run = tmp_path / "run"
    argv = ["train", "--data", str(bag_data), "--preset", "tiny", "--run-dir", str(run), *extra]
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (run / "checkpoint.pt").exists()


def test_plan_counts_every_id_of_a_bag(tmp_path, bag_data, capsys):
    import numpy as np

    from hotrec.data.format import open_dataset
    from hotrec.placement.popularity import capacity_for, top_rows

    assert main(["plan", "--data", str(bag_data), "--preset", "tiny", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    ds = open_dataset(bag_data)
    split, schema = ds.split("train"), ds.schema
    rows = [np.asarray(split.sparse[:, c]) + schema.table_offsets[t]
            for c, t in enumerate(schema.one_hot_tables)]  # fmt: skip
    rows += [np.asarray(v) + schema.table_offsets[t]
             for (v, _), t in zip(split.bags, schema.bag_tables, strict=True)]  # fmt: skip
    every = np.concatenate(rows)
    assert plan["shape"]["lookups"] == pytest.approx(len(every) / len(split))
    counts = np.bincount(every, minlength=schema.total_rows)  # the sample is the whole split
    for pop in plan["popularity"]:
        capacity = min(capacity_for(pop["budget_bytes"], 8), int((counts > 0).sum()))
        hot = np.isin(every, top_rows(counts, capacity))
        assert pop["lookup_share"] == pytest.approx(hot.mean())


def test_profile_counts_every_id_of_a_bag(tmp_path, bag_data, capsys):
    import numpy as np

    from hotrec.data.format import open_dataset
    from hotrec.data.loader import jagged_ids
    from hotrec.placement.hotset import HotSet
    from hotrec.placement.popularity import PopularityProfiler

    out = tmp_path / "hot.npz"
    argv = ["profile", str(bag_data), "--out", str(out), "--sample", "1", "--hot-budget", "1KiB"]
    assert main(argv + ["--dim", "8"]) == 0
    stats = HotSet.load(out).stats
    assert 0 < stats["lookup_share"] < 1 and 0 < stats["input_share"] < 1
    ds = open_dataset(bag_data)
    split, schema = ds.split("train"), ds.schema
    prof = PopularityProfiler(sample_fraction=1.0, block_rows=100).fit(
        split.sparse, schema.table_rows, bags=lambda a, b: jagged_ids(split, slice(a, b))
    )
    brute = np.zeros(schema.total_rows, np.int64)
    for c, t in enumerate(schema.one_hot_tables):
        np.add.at(brute, np.asarray(split.sparse[:, c]) + schema.table_offsets[t], 1)
    for (values, _), t in zip(split.bags, schema.bag_tables, strict=True):
        np.add.at(brute, np.asarray(values) + schema.table_offsets[t], 1)
    assert np.array_equal(prof.counts_, brute)
    assert prof.sample_global_ids_.shape[0] == len(split)  # every input kept, padded
    from hotrec.training.schedules.fae import classify_bag_inputs

    hot = HotSet.from_profile(prof, 1024, 8)  # padding with an input's own ids keeps all-hot
    by_sample = hot.hot_inputs(prof.sample_global_ids_)
    assert np.array_equal(
        by_sample, classify_bag_inputs(split, schema.table_offsets, hot.slot_map())
    )
