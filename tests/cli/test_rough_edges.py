"""What a new user hits first: each message says what is wrong in one line, in the words the
rest of the tool and the README use."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from hotrec.cli.main import main
from hotrec.data.rows import REJECT_KINDS
from tests.cli.test_cli import write_criteo_tsv

ROOT = Path(__file__).resolve().parents[2]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_prepare_criteo_kaggle_takes_the_directory_of_train_txt(tmp_path, capsys):
    raw = tmp_path / "kaggle"
    raw.mkdir()
    assert main(["prepare", "criteo-kaggle", str(raw), str(tmp_path / "none")]) == 2
    assert "is a directory without train.txt or train.txt.gz" in one_line(capsys)
    write_criteo_tsv(raw / "train.txt", rows=300)
    assert main(["prepare", "criteo-kaggle", str(raw), str(tmp_path / "ds")]) == 0
    assert (tmp_path / "ds" / "meta.json").is_file()


def test_prepare_criteo_terabyte_on_an_empty_directory_does_not_suggest_days_0(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "criteo-terabyte", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    err = one_line(capsys)
    assert "holds no Criteo Terabyte day_0" in err and "--days 0" not in err


def test_prepare_avazu_on_a_binary_file_does_not_echo_its_bytes(tmp_path, capsys):
    binary = tmp_path / "train"
    binary.write_bytes(bytes(range(256)) * 40)
    assert main(["prepare", "avazu", str(binary), str(tmp_path / "o")]) == 2
    err = one_line(capsys)
    assert "it is not a text file" in err and err.isprintable() and "\\x" not in err


def test_train_on_a_missing_dataset_says_it_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert main(["train", "--data", str(missing), "--run-dir", str(tmp_path / "run")]) == 2
    err = one_line(capsys)
    assert f"{missing} does not exist" in err and "meta.json" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_bad_option_value_is_one_line_not_the_whole_usage(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--data", "x", "--schedule", "bogus"])
    assert stop.value.code == 2
    err = one_line(capsys)
    assert "invalid choice: 'bogus'" in err and "usage:" not in err
    assert err.endswith("(see hotrec train --help)")


def test_info_help_prints_percent_signs_once(capsys):
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    out = capsys.readouterr().out
    assert "top 1% / 10%" in out and "%%" not in out


def test_the_readme_names_malformed_rows_as_the_tool_reports_them():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("Malformed rows are counted") :][:600]
    named = set(re.findall(r"`([a-z_]+)`", section))
    assert set(REJECT_KINDS) <= named, set(REJECT_KINDS) - named
    assert "bad label" not in readme


def test_the_license_is_an_spdx_expression_pip_accepts_without_warning():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # a TOML table is deprecated by PEP 639
