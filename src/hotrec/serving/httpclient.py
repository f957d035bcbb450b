"""A small HTTP/1.1 client over asyncio streams, with keep-alive connections.

The load generator shares the machine with the server it measures, so its own cost per
request matters: this client spends a fraction of what a general-purpose one does. It sends
a POST with a body and reads a response framed by Content-Length or chunked encoding;
plain http only.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from hotrec.errors import HotrecError


def split_url(url: str) -> tuple[str, int, str]:
    """'http://host:port/path' -> (host, port, path)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise HotrecError(f"expected an http://HOST:PORT address, got {url!r}")
    return parts.hostname, parts.port or 80, parts.path or "/"


class ConnectionPool:
    """POSTs to one host over reused connections (one request per connection at a time)."""

    def __init__(self, url: str, max_idle: int = 512) -> None:
        self.host, self.port, _ = split_url(url)
        self.max_idle = max_idle
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        """(status, response body); raises OSError / TimeoutError / IncompleteReadError."""
        reader, writer = self.idle.pop() if self.idle else await self._connect(timeout_s)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            writer.write(head.encode("latin-1") + body)
            status, keep, data = await asyncio.wait_for(read_response(reader), timeout_s)
        except BaseException:
            writer.close()
            raise
        if keep and len(self.idle) < self.max_idle:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status, data

    async def _connect(self, timeout_s: float):
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout_s)

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, connection reusable, body) of one HTTP/1.1 response."""
    line = await reader.readline()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ConnectionError(f"not an HTTP response: {line[:40]!r}")
    status = int(parts[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    keep = headers.get(b"connection") != b"close"
    if b"content-length" in headers:
        return status, keep, await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding") == b"chunked":
        return status, keep, await _read_chunked(reader)
    return status, False, await reader.read()  # framed by closing the connection


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after each chunk
