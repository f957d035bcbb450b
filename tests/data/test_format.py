import json
import os

import numpy as np
import pytest

from hotrec.data.format import DatasetWriter, open_dataset
from hotrec.errors import HotrecError
from hotrec.types import Schema, TableSpec

SCHEMA = Schema(("I1",), (TableSpec("C1", 5),))


def write(out, n=4, overwrite=False, fail=False):
    with DatasetWriter(out, overwrite=overwrite) as w:
        a = w.create_split("train", n, SCHEMA)
        a.sparse[:] = 1
        if fail:
            raise RuntimeError("interrupted")
        w.commit(SCHEMA, {"source": "test"})
    return out


def test_round_trip_and_interrupted_write_leaves_nothing(tmp_path):
    ds = open_dataset(write(tmp_path / "d"))
    assert ds.split("train").sparse.tolist() == [[1]] * 4
    with pytest.raises(RuntimeError):
        write(tmp_path / "e", fail=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_overwrite_replaces_only_datasets_or_empty_dirs(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(HotrecError, match="not a hotrec dataset"):
        write(other, overwrite=True)
    assert (other / "keep.txt").read_text() == "x"
    write(tmp_path / "d")
    write(tmp_path / "d", n=6, overwrite=True)
    assert open_dataset(tmp_path / "d").meta["splits"]["train"] == 6
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty", overwrite=True)


def test_abandoned_partial_directories_are_removed(tmp_path):
    dead = tmp_path / ".d.partial-999999999"  # no such process
    dead.mkdir()
    mine = tmp_path / f".d.partial-{os.getppid()}"  # a live process: left alone
    mine.mkdir()
    write(tmp_path / "d")
    assert not dead.exists() and mine.exists()


def test_damaged_datasets_are_one_line_errors(tmp_path):
    out = write(tmp_path / "d")
    arr = out / "train" / "sparse.npy"
    arr.write_bytes(arr.read_bytes()[:-8])  # truncated
    with pytest.raises(HotrecError, match="sparse.npy: damaged dataset array"):
        open_dataset(out).split("train")
    meta = json.loads((out / "meta.json").read_text())
    del meta["schema"]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(HotrecError, match="meta.json is damaged"):
        open_dataset(out)


def test_shape_mismatch_with_meta_is_reported(tmp_path):
    out = write(tmp_path / "d")
    np.save(out / "train" / "label.npy", np.zeros(3, np.float32))
    with pytest.raises(HotrecError, match="label.npy has shape"):
        open_dataset(out).split("train")
