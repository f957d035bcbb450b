"""Multi-hot exactness: a bag of one trains bit for bit like the one-hot id (negative control:
bags with more ids train differently)."""

from __future__ import annotations

import pytest
import torch

from hotrec.config import load_config
from hotrec.training.trainer import start_run
from tests.conftest import write_bag_dataset, write_toy_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_hot")
    one_hot = write_toy_dataset(root / "one", rows=2000, table_rows=(40, 12, 300, 6, 90))
    of_one = write_bag_dataset(one_hot, root / "of_one", {1: "sum", 2: "mean", 4: "sum"})
    wider = write_bag_dataset(one_hot, root / "wider", {1: "sum", 2: "mean", 4: "sum"}, 2, 0.1)
    return {"one_hot": one_hot, "of_one": of_one, "wider": wider}


def fit(tmp_path, data, name, sparse, dense, device, schedule="baseline"):
    cfg = load_config(
        "tiny",
        [
            f"data.path='{data}'",
            "data.batch_size=32",
            f"optim.sparse='{sparse}'",
            f"optim.dense='{dense}'",
            "train.max_steps=30",
            "train.eval_every=0",
            "train.checkpoint_every=0",
            f"train.device='{device}'",
            "train.deterministic=true",
            f"placement.schedule='{schedule}'",
        ],
    )
    trainer = start_run(cfg, tmp_path / name)
    result = trainer.fit()
    state = trainer.device.state_to_host(trainer.model.state_dict())
    return {k: v.clone() for k, v in state.items()}, result


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("sparse, dense", [("sgd", "sgd"), ("adagrad", "adam")])
def test_a_bag_of_one_trains_bit_for_bit_like_one_hot(tmp_path, datasets, sparse, dense, device):
    a, ra = fit(tmp_path, datasets["one_hot"], "a", sparse, dense, device)
    b, rb = fit(tmp_path, datasets["of_one"], "b", sparse, dense, device)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ra["val"]["auc"] == rb["val"]["auc"] and ra["test"]["logloss"] == rb["test"]["logloss"]


def test_negative_control_bags_of_more_ids_train_differently(tmp_path, datasets):
    a, _ = fit(tmp_path, datasets["one_hot"], "a", "sgd", "sgd", "cpu")
    b, _ = fit(tmp_path, datasets["wider"], "b", "sgd", "sgd", "cpu")
    weights = "embeddings.store.weight"
    assert not torch.equal(a[weights], b[weights])


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("sparse, dense", [("sgd", "sgd"), ("adagrad", "adam")])
def test_device_only_equals_baseline_on_bags(tmp_path, datasets, sparse, dense, device):
    a, ra = fit(tmp_path, datasets["wider"], "a", sparse, dense, device)
    b, rb = fit(tmp_path, datasets["wider"], "b", sparse, dense, device, "device_only")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert ra["val"]["auc"] == rb["val"]["auc"]
