"""Nothing the tool loads from a file can execute code: no unpickling anywhere in src/."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "hotrec"

FORBIDDEN = [
    r"weights_only\s*=\s*False",
    r"allow_pickle\s*=\s*True",
    r"\bpickle\.loads?\(",
    r"\bcloudpickle\b",
    r"\bdill\b",
    r"\bmarshal\.loads?\(",
    r"(?<![\w.])eval\(",
    r"(?<![\w.])exec\(",
    r"\byaml\.load\(",
    r"\bshelve\b",
]


def offending_lines(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(re.search(p, code) for p in FORBIDDEN):
                found.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    return found


def test_no_source_file_unpickles_or_evaluates_file_contents():
    assert offending_lines(SRC) == []


def test_every_torch_load_is_weights_only():
    calls = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            end = text.index(")", m.end())
            calls.append((path.name, "weights_only=True" in text[m.end() : end + 40]))
    assert calls and all(ok for _, ok in calls), calls


def test_negative_control_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch\nx = torch.load(p, weights_only=False)\ny = eval(text)\n"
        "z = np.load(p, allow_pickle=True)\nmodel.eval()\n"
    )
    assert len(offending_lines(tmp_path)) == 3
