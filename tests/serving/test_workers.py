"""Models in a worker process answer exactly as in-process models."""

from __future__ import annotations

import numpy as np
import pytest

from hotrec.data.format import open_dataset
from hotrec.errors import HotrecError
from hotrec.serving.predictor import Predictor
from hotrec.serving.workers import WorkerPool
from tests.serving.serving_helpers import make_artifact


def test_worker_process_predicts_like_the_models(tmp_path):
    artifact = make_artifact(tmp_path)
    local = Predictor.load(artifact)
    front = Predictor.load(artifact, models=False)
    val = open_dataset(local.dataset).split("val")
    dense, sparse = local.check(val.dense[:20], val.sparse[:20])
    with pytest.raises(HotrecError, match="holds no models"):
        front.predict(front.paths[0], dense, sparse)
    pool = WorkerPool(artifact, None, ["cpu"], threads=1).start()
    try:
        pool.attach(front)
        for path in front.paths:
            np.testing.assert_array_equal(
                front.predict(path, dense, sparse), local.predict(path, dense, sparse)
            )
        with pytest.raises(RuntimeError, match="unknown path"):
            pool.predict(type(path)("nope", "cpu"), dense, sparse)
    finally:
        pool.close()
    assert front.metrics("large") == local.metrics("large")
    with pytest.raises(HotrecError, match="no representation 'qr'"):
        Predictor.load(artifact, ["qr"], models=False)
