"""The layered structure: each package imports only packages on its floor or below."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "hotrec"

FLOORS = {  # higher floors may import lower ones, never the reverse
    "__main__": 6,  # python -m hotrec: the command line
    "cli": 6,
    "serving": 5,
    "training": 4,
    "models": 3,
    "placement": 2,
    "distributed": 2,
    "data": 1,
    "embeddings": 1,
}
BOTTOM = 0  # types, errors, config, progress, fileio, integrity, configs
IMPORT = re.compile(r"^\s*(?:from|import) hotrec\.(\w+)", re.M)


def floor(name: str) -> int:
    return FLOORS.get(name, BOTTOM)


def upward_imports(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        package = rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")
        for target in IMPORT.findall(path.read_text()):
            if floor(target) > floor(package):
                found.append(f"{'/'.join(rel)} imports hotrec.{target}")
    return found


def test_no_package_imports_a_higher_floor():
    assert upward_imports(ROOT) == []


def test_serving_does_not_import_training():
    text = "".join(p.read_text() for p in (ROOT / "serving").rglob("*.py"))
    assert "hotrec.training" not in text


def test_negative_control_an_upward_import_is_found(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.py").write_text("from hotrec.training.runlog import METRICS\n")
    (tmp_path / "fileio.py").write_text("import hotrec.serving\n")
    assert len(upward_imports(tmp_path)) == 2
