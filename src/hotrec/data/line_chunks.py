"""Reading a plain or gzip text file with a header line as chunks of whole lines.

Memory stays bounded by the chunk size whatever the file size: `read_passes` checks the
header, then yields `LineChunk`s of at most `chunk_rows` lines behind a progress bar over the
file's bytes on disk. Lines are decoded as UTF-8 (invalid bytes replaced) and keep a trailing
CR if they had one, so the caller can count CRLF repairs.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import BinaryIO, NamedTuple

from hotrec.errors import HotrecError
from hotrec.progress import format_rate, make_progress


class LineChunk(NamedTuple):
    """Up to chunk_rows lines of the file and where they are."""

    data: bytes  # the raw (decompressed) bytes of the lines
    lines: list[str]  # the lines without their LF
    first_line: int  # 1-based line number of lines[0]
    unterminated: bool  # the last line has no LF (it is the file's last line)


@contextmanager
def open_input(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(decompressed stream, raw file) for a plain or gzip file (detected by magic bytes);
    read errors (a truncated or corrupt gzip) become a one-line HotrecError."""
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        try:
            yield (gzip.GzipFile(fileobj=raw) if is_gzip else raw), raw
        except (OSError, EOFError) as e:
            raise HotrecError(f"{path}: cannot read ({e})") from None


MAX_LINE_BYTES = 1 << 20  # a longer line is not a data row: refuse rather than read it whole


def line_chunks(stream: BinaryIO, chunk_rows: int, first_line: int = 2) -> Iterator[LineChunk]:
    """Chunks of at most chunk_rows lines from the stream's position (line first_line on)."""
    line_no = first_line
    lines_in = iter(lambda: stream.readline(MAX_LINE_BYTES + 1), b"")  # bounded line reads
    while True:
        block = list(islice(lines_in, chunk_rows))
        if not block:
            return
        for i, raw_line in enumerate(block):
            if len(raw_line) > MAX_LINE_BYTES:
                raise HotrecError(
                    f"line {line_no + i} is longer than {MAX_LINE_BYTES:,} bytes: not a CSV of "
                    "rows (wrong file, or no line breaks)"
                )
        data = b"".join(block)
        del block
        lines = data.decode("utf-8", errors="replace").split("\n")
        unterminated = lines[-1] != ""
        if not unterminated:
            lines.pop()
        yield LineChunk(data, lines, line_no, unterminated)
        line_no += len(lines)


def read_passes(
    path: Path,
    chunk_rows: int,
    label: str,
    check_header: Callable[[BinaryIO, Path], bytes],
    on_bytes: Callable[[bytes], object] | None = None,
) -> Iterator[LineChunk]:
    """One pass over the file: check_header reads and checks line 1 (returning its raw
    bytes), then the chunks after it, behind a progress bar named `label`. on_bytes (e.g. a
    checksum's update) sees every decompressed byte, header included."""
    total = path.stat().st_size
    with open_input(path) as (stream, raw), make_progress() as bar:
        header = check_header(stream, path)
        if on_bytes is not None:
            on_bytes(header)
        task = bar.add_task(label, total=total, rate="", info="")
        start, rows = time.perf_counter(), 0
        for chunk in line_chunks(stream, chunk_rows):
            if on_bytes is not None:
                on_bytes(chunk.data)
            yield chunk
            rows += len(chunk.lines)
            rate = format_rate(rows, time.perf_counter() - start, "rows")
            bar.update(task, completed=raw.tell(), rate=rate, info=f"{rows:,} rows")
        bar.update(task, completed=total)
