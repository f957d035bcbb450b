"""Under bf16 on the CPU every new batch size makes oneDNN build new kernels, so a forward
runs on its rows rounded up to a multiple of 64 (zeros after the inputs' own rows, outside
the loss): padded steps train as unpadded ones, and padding is on only where it pays."""

from __future__ import annotations

import pytest
import torch

from hotrec.config import load_config
from hotrec.device import make_device
from hotrec.models.dlrm import DLRM
from hotrec.training.runs import start_run
from hotrec.training.steps import PAD_MULTIPLE, padding_multiple
from tests.conftest import write_toy_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("pad") / "ds")


def trainer_for(data, run_dir, *extra):
    cfg = load_config("tiny", [f"data.path={str(data)!r}", "data.batch_size=100",
                               "train.max_steps=6", "train.eval_every=0", *extra])  # fmt: skip
    return start_run(cfg, run_dir)


def trained(data, run_dir, pad: int, monkeypatch) -> tuple[dict, list[int]]:
    """Parameters after 6 fp32 steps of 100 inputs, forwards padded to multiples of `pad`
    (0: none); and the padded sizes the training forwards ran at."""
    sizes: list[int] = []
    forward = DLRM.forward

    def recording(self, dense, sparse, bags=None, pad_to=0):
        if self.training:  # not the evaluation at the end
            sizes.append(pad_to)
        return forward(self, dense, sparse, bags, pad_to)

    monkeypatch.setattr(DLRM, "forward", recording)
    trainer = trainer_for(data, run_dir, "train.precision='fp32'")
    trainer.ctx.pad_multiple = pad
    trainer.fit()
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}, sizes


def close(a: dict, b: dict) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


def test_a_padded_step_trains_as_the_unpadded_one(tmp_path, data, monkeypatch):
    plain, sizes = trained(data, tmp_path / "plain", 0, monkeypatch)
    assert set(sizes) == {0}
    padded, sizes = trained(data, tmp_path / "padded", PAD_MULTIPLE, monkeypatch)
    assert set(sizes) == {128}  # 100 inputs ran as 128 rows
    assert close(plain, padded)


def test_negative_control_an_interaction_that_mixes_rows_sees_the_padding(
    tmp_path, data, monkeypatch
):
    """Were padded rows to reach the inputs' own (here: an interaction that subtracts the
    batch mean), the padded run would differ: the comparison above can fail."""
    from hotrec.models.interactions import DotInteraction

    own = DotInteraction.forward
    monkeypatch.setattr(
        DotInteraction, "forward", lambda self, d, f: (z := own(self, d, f)) - z.mean(0)
    )
    plain, _ = trained(data, tmp_path / "plain", 0, monkeypatch)
    padded, _ = trained(data, tmp_path / "padded", PAD_MULTIPLE, monkeypatch)
    assert not close(plain, padded)


def test_padded_forward_returns_the_inputs_own_logits(tmp_path, data):
    trainer = trainer_for(data, tmp_path / "run", "train.precision='fp32'")
    batch = next(iter(trainer.train_loader))
    model = trainer.model.eval()
    with torch.no_grad():
        plain = model(batch.dense, batch.sparse)
        padded = model(batch.dense, batch.sparse, pad_to=192)
    assert plain.shape == padded.shape == (100,)
    torch.testing.assert_close(plain, padded, rtol=1e-5, atol=1e-6)


def test_padding_is_on_for_bf16_on_the_cpu_only(tmp_path, data):
    cpu = make_device("cpu")
    model = trainer_for(data, tmp_path / "a", "train.precision='fp32'").model
    assert padding_multiple(model, cpu, "bf16") == PAD_MULTIPLE
    assert padding_multiple(model, cpu, "fp32") == 0
    assert padding_multiple(model, make_device("emulated"), "bf16") == 0
    dropout = ["model.interaction='masked_transformer'", "model.dropout=0.1"]
    transformer = trainer_for(data, tmp_path / "b", "train.precision='fp32'", *dropout).model
    assert padding_multiple(transformer, cpu, "bf16") == 0  # its mask would cover the pads
    no_dropout = ["model.interaction='masked_transformer'", "model.dropout=0.0"]
    quiet = trainer_for(data, tmp_path / "c", "train.precision='fp32'", *no_dropout).model
    assert padding_multiple(quiet, cpu, "bf16") == PAD_MULTIPLE
    assert padding_multiple(model, cpu, "bf16", asked=0) == 0  # train.pad_multiple: off
    assert padding_multiple(model, cpu, "fp32", asked=32) == 32  # or asked for anywhere


def test_a_bf16_run_on_the_cpu_pads_and_trains(tmp_path, data):
    trainer = trainer_for(data, tmp_path / "run", "train.precision='bf16'", "train.device='cpu'")
    assert trainer.ctx.pad_multiple == PAD_MULTIPLE
    result = trainer.fit()
    assert result["steps"] == 6 and result["precision"] == "bf16"
    assert result["pad_multiple"] == PAD_MULTIPLE  # recorded in result.json
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
