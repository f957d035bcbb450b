"""Raw Criteo-style fields -> model inputs, exactly as `hotrec prepare` maps them.

A raw row is the Criteo line without its label: 13 integer fields (numbers or decimal
strings) then 26 categorical fields (hex strings of 32-bit values). Preparation maps them as

  dense:        empty / missing / negative -> 0, then log(1 + x)          (criteo.py)
  categorical:  hex -> key, empty -> missing; key -> id through the frequency vocabulary
                saved as vocab/<table>.npy (keys in id order, id 0 = missing / rare), or
                id = 1 + key mod (rows - 1) when the dataset was prepared with --hash-rows
                (categorical.py)

Serving never fails on a value it does not know: a key missing from the vocabulary, an
empty field and a malformed hex string (preparation would have rejected that row) all map to
id 0. Uppercase hex is accepted as the same key. A dense value that is not a number is a bad
request (ValueError with the field named), since no id 0 stands for it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hotrec.data.categorical import MISSING, Vocabulary, hash_ids
from hotrec.data.criteo import dense_transform
from hotrec.errors import HotrecError
from hotrec.types import Schema

CRITEO_SOURCES = ("criteo-kaggle", "criteo-terabyte")


def hex_key(value) -> int:
    """A categorical field -> its key: MISSING for empty/None, -2 (never in a vocabulary) for
    anything that is not a hex string of at most 8 digits."""
    if value is None:
        return MISSING
    if not isinstance(value, str):
        return -2
    text = value.strip()
    if not text:
        return MISSING
    if len(text) > 8:
        return -2
    try:
        return int(text, 16)
    except ValueError:
        return -2


def dense_value(value, name: str) -> float:
    """An integer field -> log(1 + max(x, 0)); None / '' -> 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0.0
    if isinstance(value, bool):
        raise ValueError(f"dense field {name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"dense field {name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"dense field {name} must be finite, got {value!r}")
    return x


class RawFieldMapper:
    """Maps raw rows [B, F_d + T] to (dense [B, F_d] float32, sparse [B, T] int64)."""

    def __init__(self, schema: Schema, vocabs: list[Vocabulary] | None, hash_rows: int | None):
        if vocabs is None and hash_rows is None:
            raise ValueError("a RawFieldMapper needs vocabularies or hash_rows")
        self.schema, self.vocabs, self.hash_rows = schema, vocabs, hash_rows

    @property
    def num_fields(self) -> int:
        return self.schema.num_dense + self.schema.num_tables

    def map(self, rows: list[list]) -> tuple[np.ndarray, np.ndarray]:
        """Raw rows -> (dense, sparse); ValueError (one line) for a wrong field count or a
        dense value that is not a number."""
        nd, nt = self.schema.num_dense, self.schema.num_tables
        for i, row in enumerate(rows):
            if len(row) != nd + nt:
                raise ValueError(
                    f"raw row {i} has {len(row)} fields, expected {nd + nt} "
                    f"({nd} integer fields, then {nt} categorical fields, no label)"
                )
        names = self.schema.dense_names
        dense = np.array(
            [[dense_value(v, names[j]) for j, v in enumerate(row[:nd])] for row in rows],
            dtype=np.float64,
        ).reshape(len(rows), nd)  # [B, F_d]
        dense = dense_transform(dense)  # [B, F_d] float32, as prepare
        keys = np.array([[hex_key(v) for v in row[nd:]] for row in rows], dtype=np.int64)
        keys = keys.reshape(len(rows), nt)  # [B, T]
        return dense, self.ids(keys)

    def ids(self, keys: np.ndarray) -> np.ndarray:
        """keys [B, T] (MISSING = empty, -2 = malformed) -> ids [B, T], 0 when unknown."""
        out = np.zeros(keys.shape, dtype=np.int64)
        for t in range(keys.shape[1]):
            col = keys[:, t]
            valid = col >= 0
            if self.hash_rows is not None:
                out[valid, t] = hash_ids(col[valid], self.hash_rows)
            else:
                out[valid, t] = self.vocabs[t].map(col[valid])
        return out


def raw_mapper_for(
    schema: Schema, vocab_dir: Path | None, dataset_meta: dict
) -> tuple[RawFieldMapper | None, str]:
    """The mapper for an artifact's dataset, or (None, why raw fields cannot be served)."""
    source = dataset_meta.get("source")
    if source not in CRITEO_SOURCES:
        return None, (
            f"raw fields are served for Criteo-prepared datasets only (this artifact's dataset "
            f"source is {source!r}): send prepared dense/sparse ids"
        )
    hash_rows = (dataset_meta.get("options") or {}).get("hash_rows")
    if hash_rows:
        return RawFieldMapper(schema, None, int(hash_rows)), ""
    if vocab_dir is None:
        return None, "the artifact has no vocabularies (vocab/): send prepared dense/sparse ids"
    vocabs = []
    for table in schema.tables:
        file = Path(vocab_dir) / f"{table.name}.npy"
        if not file.is_file():
            raise HotrecError(f"{file} missing: the artifact's vocabularies are incomplete")
        vocab = Vocabulary.load(file)
        if vocab.rows != table.rows:
            raise HotrecError(
                f"{file} has {vocab.rows} ids but table {table.name} has {table.rows} rows"
            )
        vocabs.append(vocab)
    return RawFieldMapper(schema, vocabs, None), ""
