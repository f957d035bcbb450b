"""Multi-hot datasets from one-hot ones, as MLPerf's multi-hot Criteo is made from Criteo 1TB:
each chosen table's id x becomes a bag that starts with x, followed by ids derived from it,
(x + s_k) mod rows, with shifts s_1, s_2, ... drawn once per table from the seed. A bag is
then a function of the sample's id, so the labels keep their meaning, and a shift permutes
the table's rows, so every position of a bag keeps the table's popularity skew.

Bag sizes are per table (a size of 1 keeps the table one-hot); lengths are `fixed` (every
bag holds its table's size, as MLPerf's materialized dataset) or `uniform` (0..size ids,
empty bags included). Deterministic: the same source, options and seed give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hotrec.data.bag_layout import require_one_hot
from hotrec.data.format import SPLITS, Dataset, DatasetWriter
from hotrec.errors import HotrecError
from hotrec.progress import make_progress
from hotrec.types import POOLINGS, Schema, TableSpec

# MLPerf DLRM-DCNv2's multi-hot Criteo: ids per bag for each of Criteo's 26 tables.
MLPERF_BAG_SIZES = (
    3,
    2,
    1,
    2,
    6,
    1,
    1,
    1,
    1,
    7,
    3,
    8,
    1,
    6,
    9,
    5,
    1,
    1,
    1,
    12,
    100,
    27,
    10,
    3,
    1,
    1,
)
BAG_LENGTHS = ("fixed", "uniform")
CHUNK_ROWS = 1 << 16
_FORMAT_KEYS = ("format_version", "schema", "splits", "sparse_dtype")  # DatasetWriter's own


def parse_bag_sizes(spec: str, num_tables: int) -> list[int]:
    """'mlperf' (26 tables), one size for every table ('4'), or one per table ('3,1,2')."""
    text = spec.strip().lower()
    if text == "mlperf":
        if num_tables != len(MLPERF_BAG_SIZES):
            raise HotrecError(
                f"--bag-sizes mlperf is for Criteo's 26 tables; this schema has {num_tables}"
            )
        return list(MLPERF_BAG_SIZES)
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        raise HotrecError(
            f"--bag-sizes {spec!r}: give 'mlperf', one size, or one size per table"
        ) from None
    if len(sizes) == 1:
        sizes *= num_tables
    if len(sizes) != num_tables or min(sizes) < 1:
        raise HotrecError(f"--bag-sizes {spec!r}: need 1 or {num_tables} sizes, each at least 1")
    return sizes


def _lengths(size: int, kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "fixed":
        return np.full(n, size, dtype=np.int64)
    return rng.integers(0, size + 1, n, dtype=np.int64)


def make_multi_hot(
    src: Dataset,
    out: Path,
    sizes: list[int],
    lengths: str = "fixed",
    pooling: str = "sum",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write `out`: `src` (one-hot) with the tables of size > 1 as bags; returns its path."""
    require_one_hot(src.schema, "making a multi-hot dataset")
    if lengths not in BAG_LENGTHS:
        raise HotrecError(f"bag lengths {lengths!r}: use {' or '.join(BAG_LENGTHS)}")
    if pooling not in POOLINGS:
        raise HotrecError(f"pooling {pooling!r}: use {' or '.join(POOLINGS)}")
    if len(sizes) != src.schema.num_tables:
        raise HotrecError(f"{len(sizes)} bag sizes for {src.schema.num_tables} tables")
    schema = Schema(
        src.schema.dense_names,
        tuple(
            TableSpec(t.name, t.rows, pooling if size > 1 else "")
            for t, size in zip(src.schema.tables, sizes, strict=True)
        ),
    )
    bags, one_hot = schema.bag_tables, schema.one_hot_tables
    splits = [s for s in SPLITS if s in src.meta["splits"]]

    shifts = {}  # per bag table: [size] shifts of a bag's ids from its first, shift 0 first
    for t in bags:
        rows = schema.tables[t].rows
        draw = np.random.default_rng([seed, t, 1]).integers(1, max(rows, 2), sizes[t] - 1)
        shifts[t] = np.concatenate([[0], draw if rows > 1 else np.zeros(sizes[t] - 1)])
        shifts[t] = shifts[t].astype(np.int64)

    def chunk_lengths(split: int, chunk: int, t: int, n: int) -> np.ndarray:
        return _lengths(sizes[t], lengths, np.random.default_rng([seed, split, chunk, t, 0]), n)

    with DatasetWriter(out, overwrite) as writer, make_progress() as bar:
        total_rows = sum(src.meta["splits"][s] for s in splits)
        task = bar.add_task("multi-hot", total=total_rows, rate="", info="")
        for si, split in enumerate(splits):
            a = src.split(split)
            n = len(a)
            starts = range(0, n, CHUNK_ROWS)
            totals = {
                t: sum(
                    int(chunk_lengths(si, c, t, min(CHUNK_ROWS, n - s)).sum())
                    for c, s in enumerate(starts)
                )
                for t in bags
            }
            dst = writer.create_split(split, n, schema, totals)
            at = dict.fromkeys(bags, 0)  # ids written so far per bag table
            for c, s in enumerate(starts):
                e = min(n, s + CHUNK_ROWS)
                ids = np.asarray(a.sparse[s:e])  # [m, T]
                dst.dense[s:e], dst.label[s:e] = a.dense[s:e], a.label[s:e]
                dst.sparse[s:e] = ids[:, one_hot]
                for (values, offsets), t in zip(dst.bags, bags, strict=True):
                    count = chunk_lengths(si, c, t, e - s)
                    local = np.concatenate([[0], np.cumsum(count)])
                    owner = np.repeat(np.arange(e - s), count)  # the row of each id
                    place = np.arange(int(local[-1])) - local[:-1][owner]  # its place in the bag
                    rows = schema.tables[t].rows
                    bag = (ids[owner, t].astype(np.int64) + shifts[t][place]) % rows
                    values[at[t] : at[t] + len(bag)] = bag
                    offsets[s : e + 1] = at[t] + local
                    at[t] += len(bag)
                bar.update(task, advance=e - s, info=split)
        meta = {k: v for k, v in src.meta.items() if k not in _FORMAT_KEYS}
        meta["multi_hot"] = {
            "from": str(src.path),
            "bag_sizes": list(sizes),
            "lengths": lengths,
            "pooling": pooling,
            "seed": seed,
        }
        return writer.commit(schema, meta)
