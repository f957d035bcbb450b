"""The hybrid's per-feature map: which features use their table, their DHE, or both.

A map is given as one string (`--embedding-map`):
  ""                  every feature uses both (the full hybrid of MP-Rec)
  "table"|"dhe"|"both" every feature uses that kind
  "dhe_min_rows=N"    features with at least N rows use dhe, the others their table
  a .toml/.json file  {feature_name: kind, ..., "default": kind}; unlisted features take
                      "default" (both when absent)
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path

from hotrec.errors import HotrecError

KINDS = ("table", "dhe", "both")
RULE = "dhe_min_rows="


def resolve_feature_map(spec: str, names: Sequence[str], table_rows: Sequence[int]) -> list[str]:
    """One kind ("table" | "dhe" | "both") per feature, from a map string."""
    spec = spec.strip()
    if not spec:
        return ["both"] * len(names)
    if spec in KINDS:
        return [spec] * len(names)
    if spec.startswith(RULE):
        threshold = _parse_threshold(spec)
        return ["dhe" if n >= threshold else "table" for n in table_rows]
    if Path(spec).suffix.lower() in (".toml", ".json"):
        return _from_mapping(_read_map_file(Path(spec)), names, spec)
    raise HotrecError(
        f"unknown embedding map {spec!r}: use table, dhe, both, {RULE}N or a .toml/.json file"
    )


def _parse_threshold(spec: str) -> int:
    text = spec[len(RULE) :]
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise HotrecError(f"embedding map rule {spec!r}: N must be a positive integer")
    return value


def _read_map_file(path: Path) -> dict:
    if not path.is_file():
        raise HotrecError(f"embedding map file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise HotrecError(f"embedding map file {path} is not valid: {e}") from None
    if not isinstance(data, dict):
        raise HotrecError(f"embedding map file {path} must hold a table {{feature: kind}}")
    return data


def _from_mapping(data: dict, names: Sequence[str], source: str) -> list[str]:
    mapping = {str(k): v for k, v in data.items()}
    default = mapping.pop("default", "both")
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise HotrecError(
            f"embedding map {source}: unknown feature(s) {', '.join(unknown)} "
            f"(features: {', '.join(names)})"
        )
    bad = {k: v for k, v in {**mapping, "default": default}.items() if v not in KINDS}
    if bad:
        key, value = next(iter(bad.items()))
        raise HotrecError(
            f"embedding map {source}: {key} = {value!r} is not one of {', '.join(KINDS)}"
        )
    return [mapping.get(name, default) for name in names]
