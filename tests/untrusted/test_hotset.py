"""Hot-set files (hotrec profile's output) handed to train --hotset."""

from __future__ import annotations

import numpy as np
import pytest

from hotrec.cli.main import main
from tests.untrusted.helpers import one_line_error


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    from tests.conftest import write_toy_dataset

    root = tmp_path_factory.mktemp("hot")
    data = write_toy_dataset(root / "ds", rows=600)
    out = root / "hot.npz"
    argv = ["profile", str(data), "--hot-budget", "2KiB", "--dim", "8", "--out", str(out)]
    assert main(argv) == 0
    return data, out


def fields(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def train(capsys, data, hot, tmp_path, *needles):
    argv = ["train", "--data", str(data), "--preset", "tiny", "--schedule", "fae", "--max-steps",
            "2", "--hotset", str(hot), "--run-dir", str(tmp_path / "run")]  # fmt: skip
    return one_line_error(capsys, argv, *needles)


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("truncate", "hot.npz"),
        ("unsorted", "sorted unique"),
        ("out_of_range", "sorted unique"),
        ("float_rows", "not a list of integers"),
        ("offsets", "offsets"),
        ("stats", "stats"),
        ("pickled", "hot.npz"),
    ],
)
def test_a_damaged_hot_set_is_one_line(profiled, tmp_path, capsys, damage, needle):
    data, good = profiled
    hot = tmp_path / "hot.npz"
    f = fields(good)
    assert len(f["rows"]) >= 2
    if damage == "truncate":
        hot.write_bytes(good.read_bytes()[:300])
    else:
        if damage == "unsorted":
            f["rows"] = f["rows"][::-1].copy()
        elif damage == "out_of_range":
            f["rows"][-1] = 10**9
        elif damage == "float_rows":
            f["rows"] = f["rows"].astype(np.float64)
        elif damage == "offsets":
            f["table_offsets"] = f["table_offsets"] + 1
        elif damage == "stats":
            f["stats"] = np.asarray("[1, 2]")
        else:
            f["stats"] = np.array([{"x": 1}], dtype=object)
        np.savez(hot, **f)
    train(capsys, data, hot, tmp_path, needle)


def test_the_good_hot_set_trains(profiled, tmp_path):
    data, good = profiled
    argv = ["train", "--data", str(data), "--preset", "tiny", "--schedule", "fae", "--max-steps",
            "2", "--hotset", str(good), "--run-dir", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0
