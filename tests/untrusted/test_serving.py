"""The server never answers 200 with a non-finite prediction."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hotrec.serving.predictor import Predictor
from tests.serving.serving_helpers import make_artifact
from tests.serving.test_server import app_for, client_for


class NaNPredictor(Predictor):
    """A model damaged in memory: its predictions are NaN."""

    def predict(self, path, dense, sparse):
        return np.full(len(dense), np.nan, dtype=np.float32)


@pytest.mark.parametrize("cls, status", [(NaNPredictor, 500), (Predictor, 200)])
def test_a_non_finite_prediction_is_a_500_not_a_200_with_null(tmp_path, cls, status):
    artifact = make_artifact(tmp_path)
    app, predictor = app_for(artifact, "static:small@cpu", predictor_cls=cls)
    sparse = [[1] * predictor.schema.num_tables]
    dense = [[0.5] * predictor.schema.num_dense]

    async def main():
        async with client_for(app) as c:
            return await c.post("/predict", json={"dense": dense, "sparse": sparse})

    r = asyncio.run(main())
    assert r.status_code == status, r.text
    if status == 500:
        assert "non-finite" in r.json()["detail"]
    else:
        assert np.isfinite(r.json()["predictions"]).all()


def test_a_nan_dense_value_in_a_request_is_a_422(tmp_path):
    artifact = make_artifact(tmp_path)
    app, predictor = app_for(artifact, "static:small@cpu")
    body = (
        '{"dense": [[NaN' + ", 0.1" * (predictor.schema.num_dense - 1) + "]], "
        '"sparse": [[' + ", ".join(["1"] * predictor.schema.num_tables) + "]]}"
    )

    async def main():
        async with client_for(app) as c:
            return await c.post(
                "/predict", content=body, headers={"content-type": "application/json"}
            )

    r = asyncio.run(main())
    assert r.status_code == 422, r.text
