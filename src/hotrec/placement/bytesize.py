"""Byte sizes as people write them: "256MiB", "1GiB", "512KB", "1000000"."""

from __future__ import annotations

import re

from hotrec.errors import HotrecError

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
    "K": 2**10,  # bare letters are binary, as in "256M" for most memory flags
    "M": 2**20,
    "G": 2**30,
    "T": 2**40,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")


def parse_bytes(text: str) -> int:
    """Bytes in `text`: a number with an optional unit (B, KB/MB/GB/TB = powers of 1000,
    KiB/MiB/GiB/TiB and bare K/M/G/T = powers of 1024; case-insensitive); fractions are
    floored to whole bytes ("1.5KiB" = 1536). Raises HotrecError on anything else."""
    match = _PATTERN.match(str(text))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise HotrecError(
            f"cannot read {text!r} as a byte size (examples: 256MiB, 1GiB, 512KB, 1000000)"
        )
    number = match.group(1)
    if "." in number:
        return int(float(number) * _UNITS[unit])
    return int(number) * _UNITS[unit]


def format_bytes(n: int) -> str:
    """Short binary form: 268435456 -> "256MiB", 1536 -> "1.5KiB", 100 -> "100B"."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.3g}{unit}"
    return f"{n}B"
