"""Datasets from elsewhere: meta.json, the split arrays, id ranges, checksums and --verify."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hotrec.data.format import open_dataset
from hotrec.data.ranges import CHECKED
from hotrec.errors import HotrecError
from hotrec.integrity import CHECKSUMS
from tests.untrusted.helpers import flip_bytes, one_line_error

TRAIN = ["--preset", "tiny", "--max-steps", "3"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.conftest import write_toy_dataset

    return write_toy_dataset(tmp_path_factory.mktemp("ds") / "toy", rows=600)


@pytest.fixture
def ds(prepared, tmp_path):
    return shutil.copytree(prepared, tmp_path / "toy")


def train(capsys, ds, tmp_path, *needles):
    argv = ["train", "--data", str(ds), "--run-dir", str(tmp_path / "run"), *TRAIN]
    return one_line_error(capsys, argv, *needles)


def edit_meta(ds, fn) -> None:
    meta = json.loads((ds / "meta.json").read_text())
    fn(meta)
    (ds / "meta.json").write_text(json.dumps(meta))


def test_a_table_smaller_than_its_ids_is_refused_not_read_past(ds, tmp_path, capsys):
    """meta.json says C3 has 5 rows while its ids go higher: the rows of the next table would
    be read silently without the check."""
    edit_meta(ds, lambda m: m["schema"]["tables"][2].update(rows=5))
    train(capsys, ds, tmp_path, "sparse.npy", "table C3", "outside its 5 rows")


def test_an_id_outside_its_table_in_sparse_npy(ds, tmp_path, capsys):
    arr = np.load(ds / "train" / "sparse.npy", mmap_mode="r+")
    arr[17, 1] = 10_000
    arr.flush()
    del arr
    train(capsys, ds, tmp_path, "train/sparse.npy", "table C2", "10000")
    arr = np.load(ds / "train" / "sparse.npy", mmap_mode="r+")
    arr[17, 1] = -3
    arr.flush()
    del arr
    train(capsys, ds, tmp_path, "table C2", "-3")


def test_the_loader_checks_each_batch_when_the_cached_check_is_stale(ds):
    """A file changed without its size or mtime changing (the cache cannot see it): the
    loader's per-batch bound check still names the row."""
    import os

    from hotrec.data.loader import BatchLoader

    split = open_dataset(ds).split("train")  # checked and cached
    path = ds / "train" / "sparse.npy"
    st = path.stat()
    arr = np.load(path, mmap_mode="r+")
    arr[130, 3] = 99
    arr.flush()
    del arr
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    split = open_dataset(ds).split("train")  # the cache still says fine
    with pytest.raises(HotrecError, match=r"sparse.npy row 130: id 99 of table 3"):
        list(BatchLoader(split, 64).epoch(0))


def test_the_range_check_is_cached_by_size_and_mtime(ds):
    open_dataset(ds).split("train")
    cache = json.loads((ds / CHECKED).read_text())
    assert set(cache["train"]) == {"stamp", "min", "max", "label"}
    assert cache["train"]["max"][1] < 20


def test_a_read_only_dataset_is_still_checked(ds):
    edit_meta(ds, lambda m: m["schema"]["tables"][0].update(rows=2))
    ds.chmod(0o555)
    try:
        with pytest.raises(HotrecError, match="table C1"):
            open_dataset(ds).split("train")
    finally:
        ds.chmod(0o755)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda m: m.pop("splits"), "splits"),
        (lambda m: m.update(splits={"train": "many"}), "split train"),
        (lambda m: m.update(splits={"holdout": 3}), "holdout"),
        (lambda m: m.pop("schema"), "schema"),
        (lambda m: m["schema"]["tables"][0].pop("rows"), "rows"),
        (lambda m: m["schema"].update(dense=7), "dense"),
        (lambda m: m.update(format_version=99), "format"),
    ],
)
def test_a_bad_meta_json_is_one_line(ds, tmp_path, capsys, edit, needle):
    edit_meta(ds, edit)
    train(capsys, ds, tmp_path, needle)
    one_line_error(capsys, ["info", str(ds)], needle)


def test_meta_json_that_is_not_an_object_or_not_text(ds, tmp_path, capsys):
    (ds / "meta.json").write_text("[]")
    train(capsys, ds, tmp_path, "meta.json")
    (ds / "meta.json").write_bytes(b"\xff\xfe\x00")
    train(capsys, ds, tmp_path, "meta.json")


@pytest.mark.parametrize("file", ["dense.npy", "sparse.npy", "label.npy"])
def test_a_truncated_array_is_one_line(ds, tmp_path, capsys, file):
    path = ds / "train" / file
    path.write_bytes(path.read_bytes()[:150])
    train(capsys, ds, tmp_path, file)


def test_wrong_dtypes_are_one_line(ds, tmp_path, capsys):
    n = json.loads((ds / "meta.json").read_text())["splits"]["train"]
    np.save(ds / "train" / "label.npy", np.array(["x"] * n))
    train(capsys, ds, tmp_path, "label.npy")
    np.save(ds / "train" / "label.npy", np.array([{"a": 1}] * n, dtype=object), allow_pickle=True)
    train(capsys, ds, tmp_path, "label.npy")
    np.save(ds / "train" / "label.npy", np.full(n, 3.0, dtype=np.float32))
    train(capsys, ds, tmp_path, "label.npy", "3.0")
    np.save(ds / "train" / "label.npy", np.zeros(n, dtype=np.float32))
    np.save(ds / "train" / "sparse.npy", np.zeros((n, 4), dtype=np.float32))
    train(capsys, ds, tmp_path, "sparse.npy", "integer")


def test_preparation_writes_checksums_and_verify_passes(ds, capsys):
    listed = json.loads((ds / CHECKSUMS).read_text())["files"]
    assert {"meta.json", "train/dense.npy", "test/label.npy"} <= set(listed)
    capsys.readouterr()
    from hotrec.cli.main import main

    assert main(["info", str(ds), "--verify"]) == 0
    assert f"verified: {len(listed)} files match" in capsys.readouterr().out


def test_a_bit_flip_in_dense_npy_is_found_by_verify_only(ds, tmp_path, capsys):
    flip_bytes(ds / "train" / "dense.npy", -5)
    from hotrec.cli.main import main

    capsys.readouterr()
    assert main(["info", str(ds)]) == 0  # negative control: opening does not read every byte
    one_line_error(capsys, ["info", str(ds), "--verify"], "train/dense.npy", "checksum")


def test_verify_names_a_missing_file_and_a_missing_record(ds, capsys):
    (ds / "val" / "label.npy").unlink()
    one_line_error(capsys, ["info", str(ds), "--verify"], "val/label.npy", "missing")
    (ds / CHECKSUMS).unlink()
    one_line_error(capsys, ["info", str(ds), "--verify"], CHECKSUMS)


def test_a_bad_test_split_is_found_before_training(ds, tmp_path, capsys):
    arr = np.load(ds / "test" / "sparse.npy", mmap_mode="r+")
    arr[0, 0] = 51
    arr.flush()
    del arr
    train(capsys, ds, tmp_path, "test/sparse.npy", "table C1")
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
