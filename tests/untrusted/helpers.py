"""Shared helpers for the untrusted-file tests: run the CLI, expect one line and exit 2."""

from __future__ import annotations

from pathlib import Path

from hotrec.cli.main import main


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """main(argv) exits 2 with one line on stderr holding every needle, no traceback."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def flip_bytes(path: Path, offset: int, count: int = 1) -> None:
    """Invert `count` bytes of a file from `offset` (negative: from the end)."""
    data = bytearray(path.read_bytes())
    start = offset if offset >= 0 else len(data) + offset
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def tensor_data_offset(path: Path, needle: bytes) -> int:
    """Offset of a tensor record's bytes inside a torch zip (the first file named `needle`)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(needle.decode()))
    with open(path, "rb") as f:  # local file header: 30 bytes + name + extra
        f.seek(info.header_offset + 26)
        name_len = int.from_bytes(f.read(2), "little")
        extra_len = int.from_bytes(f.read(2), "little")
    return info.header_offset + 30 + name_len + extra_len
