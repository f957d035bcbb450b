"""--precision auto (the default): bf16 autocast where the hardware computes bf16 natively
(CPUs with AMX or AVX512-BF16, CUDA compute capability 8.0+), fp32 elsewhere; what was
picked and why is printed and recorded in result.json."""

from __future__ import annotations

import json

import pytest
import torch

from hotrec.cli.main import main
from hotrec.config import RunConfig, load_config
from hotrec.device import base, make_device
from hotrec.errors import HotrecError
from hotrec.training.runs import start_run
from hotrec.training.steps import resolve_precision
from tests.conftest import write_toy_dataset


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU has the given feature flags."""

    def set_flags(*names: str) -> None:
        monkeypatch.setattr(base, "cpu_flags", lambda: frozenset(names))

    return set_flags


def test_auto_is_the_default_and_follows_the_cpu_flags(flags):
    assert RunConfig().train.precision == "auto"
    cpu = make_device("cpu")
    for present, expected in [
        (("sse4_2", "amx_tile", "amx_bf16"), ("bf16", "auto: this CPU has amx_bf16")),
        (("avx512f", "avx512_bf16"), ("bf16", "auto: this CPU has avx512_bf16")),
        (("avx2", "avx512f", "amx_tile"), ("fp32", "auto: no native bf16 on cpu")),
        ((), ("fp32", "auto: no native bf16 on cpu")),
    ]:
        flags(*present)
        assert resolve_precision("auto", cpu) == expected
    flags("amx_bf16")
    assert resolve_precision("fp32", cpu) == ("fp32", "asked for")  # asked for wins
    assert resolve_precision("auto", make_device("emulated"))[0] == "fp32"  # bf16 not emulated
    with pytest.raises(HotrecError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", cpu)


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512_bf16 amx_bf16\n\n")
    assert base.cpu_flags.__wrapped__(str(info)) == {"fpu", "avx512_bf16", "amx_bf16"}
    assert base.cpu_flags.__wrapped__(str(tmp_path / "none")) == frozenset()


def params_after(data, precision: str, run_dir) -> tuple[dict, dict]:
    cfg = load_config("tiny", [f"data.path={str(data)!r}", f"train.precision={precision!r}",
                               "train.max_steps=15", "train.eval_every=0"])  # fmt: skip
    trainer = start_run(cfg, run_dir)
    result = trainer.fit()
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}, result


def test_auto_trains_in_what_it_picked(tmp_path, flags):
    """With native bf16 auto trains exactly as --precision bf16 does, else as fp32; the two
    precisions differ (negative control: the choice is not a label only)."""
    data = write_toy_dataset(tmp_path / "ds")
    bf16, _ = params_after(data, "bf16", tmp_path / "bf16")
    fp32, _ = params_after(data, "fp32", tmp_path / "fp32")
    assert any(not torch.equal(bf16[k], fp32[k]) for k in fp32)
    for present, same in [(("amx_bf16",), bf16), ((), fp32)]:
        flags(*present)
        auto, result = params_after(data, "auto", tmp_path / f"auto{len(present)}")
        assert auto.keys() == same.keys() and all(torch.equal(auto[k], same[k]) for k in same)
        assert result["precision"] == ("bf16" if present else "fp32")
        assert result["precision_why"].startswith("auto: ")


def test_the_command_line_says_what_auto_picked(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--run-dir", str(run), "--preset", "tiny",
            "--precision", "auto", "--max-steps", "3", "--eval-every", "0", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    picked, why = resolve_precision("auto", make_device("cpu"))  # this machine's answer
    out = " ".join(capsys.readouterr().out.split())
    assert f"precision: {picked} ({why})" in out and f"steps on cpu in {picked}" in out
    result = json.loads((run / "result.json").read_text())
    assert (result["precision"], result["precision_why"]) == (picked, why)


@pytest.mark.parametrize(
    "extra, noted",
    [
        (["--set", "train.pad_multiple=0"], True),
        ([], False),
        (["--set", "train.pad_multiple=0", "--slipstream-compact"], False),
        (["--set", "train.pad_multiple=0", "--precision", "fp32"], False),
    ],
    ids=["unpadded", "padded", "compacted", "fp32"],
)
def test_slipstream_narrowing_batches_under_bf16_on_the_cpu_is_noted(tmp_path, capsys, extra,
                                                                     noted):  # fmt: skip
    """Batches of changing size rebuild bf16 kernels on the CPU: said once at the start where
    forwards are not padded to a few sizes."""
    data = write_toy_dataset(tmp_path / "ds")
    argv = ["train", "--data", str(data), "--run-dir", str(tmp_path / "run"), "--preset", "tiny",
            "--precision", "bf16", "--slipstream", "--max-steps", "2", "--eval-every", "0",
            "--device", "cpu", *extra]  # fmt: skip
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("each new batch size builds new kernels" in out) == noted
    recorded = json.loads((tmp_path / "run" / "result.json").read_text())["notes"]
    assert any("each new batch size" in n for n in recorded) == noted  # library runs keep it
    if noted:
        assert "padding forwards to multiples of 64" in out


def test_compaction_asked_on_several_ranks_is_noted():
    """Compaction is one process only: several ranks narrow each batch, and say so."""
    from hotrec.config import PlacementConfig
    from hotrec.training.notes import setting_notes

    def notes(world: int, compact: bool) -> list[str]:
        p = PlacementConfig(slipstream=True, slipstream_compact=compact)
        return setting_notes(p, ranks=world, compacting=compact and world == 1, pad_multiple=64,
                             precision="fp32", on_host=True)  # fmt: skip

    assert any("compaction runs on one process" in n for n in notes(2, True))
    assert notes(1, True) == [] and notes(2, False) == []
