"""avazu_key: raw Avazu categorical strings -> reproducible non-negative int64 keys.

Layout (63 bits, never negative):
  lowercase hex string of 1..14 chars: bit 62 set | length << 56 | hex value (56 bits),
    so "1005" and "01005" differ and no hash is needed for the usual Avazu values;
  anything else: the first 8 bytes (little endian) of blake2b(utf-8 bytes), bits 62-63 cleared;
  empty string or null: MISSING (-1).
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from hotrec.data.categorical import MISSING

KEY_DESCRIPTION = (
    "avazu_key: lowercase hex <= 14 chars -> 1<<62 | len<<56 | value, "
    "else blake2b-64 little endian & (2**62 - 1); empty -> -1"
)

_HEX_TAG = 1 << 62
_HEX_MAX_CHARS = 14
_LENGTH_SHIFT = 1 << 56
_HASH_MASK = (1 << 62) - 1


def _text_hash(value: str) -> int:
    """The hash branch of avazu_key: blake2b, 8 bytes little endian, bits 62-63 cleared."""
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _HASH_MASK


def _key_expr(col: str) -> pl.Expr:
    """Vectorized avazu_key for one string column; null where the hash branch is needed."""
    s = pl.col(col)
    is_hex = s.str.contains(rf"^[0-9a-f]{{1,{_HEX_MAX_CHARS}}}$")
    hex_key = (
        s.str.to_integer(base=16, strict=False)
        + s.str.len_bytes().cast(pl.Int64) * _LENGTH_SHIFT
        + _HEX_TAG
    )
    return (
        pl.when(s.is_null() | (s == ""))
        .then(pl.lit(MISSING, pl.Int64))
        .when(is_hex)
        .then(hex_key)
        .otherwise(pl.lit(None, pl.Int64))
        .alias(col)
    )


def keys_of(frame: pl.DataFrame) -> np.ndarray:
    """String columns -> [n, C] int64 avazu keys (hashing only the distinct non-hex values)."""
    keyed = frame.select([_key_expr(c) for c in frame.columns])
    for c in frame.columns:
        need = keyed[c].is_null()
        if need.any():
            raw = frame[c].filter(need)
            distinct = raw.unique().to_list()
            hashed = pl.Series([_text_hash(v) for v in distinct], dtype=pl.Int64)
            filled = keyed[c].scatter(need.arg_true(), raw.replace_strict(distinct, hashed))
            keyed = keyed.with_columns(filled.alias(c))
    return keyed.to_numpy().astype(np.int64, copy=False).reshape(frame.height, frame.width)


def avazu_key(strings: np.ndarray | pl.Series) -> np.ndarray:
    """Raw Avazu categorical strings -> non-negative int64 keys (MISSING for empty/None).

    Deterministic across versions and platforms, so serving maps raw values to the same
    keys (and then through vocab/<column>.npy) as preparation did.
    """
    if isinstance(strings, pl.Series):
        series = strings.cast(pl.String).alias("v")
    else:
        series = pl.Series("v", np.asarray(strings, dtype=object).tolist(), dtype=pl.String)
    return keys_of(series.to_frame())[:, 0]
