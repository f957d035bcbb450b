"""Chunked, vectorized parsing of tab-separated files with a fixed number of fields per line.

Reading: `read_blocks` streams a plain or gzip file as blocks of complete lines (memory
bounded by the chunk size, whatever the file size), hashing the bytes as read.

Splitting: `split_fields` finds every field of every line of a block with numpy, checks the
field count per line (blank lines, wrong counts and a truncated last line are reported, not
parsed), and repairs CRLF line endings.

Values: `parse_hex` and `parse_decimal` turn fields into int64 with SWAR arithmetic: each
field's last 8 bytes are loaded as one little-endian uint64, the bytes before the field are
replaced by '0', and the digits are validated and combined with a few whole-array operations.

Rows: `parse_rows` does all of that for lines of "label, D decimal fields, H hex fields" (the
Criteo layout), a cache-sized range of the block at a time. Line indices are relative to the
block; the caller adds the block's first line number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hotrec.data.line_chunks import open_input
from hotrec.errors import HotrecError

PAD = 8  # bytes of '0' before each block, so every field's 8-byte window stays inside it
BLOCK_BYTES = 8 << 20  # unit of work of one thread
RANGE_BYTES = 1 << 20  # parsed at once: numpy temporaries stay in the CPU cache, few calls
MAX_LINE_BYTES = 1 << 20  # a longer line means the input is not this format at all

_U = np.uint64
_HI = _U(0x8080808080808080)
_ZEROS = _U(0x3030303030303030)  # eight ASCII '0'
# KEEP[L]: the L bytes that end the 8-byte window (L = 1..8); FILL[L]: '0' for the others.
_KEEP = np.array([0] + [(~0 << (8 * (8 - n))) & (2**64 - 1) for n in range(1, 9)], dtype=_U)
_FILL = _ZEROS & ~_KEEP


@dataclass
class Block:
    """data[:PAD] is padding, data[PAD:end] complete lines ending in a newline (one is added
    when the file's last line lacks it); bytes after `end` are not part of the block."""

    data: bytes | bytearray
    end: int
    unterminated: bool = False  # the file's last line had no trailing newline


@dataclass
class Fields:
    """Field positions of the well-formed lines of a range of a block."""

    ends: np.ndarray  # [n, F] int64: offset in the block of the tab / newline ending each field
    lengths: np.ndarray  # [n, F] int64: field lengths in bytes
    lines: np.ndarray  # [n] int64: line index in the range of each well-formed line
    num_lines: int  # lines in the range, well-formed or not
    issues: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (count, first line)


def read_blocks(path: Path, block_bytes: int, hasher: hashlib._Hash) -> Iterator[tuple[Block, int]]:
    """Yield (block, raw bytes consumed so far); each block holds the complete lines of the
    next block_bytes bytes read (plus the partial line left over from the previous block)."""
    tail = b""
    with open_input(path) as (stream, raw):
        while True:
            buf = bytearray(PAD + len(tail) + max(block_bytes, 1))
            buf[:PAD], buf[PAD : PAD + len(tail)] = b"0" * PAD, tail
            filled = _fill(stream, memoryview(buf), PAD + len(tail))
            hasher.update(memoryview(buf)[PAD + len(tail) : filled])
            if filled == PAD + len(tail):  # end of file
                break
            cut = buf.rfind(b"\n", PAD, filled) + 1
            tail = bytes(buf[max(cut, PAD) : filled])
            if cut:
                yield Block(buf, cut), raw.tell()
            elif len(tail) > MAX_LINE_BYTES:
                raise HotrecError(f"{path}: no line break within {len(tail):,} bytes")
        if tail:
            yield Block(b"0" * PAD + tail + b"\n", PAD + len(tail) + 1, True), raw.tell()


def _fill(stream, view: memoryview, start: int) -> int:
    """readinto view[start:] until it is full or the stream ends; returns the filled end."""
    while start < len(view) and (n := stream.readinto(view[start:])):
        start += n
    return start


def line_ranges(buf: bytes, start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    """Cut buf[start:stop] (complete lines) into ranges of about `size` bytes at newlines."""
    while start < stop:
        end = buf.rfind(b"\n", start, min(start + size, stop)) + 1
        if end <= start:  # one line longer than `size`
            end = buf.find(b"\n", start + size - 1) + 1
        yield start, end
        start = end


def repair_crlf(buf: bytes | bytearray, end: int) -> tuple[bytes, np.ndarray]:
    """Drop the '\\r' of each CRLF in buf[:end]; returns (bytes, line indices repaired)."""
    arr = np.frombuffer(buf, dtype=np.uint8, count=end)
    cr = np.flatnonzero(arr[:-1] == 13)
    cr = cr[arr[cr + 1] == 10]
    if len(cr) == 0:
        return buf, cr
    newlines = np.flatnonzero(arr == 10)
    lines = np.searchsorted(newlines, cr)
    return np.delete(arr, cr).tobytes(), lines


def split_fields(
    buf: bytes, lo: int, hi: int, num_fields: int, unterminated: bool = False
) -> Fields:
    """Fields of the lines in buf[lo:hi] with exactly num_fields fields; the others as issues.

    lo must be >= PAD and start a line; buf[hi - 1] must be a newline."""
    arr = np.frombuffer(buf, dtype=np.uint8, count=hi - lo, offset=lo)
    seps = np.flatnonzero(arr <= 10)  # tabs and newlines, plus any control byte
    n = len(seps) // num_fields
    if len(seps) == n * num_fields and n:
        kinds = arr[seps].reshape(n, num_fields)  # [n, F]
        if (kinds[:, -1] == 10).all() and (kinds[:, :-1] == 9).all():
            lengths = np.diff(seps, prepend=-1) - 1  # the previous separator ends each field
            seps += lo
            return Fields(
                seps.reshape(n, num_fields), lengths.reshape(n, num_fields), np.arange(n), n
            )
    return _split_ragged(arr, lo, num_fields, unterminated)


def _split_ragged(arr: np.ndarray, lo: int, num_fields: int, unterminated: bool) -> Fields:
    """Slow path for ranges with malformed lines: count the fields of each line."""
    seps = np.flatnonzero((arr == 9) | (arr == 10))
    lengths = np.diff(seps, prepend=-1) - 1
    is_nl = arr[seps] == 10
    num_lines = int(is_nl.sum())
    line_of = np.cumsum(is_nl) - is_nl  # line index of each separator
    counts = np.bincount(line_of, minlength=num_lines)
    good = counts == num_fields
    blank = (counts == 1) & (lengths[is_nl] == 0)
    wrong = ~good & ~blank
    issues = {}
    if unterminated and not good[-1]:
        issues["truncated_last_line"] = (1, num_lines - 1)
        wrong[-1] = blank[-1] = False
    for kind, mask in (("blank_line", blank), ("field_count", wrong)):
        if mask.any():
            issues[kind] = (int(mask.sum()), int(np.argmax(mask)))
    keep = good[line_of]
    ends = (seps[keep] + lo).reshape(-1, num_fields)  # [n_good, F]
    lengths = lengths[keep].reshape(-1, num_fields)  # [n_good, F]
    return Fields(ends, lengths, np.flatnonzero(good), num_lines, issues)


def _windows(
    buf: bytes, ends: np.ndarray, lengths: np.ndarray, mostly_full: bool = True
) -> np.ndarray:
    """The 8 bytes ending each field as uint64, bytes before the field set to '0'."""
    words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    w = words[ends - 8]
    if mostly_full:  # mostly 8-byte fields (hex): fix up the others only
        short = np.flatnonzero(lengths != 8)
        flat, n = w.reshape(-1), np.minimum(lengths.reshape(-1)[short], 8)
        flat[short] = (flat[short] & _KEEP[n]) | _FILL[n]
        return w
    n = np.minimum(lengths, 8)
    return (w & _KEEP[n]) | _FILL[n]


def parse_hex(buf: bytes, ends: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowercase hex fields of up to 8 digits -> (int64 values, valid); empty fields valid, -1."""
    w = _windows(buf, ends, lengths)
    nib = (w & _U(0x0F0F0F0F0F0F0F0F)) + ((w >> _U(6)) & _U(0x0101010101010101)) * _U(9)
    # Valid when each byte is exactly the character of its nibble ('0'-'9', 'a'-'f') and the
    # nibble is < 16 (bytes 'g'-'o' map to 16-24 and would otherwise pass).
    letter = ((nib + _U(0x7676767676767676)) >> _U(7)) & _U(0x0101010101010101)
    valid = (nib + letter * _U(0x27) + _ZEROS) == w
    valid &= ((nib + _U(0x7070707070707070)) & _HI) == 0
    valid &= lengths <= 8
    x = nib.byteswap()  # first character -> most significant byte
    x = (x | (x >> _U(4))) & _U(0x00FF00FF00FF00FF)
    x = (x | (x >> _U(8))) & _U(0x0000FFFF0000FFFF)
    x = (x | (x >> _U(16))) & _U(0xFFFFFFFF)
    values = x.view(np.int64)
    values[lengths == 0] = -1
    return values, valid


def parse_decimal(
    buf: bytes, ends: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Optionally negative decimal fields -> (int64 values, valid); empty fields valid, 0."""
    w = _windows(buf, ends, lengths, mostly_full=False)
    values, valid = _decimal(w)
    odd = np.nonzero(~valid | (lengths > 8))  # negative, too long for one word, or invalid
    if len(odd[0]):
        values[odd], valid[odd] = _parse_odd(buf, ends[odd], lengths[odd], w[odd])
    return values, valid


def _decimal(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8 ASCII digits per uint64 -> (values, valid)."""
    valid = ((w & _U(0xF0F0F0F0F0F0F0F0)) == _ZEROS) & (
        ((w + _U(0x0606060606060606)) & _U(0xF0F0F0F0F0F0F0F0)) == _ZEROS
    )  # every byte in '0'..'9'
    d = w - _ZEROS
    d = (d * _U(10) + (d >> _U(8))) & _U(0x00FF00FF00FF00FF)
    d = (d * _U(100) + (d >> _U(16))) & _U(0x0000FFFF0000FFFF)
    d = (d * _U(10000) + (d >> _U(32))) & _U(0xFFFFFFFF)
    return d.view(np.int64), valid


def _parse_odd(
    buf: bytes, ends: np.ndarray, lengths: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The few fields _decimal rejects: '-' then up to 7 digits, or longer fields."""
    first = (8 - np.minimum(lengths, 8)).astype(_U) * _U(8)  # bit offset of the first byte
    neg = (((w >> first) & _U(0xFF)) == _U(0x2D)) & (lengths > 1) & (lengths <= 8)
    values, valid = _decimal(np.where(neg, w + (_U(3) << first), w))  # '-' -> '0'
    values = np.where(neg, -values, values)
    valid &= lengths <= 8
    long_ = np.flatnonzero(lengths > 8)
    if len(long_):
        values[long_], valid[long_] = _parse_long(buf, ends[long_], lengths[long_])
    return values, valid


def _parse_long(buf: bytes, ends: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fields longer than 8 bytes, one by one (rare): values clipped to int64, validity."""
    values = np.zeros(len(ends), dtype=np.int64)
    valid = np.zeros(len(ends), dtype=bool)
    for i, (end, n) in enumerate(zip(ends.tolist(), lengths.tolist(), strict=True)):
        text = buf[end - n : end]
        digits = text[1:] if text[:1] == b"-" else text
        if digits.isdigit() and digits.isascii():
            values[i] = max(min(int(text), 2**63 - 1), -(2**63))
            valid[i] = True
    return values, valid


@dataclass
class Rows:
    """The well-formed rows of a block, plus what was wrong with the other lines."""

    label: np.ndarray  # [n] uint8, 0 or 1
    ints: np.ndarray  # [n, D] int64, 0 where empty
    keys: np.ndarray  # [H, n] int64 (field-major, C order), -1 where empty
    num_lines: int  # lines in the block, well-formed or not
    issues: dict[str, tuple[int, int, str]]  # kind -> (count, first line, detail)


def parse_rows(block: Block, names: tuple[str, ...], num_ints: int) -> Rows:
    """Parse lines of label, num_ints decimal fields, then hex fields (len(names) in all)."""
    buf, end, issues = block.data, block.end, {}
    if buf.find(b"\r", PAD, end) >= 0:
        buf, repaired = repair_crlf(buf, end)
        if len(repaired):
            end = len(buf)
            issues["crlf"] = (len(repaired), int(repaired[0]), "")
    parts, line = [], 0
    for lo, hi in line_ranges(buf, PAD, end, RANGE_BYTES):
        part = _parse_range(buf, lo, hi, block.unterminated and hi == end, names, num_ints)
        for kind, (count, first, detail) in part.issues.items():
            seen = issues.get(kind)
            issues[kind] = (seen[0] + count, *seen[1:]) if seen else (count, line + first, detail)
        line += part.num_lines
        parts.append(part)
    keys = np.empty((parts[0].keys.shape[1], sum(len(p.label) for p in parts)), np.int64)
    at = 0
    for p in parts:  # [n, H] per range -> one field-major [H, N]
        keys[:, at : at + len(p.label)] = p.keys.T
        at += len(p.label)
    label = np.concatenate([p.label for p in parts])
    return Rows(label, np.concatenate([p.ints for p in parts]), keys, line, issues)


def _parse_range(
    buf: bytes, lo: int, hi: int, unterminated: bool, names: tuple[str, ...], num_ints: int
) -> Rows:
    """Rows of the complete lines in buf[lo:hi]; a row's first bad field decides its kind."""
    f = split_fields(buf, lo, hi, len(names), unterminated)
    issues = {k: (n, line, "") for k, (n, line) in f.issues.items()}
    label = np.frombuffer(buf, dtype=np.uint8)[f.ends[:, 0] - 1] - np.uint8(48)
    label_ok = (f.lengths[:, :1] == 1) & (label[:, None] <= 1)
    ints, ints_ok = parse_decimal(buf, f.ends[:, 1 : 1 + num_ints], f.lengths[:, 1 : 1 + num_ints])
    keys, keys_ok = parse_hex(buf, f.ends[:, 1 + num_ints :], f.lengths[:, 1 + num_ints :])
    good = np.ones(len(label), dtype=bool)
    checks = (("bad_value", label_ok, 0), ("bad_integer", ints_ok, 1))
    for kind, ok, first_col in (*checks, ("bad_hex", keys_ok, 1 + num_ints)):
        bad = good & ~ok.all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            col = first_col + int(np.argmax(~ok[row]))
            end, n = int(f.ends[row, col]), int(f.lengths[row, col])
            detail = f"{names[col]} = {buf[end - n : end].decode('latin-1')!r}"
            issues[kind] = (int(bad.sum()), int(f.lines[row]), detail)
            good &= ~bad
    if not good.all():
        label, ints, keys = label[good], ints[good], keys[good]
    return Rows(label, ints, keys, f.num_lines, issues)  # keys still [n, H] here
