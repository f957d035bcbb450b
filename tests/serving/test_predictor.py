"""The predictor: predictions equal the models', input checks, raw Criteo fields mapped as
`hotrec prepare` maps them (unknown values -> id 0)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from hotrec.config import ModelConfig
from hotrec.data.criteo import prepare_criteo_kaggle
from hotrec.data.format import open_dataset
from hotrec.errors import HotrecError
from hotrec.models.artifact import load_artifact
from hotrec.serving.predictor import Predictor
from hotrec.serving.rawfields import RawFieldMapper, dense_value, hex_key, raw_mapper_for
from tests.serving.serving_helpers import criteo_like_dataset, make_artifact

KEYS = ["68fd1e64", "05db9164", "8cf07265", "0", "ffffffff", "abc"]


def criteo_lines(n: int, seed: int = 0) -> list[list[str]]:
    """Raw rows (label first): empty, negative and large integers; skewed hex keys."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        ints = ["" if rng.random() < 0.1 else str(int(rng.integers(-5, 5000))) for _ in range(13)]
        cats = ["" if rng.random() < 0.05 else KEYS[min(rng.zipf(1.6) - 1, 5)] for _ in range(26)]
        rows.append([str(int(rng.random() < 0.3)), *ints, *cats])
    return rows


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_artifact(tmp_path_factory.mktemp("art"))


def test_predictions_equal_the_models(artifact):
    predictor = Predictor.load(artifact)
    models = load_artifact(artifact).models
    ds = open_dataset(predictor.dataset)
    val = ds.split("val")
    dense, sparse = predictor.check(val.dense[:37], val.sparse[:37])
    assert [p.name for p in predictor.paths] == ["small@cpu", "large@cpu"]
    for path in predictor.paths:
        got = predictor.predict(path, dense, sparse)
        with torch.no_grad():
            want = torch.sigmoid(
                models[path.representation](torch.from_numpy(dense), torch.from_numpy(sparse))
            ).numpy()
        assert got.shape == (37,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # the two representations are different models
    small, large = (predictor.predict(p, dense, sparse) for p in predictor.paths)
    assert not np.allclose(small, large)


def test_bad_prepared_inputs_are_refused_with_one_line(artifact):
    predictor = Predictor.load(artifact)
    ok_dense, ok_sparse = np.zeros((2, 3)), np.ones((2, 4), dtype=np.int64)
    cases = [
        ((np.zeros((2, 2)), ok_sparse), "dense must be \\[items, 3\\]"),
        ((ok_dense, np.ones((2, 5))), "sparse must be \\[items, 4\\]"),
        ((np.zeros((3, 3)), ok_sparse), "dense has 3 items but sparse has 2"),
        ((np.full((2, 3), np.nan), ok_sparse), "non-finite"),
        ((ok_dense, [[1, 1, 1, 7], [1, 1, 1, 1]]), "sparse\\[0\\]\\[3\\] = 7 is out of range"),
        ((ok_dense, [[1, 1, 1, 1], [1, -1, 1, 1]]), "sparse\\[1\\]\\[1\\] = -1"),
        ((ok_dense, [[1, 2], [3]]), "not rectangular"),
    ]
    for (dense, sparse), message in cases:
        with pytest.raises(ValueError, match=message):
            predictor.check(dense, sparse)
    with pytest.raises(ValueError, match="Criteo-prepared datasets only"):
        predictor.map_raw([["1"] * 7])


@pytest.mark.parametrize("hash_rows", [None, 11])
def test_raw_fields_map_exactly_as_preparation(tmp_path, hash_rows):
    lines = criteo_lines(140)
    tsv = tmp_path / "train.txt"
    tsv.write_text("".join("\t".join(r) + "\n" for r in lines))
    out = prepare_criteo_kaggle(tsv, tmp_path / "ds", hash_rows=hash_rows)
    ds = open_dataset(out)
    mapper, why = raw_mapper_for(ds.schema, out / "vocab" if hash_rows is None else None, ds.meta)
    assert mapper is not None, why
    parts = [ds.split(s) for s in ("train", "test", "val")]  # file order (test before val)
    want_dense = np.concatenate([p.dense for p in parts])
    want_sparse = np.concatenate([p.sparse for p in parts])
    dense, sparse = mapper.map([r[1:] for r in lines])
    np.testing.assert_array_equal(dense, want_dense)
    np.testing.assert_array_equal(sparse, want_sparse)
    assert dense.dtype == np.float32 and sparse.dtype == np.int64


def test_unknown_and_malformed_raw_values_become_id_zero(tmp_path):
    data = criteo_like_dataset(tmp_path, {"C1": [0x68FD1E64, 0xABC], "C2": [5, 0xFFFFFFFF]})
    meta = json.loads((data / "meta.json").read_text())
    mapper, _ = raw_mapper_for(open_dataset(data).schema, data / "vocab", meta)
    nd = 3  # the toy schema's dense features
    rows = [
        [1, "2", None, "68fd1e64", "ffffffff"],  # known keys: ids 1 and 2
        ["", -4, "9", "68FD1E64", "5"],  # uppercase = the same key; '5' -> id 1
        [0, 0, 0, "deadbeef", None],  # unknown key, missing field
        [0, 0, 0, "123456789", "xyz"],  # too long, not hex
        [0, 0, 0, 12345, ""],  # not a string, empty
    ]
    dense, sparse = mapper.map(rows)
    np.testing.assert_array_equal(sparse, [[1, 2], [1, 1], [0, 0], [0, 0], [0, 0]])
    want = np.log1p(np.array([[1, 2, 0], [0, 0, 9]], dtype=np.float32))
    np.testing.assert_array_equal(dense[:2, :nd], want)
    assert dense.dtype == np.float32
    with pytest.raises(ValueError, match="raw row 0 has 4 fields, expected 5"):
        mapper.map([[1, 2, 3, "a"]])
    with pytest.raises(ValueError, match="dense field I2 must be a number, got 'abc'"):
        mapper.map([[1, "abc", 3, "a", "b"]])
    assert hex_key(" abc ") == 0xABC and hex_key("") == -1 and hex_key("g1") == -2
    assert dense_value("12", "I1") == 12.0 and dense_value(None, "I1") == 0.0


def test_raw_and_prepared_requests_predict_the_same(tmp_path):
    data = criteo_like_dataset(tmp_path, {"C1": [10, 11, 12], "C2": [7], "C3": [1, 2]})
    predictor = Predictor.load(make_artifact(tmp_path, dataset=data))
    assert predictor.raw_mapper is not None
    rows = [[3, 0, 1, "b", "7", "2"], [None, 5, 2, "c", "", "99"]]
    dense, sparse = predictor.map_raw(rows)
    np.testing.assert_array_equal(sparse, [[2, 1, 2], [3, 0, 0]])
    prepared = np.log1p(np.array([[3, 0, 1], [0, 5, 2]], dtype=np.float32))
    path = predictor.paths[0]
    np.testing.assert_array_equal(
        predictor.predict(path, dense, sparse), predictor.predict(path, prepared, sparse)
    )


def test_mapper_needs_vocabularies_or_hashing(tmp_path):
    data = criteo_like_dataset(tmp_path, {"C1": [1]})
    schema = open_dataset(data).schema
    mapper, why = raw_mapper_for(schema, None, {"source": "criteo-kaggle"})
    assert mapper is None and "no vocabularies" in why
    with pytest.raises(ValueError):
        RawFieldMapper(schema, None, None)


def test_mp_cache_serves_the_decoders_answers(tmp_path):
    dhe = ModelConfig(embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1), embedding="dhe",
                      dhe_hashes=16, dhe_hidden=(8,))  # fmt: skip
    hybrid = dataclasses.replace(dhe, embedding="hybrid")
    artifact = make_artifact(tmp_path, {"dhe": (dhe, 0.7), "hybrid": (hybrid, 0.72)})
    plain = Predictor.load(artifact)
    cached = Predictor.load(artifact, mp_cache=3)
    assert plain.mp_cache == {} and set(cached.mp_cache) == {"dhe", "hybrid"}
    val = open_dataset(plain.dataset).split("val")
    dense, sparse = plain.check(val.dense[:64], val.sparse[:64])
    for path in plain.paths:
        want = plain.predict(path, dense, sparse)
        got = cached.predict(cached.path(path.name), dense, sparse)
        # the same math; the decoder's matrix products run on other shapes (cached ids are
        # decoded together at build time), so float32 rounding may differ in the last bit
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=path.name)
    stats = cached.cache_stats()
    assert set(stats) == {"dhe@cpu", "hybrid@cpu"}
    assert all(s["hits"] > 0 and s["lookups"] == 64 * 4 for s in stats.values())


def test_mp_cache_ids_travel_with_the_artifact(tmp_path):
    dhe = ModelConfig(embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1), embedding="dhe",
                      dhe_hashes=16, dhe_hidden=(8,))  # fmt: skip
    artifact = make_artifact(tmp_path, {"dhe": (dhe, 0.7)})
    saved = load_artifact(artifact).popular_ids
    assert len(saved) == 4 and all(len(ids) > 0 for ids in saved)
    with_data = Predictor.load(artifact, mp_cache=5).mp_cache
    val = open_dataset(Predictor.load(artifact).dataset).split("val")
    dense, sparse = np.asarray(val.dense[:32]), np.asarray(val.sparse[:32])
    shutil.rmtree(tmp_path / "toy")  # the dataset is gone: the artifact's own ids serve
    cached = Predictor.load(artifact, mp_cache=5)
    assert cached.mp_cache == with_data and cached.mp_cache["dhe"] > 0
    plain = Predictor.load(artifact)
    path = plain.path("dhe@cpu")
    np.testing.assert_allclose(cached.predict(path, *cached.check(dense, sparse)),
                               plain.predict(path, *plain.check(dense, sparse)), rtol=1e-6,
                               atol=1e-7)  # fmt: skip
    (artifact / "popular_ids.npz").unlink()  # neither the ids nor the dataset: one line
    with pytest.raises(HotrecError, match="--mp-cache 0"):
        Predictor.load(artifact, mp_cache=5)
