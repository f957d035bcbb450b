"""Serving a multi-hot dataset's artifact: a request lists ids per bag table; predictions
equal the models' on the loader's batches, bags of one equal one-hot ids, MP-Cache answers
what the decoder answers, and bad entries get one line (422 over HTTP)."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
import torch

from hotrec.config import ModelConfig
from hotrec.data.format import open_dataset
from hotrec.data.loader import make_batch
from hotrec.models.artifact import load_artifact
from hotrec.serving.bag_ids import BagIds, concat_ids, ids_as_rows, split_ids, take_ids
from hotrec.serving.predictor import Predictor
from tests.conftest import write_bag_dataset, write_toy_dataset
from tests.serving.serving_helpers import make_artifact
from tests.serving.test_server import app_for, client_for

TABLE = ModelConfig(embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1))
DHE = dataclasses.replace(TABLE, embedding="dhe", dhe_hashes=16, dhe_hidden=(8,))
REPS = {
    "table": (TABLE, 0.70),
    "dhe": (DHE, 0.71),
    "hybrid": (dataclasses.replace(DHE, embedding="hybrid"), 0.72),
    "qr": (dataclasses.replace(TABLE, embedding="qr"), 0.73),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bag-serving")
    one_hot = write_toy_dataset(root / "one", rows=600)
    pooling = {1: "sum", 2: "mean"}
    return {
        "one_hot": one_hot,
        "of_one": write_bag_dataset(one_hot, root / "of_one", pooling),
        "wider": write_bag_dataset(one_hot, root / "wider", pooling, max_extra=3, empty_share=0.1),
    }


@pytest.fixture(scope="module")
def artifacts(data, tmp_path_factory):
    return {k: make_artifact(tmp_path_factory.mktemp(k), REPS, v) for k, v in data.items()}


def test_bag_predictions_equal_the_models_on_the_loaders_batches(artifacts, data):
    predictor = Predictor.load(artifacts["wider"])
    models = load_artifact(artifacts["wider"]).models
    val = open_dataset(data["wider"]).split("val")
    rows = np.arange(40)
    dense, ids = predictor.check(val.dense[rows], ids_as_rows(val, rows))
    assert isinstance(ids, BagIds) and (ids.lengths == 0).any()  # empty bags included
    batch = make_batch(val, rows)
    for path in predictor.paths:
        got = predictor.predict(path, dense, ids)
        with torch.no_grad():
            model = models[path.representation]
            want = torch.sigmoid(model(batch.dense, batch.sparse, batch.bags)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=path.name)


def test_bags_of_one_serve_as_the_one_hot_ids(artifacts, data):
    """The same models (same seeds) over the one-hot data and its bags-of-one copy answer
    alike; an id alone in a bag field is a bag of one. Negative control: wider bags differ."""
    val = open_dataset(data["one_hot"]).split("val")
    dense, sparse = np.asarray(val.dense[:30]), np.asarray(val.sparse[:30], dtype=np.int64)
    one_hot, of_one = Predictor.load(artifacts["one_hot"]), Predictor.load(artifacts["of_one"])
    wider = Predictor.load(artifacts["wider"])
    listed = [[x if t not in (1, 2) else [x] for t, x in enumerate(r)] for r in sparse.tolist()]
    for path in one_hot.paths:
        want = one_hot.predict(path, *one_hot.check(dense, sparse))
        for request in (sparse.tolist(), listed):  # ids alone, and lists of one
            got = of_one.predict(of_one.path(path.name), *of_one.check(dense, request))
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=path.name)
    wide_val = open_dataset(data["wider"]).split("val")
    rows = np.arange(30)
    w = wider.predict(wider.path("table@cpu"), *wider.check(dense, ids_as_rows(wide_val, rows)))
    assert not np.allclose(
        w, one_hot.predict(one_hot.path("table@cpu"), *one_hot.check(dense, sparse))
    )


def test_mp_cache_on_bags_answers_what_the_decoder_answers(artifacts, data):
    plain = Predictor.load(artifacts["wider"], ["dhe", "hybrid"])
    cached = Predictor.load(artifacts["wider"], ["dhe", "hybrid"], mp_cache=3)
    val = open_dataset(data["wider"]).split("val")
    dense, ids = plain.check(val.dense[:64], split_ids(val, slice(0, 64)))
    for path in plain.paths:
        want = plain.predict(path, dense, ids)
        got = cached.predict(cached.path(path.name), dense, ids)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=path.name)
    stats = cached.cache_stats()
    lookups = int(ids.lengths.sum())  # every id of every table: both models decode all four
    assert all(0 < s["hits"] < s["lookups"] == lookups for s in stats.values()), stats


@pytest.mark.parametrize(
    "entry, message",
    [
        ([[1], 2, [3], 0], "sparse[0][0] must be an id (a one-hot table)"),
        ([1, [2, [3]], 3, 0], "sparse[0][1] must be an id or a list of ids"),
        ([1, True, 3, 0], "sparse[0][1] must be an id or a list of ids"),
        ([1, [2, 99999], 3, 0], "sparse[0][1] holds id 99999, out of range for table C2"),
        ([1, 2, 3], "sparse[0] must hold 4 entries"),
    ],
)
def test_bad_bag_entries_are_refused_with_one_line(artifacts, entry, message):
    predictor = Predictor.load(artifacts["wider"], ["table"])
    with pytest.raises(ValueError) as e:
        predictor.check([[0.0] * 3], [entry])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bag_ids_take_concat_and_rows_round_trip(artifacts, data):
    val = open_dataset(data["wider"]).split("val")
    ids = split_ids(val, slice(0, 20))
    index = np.array([3, 3, 0, 19, 7])
    taken = take_ids(ids, index)
    again = split_ids(val, index)
    assert np.array_equal(taken.values, again.values)
    assert np.array_equal(taken.lengths, again.lengths)
    joined = concat_ids([split_ids(val, slice(0, 8)), split_ids(val, slice(8, 20))])
    assert np.array_equal(joined.values, ids.values) and np.array_equal(joined.lengths, ids.lengths)
    predictor = Predictor.load(artifacts["wider"], ["table"])
    _, parsed = predictor.check(np.zeros((20, 3)), ids_as_rows(val, np.arange(20)))
    assert np.array_equal(parsed.values, ids.values)
    assert np.array_equal(parsed.one_hot([0, 3]), np.asarray(val.sparse[:20]))


def test_a_bag_request_over_http(artifacts, data):
    app, predictor = app_for(artifacts["wider"], "static:qr@cpu")
    val = open_dataset(data["wider"]).split("val")
    rows = np.arange(5)
    body = {"dense": np.asarray(val.dense[rows]).tolist(), "sparse": ids_as_rows(val, rows)}
    bad = {"dense": body["dense"][:1], "sparse": [[1, [2, 99999], 3, 0]]}

    async def main():
        async with client_for(app) as c:
            return await c.post("/predict", json=body), await c.post("/predict", json=bad)

    good, refused = asyncio.run(main())
    assert good.status_code == 200, good.text
    want = predictor.predict(
        predictor.path("qr@cpu"), *predictor.check(body["dense"], body["sparse"])
    )
    np.testing.assert_allclose(good.json()["predictions"], want, rtol=1e-6)
    assert refused.status_code == 422 and "out of range for table C2" in refused.json()["detail"]


def test_load_test_queries_list_every_bag(artifacts, data):
    """`hotrec loadtest --data` builds its requests from the split's rows, bags as lists."""
    import json

    from hotrec.serving.loadgen import QuerySizes, build_queries

    val = open_dataset(data["wider"]).split("val")
    predictor = Predictor.load(artifacts["wider"], ["table"])
    for query in build_queries(val, QuerySizes("uniform", low=3, high=9), 5, seed=1):
        body = json.loads(query.body)
        _, ids = predictor.check(body["dense"], body["sparse"])
        assert len(ids) == len(query.labels) and ids.lengths[:, [1, 2]].sum() > 0
