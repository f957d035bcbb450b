"""Artifacts from elsewhere: manifest, model tensors, vocabularies, popular ids, dataset meta."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hotrec.errors import HotrecError
from hotrec.integrity import CHECKSUMS, write_checksums
from hotrec.models.artifact import load_artifact
from tests.serving.serving_helpers import criteo_like_dataset, make_artifact
from tests.untrusted.helpers import flip_bytes, one_line_error, tensor_data_offset


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("art")
    data = criteo_like_dataset(tmp, {"C1": [11, 22, 33], "C2": [5, 6]})
    from hotrec.config import RunConfig
    from hotrec.models.artifact import Entry, save_artifact
    from hotrec.models.builders import build_dlrm
    from hotrec.types import Schema
    from tests.serving.serving_helpers import SMALL

    schema = Schema.from_dict(json.loads((data / "meta.json").read_text())["schema"])
    cfg = RunConfig()
    model = build_dlrm(schema, SMALL, cfg.optim, seed=0)
    return save_artifact(tmp / "artifact", schema, cfg, [Entry("small", SMALL, model=model)], data)


@pytest.fixture
def art(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "artifact")


def resign(art) -> None:
    """Rewrite checksums.json after a deliberate edit, so the reader's own checks are tested."""
    files = [str(f.relative_to(art)) for f in art.rglob("*") if f.is_file() and f.name != CHECKSUMS]
    write_checksums(art, files)


def serve(capsys, art, *needles):
    return one_line_error(capsys, ["serve", str(art), "--port", "0"], *needles)


def test_a_good_artifact_loads_and_every_file_is_checksummed(art):
    listed = json.loads((art / CHECKSUMS).read_text())["files"]
    assert {"manifest.json", "small.pt", "dataset_meta.json", "vocab/C1.npy"} <= set(listed)
    assert load_artifact(art).entries["small"].model is not None


def test_sixteen_bytes_of_model_data_set_to_ff_are_refused(art, capsys):
    pt = art / "small.pt"
    data = bytearray(pt.read_bytes())
    start = tensor_data_offset(pt, b"data/0")
    data[start : start + 16] = b"\xff" * 16
    pt.write_bytes(bytes(data))
    serve(capsys, art, "small.pt", "checksum")


def test_negative_control_without_checksums_the_damage_loads(art):
    pt = art / "small.pt"
    flip_bytes(pt, tensor_data_offset(pt, b"data/0"), 16)
    resign(art)
    load_artifact(art)  # loads: the bytes are valid floats (or NaN), which only a digest sees


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda m: m.pop("schema"), "schema"),
        (lambda m: m["schema"]["tables"][0].update(rows="3"), "positive integer"),
        (lambda m: m["schema"]["tables"][0].update(rows=2.5), "positive integer"),
        (lambda m: m.update(representations=[]), "representations"),
        (lambda m: m["representations"].update({"../x": {}}), "plain name"),
        (lambda m: m.update(config=7), "config"),
    ],
)
def test_a_bad_manifest_is_one_line(art, capsys, edit, needle):
    manifest = json.loads((art / "manifest.json").read_text())
    edit(manifest)
    (art / "manifest.json").write_text(json.dumps(manifest))
    resign(art)
    serve(capsys, art, "manifest.json", needle)


def test_a_manifest_that_is_not_json_or_not_an_object(art, capsys):
    (art / "manifest.json").write_text("[1, 2]")
    serve(capsys, art, "manifest.json")
    (art / "manifest.json").write_bytes(b"\x00\xff{")
    serve(capsys, art, "manifest.json")


def test_an_edited_file_without_new_checksums_is_refused(art, capsys):
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["representations"]["small"]["val"] = {"auc": 0.99}
    (art / "manifest.json").write_text(json.dumps(manifest))
    serve(capsys, art, "manifest.json", "checksum")


def test_an_artifact_without_checksums_is_refused(art, capsys):
    (art / CHECKSUMS).unlink()
    serve(capsys, art, CHECKSUMS)
    (art / CHECKSUMS).write_text('{"files": 3}')
    serve(capsys, art, CHECKSUMS, "damaged")


@pytest.mark.parametrize("damage", ["truncate", "pickle", "wrong_shape"])
def test_a_bad_model_file_is_one_line(art, capsys, damage):
    pt = art / "small.pt"
    if damage == "truncate":
        pt.write_bytes(pt.read_bytes()[:200])
    elif damage == "pickle":
        torch.save({"x": np.float64}, pt)  # a class reference: more than tensors
    else:
        torch.save({"bottom.0.weight": torch.zeros(2)}, pt)
    resign(art)
    serve(capsys, art, "small.pt")


@pytest.mark.parametrize("damage", ["truncate", "float", "pickled"])
def test_a_bad_vocabulary_is_one_line(art, capsys, damage):
    vocab = art / "vocab" / "C1.npy"
    if damage == "truncate":
        vocab.write_bytes(vocab.read_bytes()[:40])
    elif damage == "float":
        np.save(vocab, np.array([1.5, 2.5, 3.5]))
    else:
        np.save(vocab, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    resign(art)
    serve(capsys, art, "C1.npy")


@pytest.mark.parametrize("damage", ["truncate", "out_of_range", "floats"])
def test_bad_popular_ids_are_one_line(tmp_path, capsys, damage):
    from hotrec.config import ModelConfig
    from tests.serving.serving_helpers import LARGE

    dhe = ModelConfig(**{**LARGE.__dict__, "embedding": "dhe"})
    art = make_artifact(tmp_path, {"dhe": (dhe, 0.7)})
    popular = art / "popular_ids.npz"
    assert popular.is_file()
    if damage == "truncate":
        popular.write_bytes(popular.read_bytes()[:100])
    else:
        with np.load(popular) as z:
            arrays = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
        if damage == "out_of_range":
            arrays[0] = np.array([0, 10**6])
        else:
            arrays[1] = arrays[1].astype(np.float32)
        np.savez(popular, *arrays)
    resign(art)
    with pytest.raises(HotrecError, match="popular_ids.npz"):
        load_artifact(art)


def test_an_invalid_dataset_meta_is_one_line(art, capsys):
    (art / "dataset_meta.json").write_text("not json")
    resign(art)
    serve(capsys, art, "dataset_meta.json")
    (art / "dataset_meta.json").write_text("[]")
    resign(art)
    serve(capsys, art, "dataset_meta.json")
