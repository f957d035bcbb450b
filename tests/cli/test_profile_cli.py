"""`hotrec profile` through main([...]) on a tiny synthetic dataset."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from hotrec.cli.main import main
from hotrec.data.format import open_dataset
from hotrec.data.synthetic import synthesize
from hotrec.placement.hotset import HotSet


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("profile") / "tiny", profile="tiny", rows=4000)


def test_profile_writes_the_hot_set_and_the_plot(tiny_data, tmp_path, capsys):
    out, png = tmp_path / "hot" / "hot.npz", tmp_path / "fig.png"
    argv = ["profile", str(tiny_data), "--hot-budget", "4KiB", "--dim", "8", "--sample", "1"]
    assert main(argv + ["--out", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "hot share vs device budget" in text and "C5" in text and "64B" in text
    hot = HotSet.load(out)
    schema = open_dataset(tiny_data).schema
    assert hot.stats["capacity"] == 4096 // 32 == len(hot.rows)
    assert hot.stats["sampled_inputs"] == len(open_dataset(tiny_data).split("train").sparse)
    assert hot.table_names == [t.name for t in schema.tables]
    np.testing.assert_array_equal(hot.table_offsets, schema.table_offsets)
    hot.check_compatible(schema.table_rows, 8)
    assert f"{hot.stats['input_share']:.1%}" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_default_out_is_outside_the_dataset(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["profile", str(tiny_data), "--hot-budget", "1KiB"]) == 0
    written = tmp_path / "runs" / "profile" / "tiny-hotset.npz"
    assert HotSet.load(written).stats["dim"] == 16
    assert not list(tiny_data.glob("*.npz"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hot-budget", "12 parsecs"], "cannot read '12 parsecs' as a byte size"),
        (["--hot-budget", "0"], "at least one byte"),
        (["--sample", "1.5"], "sample fraction"),
        (["--out", "{data}/hot.npz"], "inside the dataset directory"),
        (["--split", "nope"], "no split 'nope'"),
    ],
)
def test_bad_options_are_one_line_errors(tiny_data, tmp_path, capsys, extra, message):
    extra = [a.format(data=tiny_data) for a in extra]
    out = ["--out", str(tmp_path / "hot.npz")] if "--out" not in extra else []
    assert main(["profile", str(tiny_data), *out, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "hot.npz").exists()


def test_plot_without_matplotlib_says_what_to_install(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    argv = ["profile", str(tiny_data), "--out", str(tmp_path / "h.npz")]
    assert main(argv + ["--plot", str(tmp_path / "f.png")]) == 2
    assert "pip install 'hotrec[bench]'" in capsys.readouterr().err
    assert not (tmp_path / "h.npz").exists()  # refused before profiling
