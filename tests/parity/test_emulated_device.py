"""Schedules on the emulated device (the CPU made as strict as CUDA) against the CPU.

The emulator raises on host/device mixing and on async copies read before their wait, and
counts device-to-host synchronizations; training on it runs the same CPU kernels, so the
parameters must equal the CPU run's bit for bit, for every schedule with and without
Slipstream. Where a CUDA device is present (`make gpu-check`), the parity and sync-budget
tests run on it too: parity within float tolerance (other kernels), syncs counted by the
device and any hidden one raised by torch's sync debug mode. Negative controls: a batch copy not waited on, an unmoved batch, hotline's side
copy not waited on, hotline without its hazard patch."""

from __future__ import annotations

import pytest
import torch

from hotrec.config import load_config
from hotrec.device.emulated import DeviceError
from hotrec.training.runs import resume_run, start_run
from hotrec.training.steps import NonFiniteLoss
from tests.conftest import write_toy_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("emulated") / "ds"
    return write_toy_dataset(path, rows=2000, table_rows=(40, 12, 300, 6, 90))


def make(tmp_path, data, name, device, schedule, *extra):
    cfg = load_config(
        "tiny",
        [f"data.path='{data}'", "data.batch_size=32", "optim.sparse='adagrad'",
         "optim.dense='adam'", "optim.dense_lr=0.01", "train.checkpoint_every=0",
         f"train.device='{device}'", f"placement.schedule='{schedule}'",
         "placement.hot_budget='1KiB'", "train.deterministic=true",
         "placement.hotline_split='split'", *extra],
    )  # fmt: skip
    return start_run(cfg, tmp_path / name)


def host_params(trainer) -> dict[str, torch.Tensor]:
    trainer.schedule.sync()
    return trainer.device.state_to_host(trainer.model.state_dict())


SCHEDULES = ["baseline", "device_only", "fae", "hotline"]
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ["emulated", pytest.param("cuda", marks=NO_CUDA)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("slipstream", [False, True])
def test_device_training_equals_the_cpu(tmp_path, data, schedule, slipstream, device):
    """Bit for bit on the emulated device; within float tolerance on CUDA (other kernels,
    deterministic ones)."""
    extra = [f"placement.slipstream={str(slipstream).lower()}", "placement.slipstream_alpha=4",
             "placement.lookahead=3", "placement.fae_run_length=2"]  # fmt: skip
    cpu = make(tmp_path, data, "cpu", "cpu", schedule, *extra)
    cpu_result = cpu.fit()
    emu = make(tmp_path, data, "emu", device, schedule, *extra)
    emu_result = emu.fit()
    a, b = host_params(cpu), host_params(emu)
    assert a.keys() == b.keys()
    for k in a:
        if device == "emulated":
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), k
    if device == "emulated":
        assert emu_result["val"]["auc"] == cpu_result["val"]["auc"]
    else:
        assert abs(emu_result["val"]["auc"] - cpu_result["val"]["auc"]) < 1e-3
    syncs = emu_result["syncs_per_step"]
    assert syncs["steps"] == emu_result["steps"] and syncs["mean"] > 0
    assert "syncs_per_step" not in cpu_result  # the CPU does not count


@pytest.mark.parametrize("schedule", ["device_only", "hotline"])
def test_emulated_resume_is_exact(tmp_path, data, schedule):
    full = make(tmp_path, data, "full", "emulated", schedule, "train.epochs=2")
    full.fit()
    part = make(tmp_path, data, "part", "emulated", schedule, "train.epochs=2")
    part.fit(should_stop=lambda st: st.step == 30)
    resumed = resume_run(tmp_path / "part")
    resumed.fit()
    a, b = host_params(full), host_params(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_negative_control_a_missing_wait_reads_nan(tmp_path, data, monkeypatch):
    """The batch copied to the device without waiting on its copy: the emulator's NaN
    reaches the loss, which stops the run (on CUDA it would race)."""
    from hotrec.training import steps

    def no_wait(device, batch):
        parts = [device.copy_to_device_async(device.stage(t))[0]
                 for t in (batch.dense, batch.sparse, batch.label)]  # fmt: skip
        return steps.Batch(*parts)

    monkeypatch.setattr("hotrec.training.schedules.base.batch_to_device", no_wait)
    trainer = make(tmp_path, data, "nowait", "emulated", "baseline")
    with pytest.raises(NonFiniteLoss, match="loss became nan at step 1"):
        trainer.fit()


def test_negative_control_mixing_host_and_device_memory_raises(tmp_path, data, monkeypatch):
    """A batch handed to the model without moving it: the emulator refuses the op."""
    monkeypatch.setattr(
        "hotrec.training.schedules.base.batch_to_device", lambda device, batch: batch
    )
    trainer = make(tmp_path, data, "mixed", "emulated", "baseline")
    with pytest.raises(DeviceError, match="host tensor"):
        trainer.fit()


def test_negative_control_hotline_without_waiting_for_its_side_copy_reads_nan(
    tmp_path, data, monkeypatch
):
    """The compute stream does not wait for the look-ahead copy of the cold rows: their
    values are still the emulator's NaN when the step reads them."""
    trainer = make(tmp_path, data, "hl-nowait", "emulated", "hotline", "placement.lookahead=2")
    wait, side = trainer.device.wait, trainer.schedule.side

    def wait_except_side(event):  # the batches' own copies are still waited for
        if getattr(event, "stream", None) is not side:
            wait(event)

    monkeypatch.setattr(trainer.device, "wait", wait_except_side)
    with pytest.raises(NonFiniteLoss):
        trainer.fit()


def test_negative_control_hotline_without_the_hazard_patch_diverges(tmp_path, data, monkeypatch):
    from hotrec.training.schedules.hotline import Hotline

    cpu = make(tmp_path, data, "cpu", "cpu", "baseline")
    cpu.fit()
    monkeypatch.setattr(Hotline, "_patch", lambda self, item: None)
    emu = make(tmp_path, data, "emu", "emulated", "hotline", "placement.lookahead=4")
    emu.fit()
    a, b = host_params(cpu), host_params(emu)
    assert not torch.allclose(a["embeddings.store.weight"], b["embeddings.store.weight"], atol=1e-4)


# The sync budget: device-to-host synchronizations per training step on the emulated
# device. One for every schedule: the host wait that reads the loss (the non-finite check)
# and completes the host-bound gradients' copies (fae's switches between streams cost none).
# Slipstream adds its snapshot reads on the two steps per epoch that take them.
BUDGET = {"baseline": 1, "device_only": 1, "fae": 1, "hotline": 1}


def run_counted(tmp_path, data, schedule, *extra, device="emulated"):
    trainer = make(tmp_path, data, schedule, device, schedule, "train.epochs=2", *extra)
    per_step = []
    original = trainer.step

    def step(item):
        before = trainer.device.syncs
        with trainer.device.forbid_hidden_syncs():  # CUDA: an uncounted sync raises
            result = original(item)
        per_step.append(trainer.device.syncs - before)
        return result

    trainer.step = step
    result = trainer.fit()
    return trainer, result, per_step


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("slipstream", [False, True])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_sync_budget(tmp_path, data, schedule, slipstream, device, capsys):
    extra = ["placement.fae_run_length=2"]
    if slipstream:
        extra += ["placement.slipstream=true", "placement.slipstream_alpha=4"]
    trainer, result, per_step = run_counted(tmp_path, data, schedule, *extra, device=device)
    syncs = result["syncs_per_step"]
    with capsys.disabled():
        print(f"\n{trainer.schedule.name}: {syncs['mean']} syncs per step (at most "
              f"{syncs['max']}), by op {syncs['by_op']}")  # fmt: skip
    assert syncs["steps"] == len(per_step) and syncs["max"] == max(per_step)
    over = [n for n in per_step if n > BUDGET[schedule]]
    allowed = 2 * trainer.cfg.train.epochs if slipstream else 0  # two snapshots per epoch
    assert len(over) <= allowed, (over, allowed)
    assert max(per_step) <= BUDGET[schedule] + 2 * slipstream, per_step  # may share a step


def test_negative_control_an_added_item_per_step_fails_the_budget(tmp_path, data, monkeypatch):
    from hotrec.training.schedules.base import Baseline

    original = Baseline.run

    def run_with_a_read(self, item):
        loss = original(self, item)
        self.ctx.model.top_mlp.parameters().__next__().sum().item()  # one more sync
        return loss

    monkeypatch.setattr(Baseline, "run", run_with_a_read)
    _, result, per_step = run_counted(tmp_path, data, "baseline")
    assert min(per_step) == BUDGET["baseline"] + 1 and result["syncs_per_step"]["max"] == 2


def pinned_allocations_per_step(tmp_path, data, schedule) -> list[int]:
    trainer = make(tmp_path, data, schedule, "emulated", schedule, "train.epochs=2")
    allocated, original = [], trainer.step

    def step(item):
        result = original(item)
        allocated.append(trainer.device.pinned_allocations)
        return result

    trainer.step = step
    trainer.fit()
    return allocated


@pytest.mark.parametrize("schedule", ["baseline", "fae", "hotline"])
def test_training_allocates_pinned_memory_only_in_its_first_steps(tmp_path, data, schedule):
    """Every async copy, either way, goes through reused pinned buffers (a page-locked
    allocation per step would cost more than the copy on CUDA). After the first steps the
    pools grow only to fit a larger gather than any before (powers of 2), not per step: at
    most 8 after step 20 (a copy engine lagging under load keeps more buffers in flight: 5
    seen once for hotline on a busy 2-core machine), where the negative control below grows
    by one per step (67 here)."""
    allocated = pinned_allocations_per_step(tmp_path, data, schedule)
    assert len(allocated) > 60 and allocated[-1] - allocated[20] <= 8, allocated


def test_negative_control_a_fresh_readback_buffer_per_copy_fails(tmp_path, data, monkeypatch):
    from hotrec.device import Readback

    monkeypatch.setattr(Readback, "copy", lambda self, src: self.device.copy_to_host_async(src))
    allocated = pinned_allocations_per_step(tmp_path, data, "baseline")
    assert allocated[-1] - allocated[20] >= len(allocated) - 21


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_cli_trains_every_schedule_on_the_emulated_device_like_the_cpu(
    tmp_path, data, schedule, capsys
):
    import json

    from hotrec.cli.main import main

    aucs = {}
    for device in ("cpu", "emulated"):
        run = tmp_path / device
        argv = ["train", "--data", str(data), "--preset", "tiny", "--schedule", schedule,
                "--device", device, "--hot-budget", "1KiB", "--run-dir", str(run),
                "--set", "placement.hotline_split='split'"]  # fmt: skip
        assert main(argv) == 0
        aucs[device] = json.loads((run / "result.json").read_text())["val"]["auc"]
    assert aucs["emulated"] == aucs["cpu"]
    assert "device-to-host syncs per training step:" in capsys.readouterr().out
