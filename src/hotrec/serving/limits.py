"""Limits that keep slow or greedy clients from holding the server.

uvicorn (0.55) times out a connection only while it idles between requests, and only after
a first answer; a request head or body may otherwise take forever. hotrec adds:

- `timed_httptools(...)`: the HTTP protocol uvicorn runs (`uvicorn.Config(http=...)`):
  uvicorn's httptools protocol (llhttp, a C parser: under overload it answers several times
  more requests per CPU second than the pure-Python h11) with a deadline on each request
  head: the request line and headers must arrive within `head_timeout_s` of the head's first
  byte, else the client gets 408 and the connection is closed. A head over `max_head` bytes
  is answered 400 and closed, and a connection that never sends a byte is closed after the
  keep-alive timeout, like an idle one. (uvicorn stops reading a connection whose unread
  body passes 64 KiB.)
- `read_body(...)`: the /predict middleware reads each body in full before the request counts
  as in flight: within `timeout_s` (408), at most `max_body` bytes (413), and within a byte
  budget shared by all requests being read or served (`BodyBudget`): a body that needs more
  than one read while the budget is spent is refused (503), while one that came whole in one
  read (a normal query; its bytes are in memory already) goes on, so slow or huge uploads
  cannot shut small queries out. Each refusal closes the connection, since the rest of the
  body is never read.

A reverse proxy in front (nginx, Envoy) is the production option for TLS and many thousands
of idle connections; these limits hold without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD = 16 << 10  # bytes of request line + headers (h11's default cap)
_LATE = b"request head not received in time"
TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_LATE), _LATE)
)


def timed_httptools(
    head_timeout_s: float, on_timeout: Callable[[], None], max_head: int = MAX_HEAD
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline and a size cap on each request head;
    `on_timeout()` is called for each connection closed for a slow head (the server's
    metrics count it)."""

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.head_timer: asyncio.TimerHandle | None = None
            self.head_bytes = 0
            # uvicorn arms its idle timer only after an answer: a silent new connection too
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

        def on_message_begin(self) -> None:  # the head's first byte
            super().on_message_begin()
            self.head_bytes = 0
            self._cancel_head_timer()
            self.head_timer = self.loop.call_later(head_timeout_s, self._head_late)

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._cancel_head_timer()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _count(self, n: int) -> None:
            self.head_bytes += n
            if self.head_bytes > max_head:  # the parser stops; uvicorn answers 400, closes
                raise ValueError(f"request head over {max_head} bytes")

        def _cancel_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _head_late(self) -> None:
            self.head_timer = None
            if not self.transport.is_closing():
                on_timeout()
                self.transport.write(TIMEOUT_ANSWER)
                self.transport.close()

    return TimedHttpToolsProtocol


@dataclass
class BodyBudget:
    """Bytes of request bodies held at once (being read, parsed, queued or computed)."""

    limit: int
    held: int = 0


@dataclass
class Body:
    """A body read in full (`data`), or why not (`refusal`: timeout, too_large, busy, gone).
    `held` bytes count against the budget until `release()`."""

    budget: BodyBudget
    data: bytes = b""
    refusal: str | None = None
    held: int = 0

    def release(self) -> None:
        self.budget.held -= self.held
        self.held = 0


async def read_body(receive, max_body: int, budget: BodyBudget, timeout_s: float) -> Body:
    """The whole request body from the ASGI `receive`, within `timeout_s`, `max_body` bytes
    and the shared `budget`; the caller releases the returned Body when done with it."""
    body, chunks = Body(budget), []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    body.refusal = "gone"
                    return body
                chunk = message.get("body", b"")
                body.held += len(chunk)
                budget.held += len(chunk)
                more = message.get("more_body", False)
                if body.held > max_body:
                    body.refusal = "too_large"
                elif more and budget.held > budget.limit:  # a body complete in one message
                    body.refusal = "busy"  # is in memory already: only partial ones wait
                if body.refusal is not None:
                    return body
                chunks.append(chunk)
                if not more:
                    body.data = b"".join(chunks)
                    return body
    except TimeoutError:
        body.refusal = "timeout"
        return body


def replay(body: bytes, receive):
    """An ASGI receive that hands `body` over once, then defers to the real one."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
