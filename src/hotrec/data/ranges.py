"""The id-range check of a split, done once per file version: per table the smallest and
largest id (a bag table: over every id of its bags) against the table's rows, the label
range, and that bag offsets never decrease. The result is cached in CHECKED beside meta.json,
keyed by each file's size and mtime, so later opens cost nothing until a file changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hotrec.data.bag_layout import bag_files
from hotrec.errors import HotrecError
from hotrec.fileio import write_json_atomic
from hotrec.types import Schema

if TYPE_CHECKING:
    from hotrec.data.format import SplitArrays

CHECKED = ".hotrec-checked.json"  # cached id-range checks (not part of the dataset)
_SCAN_ROWS = 1 << 20  # rows per chunk of the range scan


def _stamp(arrays_dir: Path) -> list[list[int]]:
    """Size and mtime of a split's files: a cached check holds while these are unchanged."""
    out = []
    bags = sorted(f.name for f in arrays_dir.glob("bag-*.npy"))
    for f in ("sparse.npy", "label.npy", *bags):
        st = (arrays_dir / f).stat()
        out.append([st.st_size, st.st_mtime_ns])
    return out


def check_ranges(root: Path, schema: Schema, split: str, arrays: SplitArrays) -> None:
    """Per table min/max id and the label range, computed once per file version and cached."""
    cache_file = root / CHECKED
    stamp = _stamp(root / split)
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
        entry = cache.get(split) if isinstance(cache, dict) else None
    except (OSError, ValueError):
        cache, entry = {}, None
    if not (isinstance(entry, dict) and entry.get("stamp") == stamp):
        entry = {"stamp": stamp, **_scan(arrays)}
        cache = cache if isinstance(cache, dict) else {}
        cache[split] = entry
        try:  # a read-only dataset is checked again next time
            write_json_atomic(cache_file, cache, indent=None)
        except OSError:
            pass
    src = root / split
    try:
        lows, highs = [int(x) for x in entry["min"]], [int(x) for x in entry["max"]]
        label_low, label_high = float(entry["label"][0]), float(entry["label"][1])
    except (KeyError, TypeError, ValueError, IndexError):
        cache_file.unlink(missing_ok=True)
        raise HotrecError(
            f"{cache_file} is damaged and was removed; open the dataset again"
        ) from None
    for t, ordered in zip(schema.bag_tables, entry.get("offsets_ordered", ()), strict=False):
        if not ordered:
            raise HotrecError(f"{src}/{bag_files(t)[1]}: offsets decrease; the dataset is damaged")
    for t, table in enumerate(schema.tables):
        if len(arrays) and (lows[t] < 0 or highs[t] >= table.rows):
            value = lows[t] if lows[t] < 0 else highs[t]
            where = bag_files(t)[0] if table.is_bag else "sparse.npy"
            raise HotrecError(
                f"{src}/{where}: table {table.name} holds id {value}, outside its "
                f"{table.rows} rows in meta.json; the dataset is damaged or meta.json does not "
                "match it"
            )
    if len(arrays) and not (0.0 <= label_low and label_high <= 1.0):
        value = label_low if not 0.0 <= label_low else label_high
        raise HotrecError(f"{src}/label.npy holds {value}, not a label in [0, 1]")


def _scan(arrays: SplitArrays) -> dict:
    """One chunked pass: per-table (schema order) min and max id, the smallest and largest
    label, and whether each bag table's offsets never decrease."""
    columns = arrays.sparse.shape[1]
    lows = np.full(columns, np.iinfo(np.int64).max, dtype=np.int64)
    highs = np.full(columns, np.iinfo(np.int64).min, dtype=np.int64)
    label = [np.inf, -np.inf]
    for a in range(0, len(arrays), _SCAN_ROWS):
        ids = np.asarray(arrays.sparse[a : a + _SCAN_ROWS])
        if ids.size:
            lows = np.minimum(lows, ids.min(axis=0))
            highs = np.maximum(highs, ids.max(axis=0))
        lab = np.asarray(arrays.label[a : a + _SCAN_ROWS])
        if lab.size:
            if not np.isfinite(lab).all():
                label = [float("nan"), float("nan")]
                break
            label = [min(label[0], float(lab.min())), max(label[1], float(lab.max()))]
    if arrays.layout is None:
        return {"min": lows.tolist(), "max": highs.tolist(), "label": label}
    n = arrays.layout.num_tables
    low, high = [0] * n, [0] * n  # a bag table without ids holds nothing out of range
    for c, t in enumerate(arrays.layout.one_hot):
        low[t], high[t] = int(lows[c]), int(highs[c])
    ordered = []
    for t, (values, offsets) in zip(arrays.layout.bag, arrays.bags, strict=True):
        lo, hi, ok = np.iinfo(np.int64).max, np.iinfo(np.int64).min, True
        for a in range(0, values.shape[0], _SCAN_ROWS):
            chunk = np.asarray(values[a : a + _SCAN_ROWS])
            lo, hi = min(lo, int(chunk.min())), max(hi, int(chunk.max()))
        for a in range(0, offsets.shape[0], _SCAN_ROWS):
            ok = ok and bool(
                (np.diff(np.asarray(offsets[max(a - 1, 0) : a + _SCAN_ROWS])) >= 0).all()
            )
        if values.shape[0]:
            low[t], high[t] = lo, hi
        ordered.append(ok)
    return {"min": low, "max": high, "label": label, "offsets_ordered": ordered}
