"""The probe's transport: a streaming POST whose response lines come with the time they arrived.

Over plain http (every loopback server, KT in its container included) a small HTTP/1.1 client
does it, as an :class:`asyncio.Protocol`: it sends one POST, undoes the framing itself (chunked,
Content-Length, or to the close) in the event loop's callback for each read, and hands every line
of the body, stamped when its bytes arrived, to the caller's function. Why not httpx here: at 64
concurrent streams of a fast server (500 tok/s each) httpx's per-read machinery (h11's parser in
Python, a timeout task per read) needed more than the one core a probe gets, and the probe fell
behind the server it measured: it counted 90% of the offered rate, with stamps up to 0.9 s late
(``tests/benchmarks/bench_probe_ceiling.py``). Why not asyncio's streams either: see
:class:`_Response`. The read timeout is one timer per request, re-armed only when it fires. https
keeps httpx (certificates, TLS), with the same lines out (:func:`httpx_stream`).

Nothing here reads the proxy environment: the probe measures the server it names, never a proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

ERROR_TEXT = 300  # characters of a non-200 answer's body kept for the error line


class HttpStatus(Exception):
    """The server answered with a status other than 200; ``text`` is the start of its body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


class IncompleteResponse(Exception):
    """The response broke its own framing: closed early, or not HTTP at all."""


class _Dechunker:
    """Chunked transfer coding undone incrementally: :meth:`feed` takes the bytes split anyhow."""

    def __init__(self) -> None:
        self.buffer = b""
        self.left = 0  # bytes still to come in the current chunk
        self.crlf = False  # the CRLF after a chunk's data is due
        self.done = False  # the last (zero-size) chunk was seen; trailers are ignored

    def feed(self, data: bytes) -> bytes:
        buf = self.buffer + data if self.buffer else data
        pos, size = 0, len(buf)
        out = []
        while not self.done:
            if self.left:
                if pos >= size:
                    break
                take = min(self.left, size - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self.left -= take
                self.crlf = self.left == 0
            elif self.crlf:
                if size - pos < 2:
                    break
                pos, self.crlf = pos + 2, False
            else:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                hexa = buf[pos:end].split(b";", 1)[0].strip()
                try:
                    self.left = int(hexa, 16)
                except ValueError:
                    raise IncompleteResponse(f"a chunk size that is not hexadecimal: {hexa[:20]!r}") from None
                pos = end + 2
                self.done = self.left == 0
        self.buffer = buf[pos:]
        return out[0] if len(out) == 1 else b"".join(out)


class _Lines:
    """Lines of a byte stream split anyhow (``\\n`` or ``\\r\\n`` ends a line, as SSE's do)."""

    def __init__(self) -> None:
        self.rest = b""

    def feed(self, data: bytes) -> list[str]:
        parts = (self.rest + data).split(b"\n")
        self.rest = parts.pop()
        return [p.rstrip(b"\r").decode("utf-8", "replace") for p in parts]

    def close(self) -> list[str]:
        rest, self.rest = self.rest, b""
        return [rest.rstrip(b"\r").decode("utf-8", "replace")] if rest else []


class _Response(asyncio.Protocol):
    """One POST's response, taken apart in the event loop's own callback as its bytes arrive.

    Why a protocol and not a coroutine reading a stream: each read of a stream costs a future, a
    task wake-up and a resumption of every coroutine up the chain before the bytes are even looked
    at, and at 64 streams of a fast server that is most of the probe's CPU; worse, the stamp is
    taken only when the task runs, after every other ready callback. Here the stamp is the first
    thing done with the bytes, and the lines go straight to ``on_line``. ``on_line`` returning
    True (the stream's ``[DONE]``) ends the response; whatever it raises ends it with that error.
    """

    def __init__(self, on_line: Callable[[float, str], bool], read_s: float | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.on_line = on_line
        self.read_s = read_s
        self.transport: asyncio.BaseTransport | None = None
        self.head = b""
        self.status: int | None = None
        self.chunks: _Dechunker | None = None
        self.length: int | None = None  # Content-Length bytes still to come
        self.lines = _Lines()
        self.text: list[str] = []  # an error answer's body
        self.now = time.perf_counter()
        self.last = self.loop.time()
        self.timer: asyncio.TimerHandle | None = None

    # -- the read timeout: one timer per response, re-armed only when it fires early

    def _arm(self) -> None:
        if self.read_s is not None:
            self.timer = self.loop.call_at(self.last + self.read_s, self._check_read)

    def _check_read(self) -> None:
        assert self.read_s is not None
        if self.loop.time() >= self.last + self.read_s:
            self._finish(TimeoutError(f"no byte for {self.read_s} s"))
        else:
            self._arm()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._arm()

    def data_received(self, data: bytes) -> None:
        self.now = time.perf_counter()
        self.last = self.loop.time()
        if self.done.done():
            return
        try:
            self._take(data)
        except Exception as exc:  # the caller's own errors (on_line's) and broken framing alike
            self._finish(exc)

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        try:
            self._closed(exc)
        except Exception as error:
            self._finish(error)

    # -- the response

    def _take(self, data: bytes) -> None:
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status, headers = _head(self.head[:end])
            data, self.head = self.head[end + 4 :], b""
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.chunks = _Dechunker()
            elif "content-length" in headers:
                self.length = int(headers["content-length"])
        if self.chunks is not None:
            data = self.chunks.feed(data)
        elif self.length is not None:
            data = data[: self.length]
            self.length -= len(data)
        if self.status != 200:
            self.text.append(data.decode("utf-8", "replace"))
            if self._ended or sum(map(len, self.text)) >= ERROR_TEXT:
                self._finish(HttpStatus(self.status, "".join(self.text)[:ERROR_TEXT]))
            return
        for line in self.lines.feed(data):
            if self.on_line(self.now, line):
                self._finish(None)
                return
        if self._ended:
            self._closed(None)

    @property
    def _ended(self) -> bool:
        """Whether the framing says the body is complete (a body to the close never says so)."""
        return (self.chunks is not None and self.chunks.done) or self.length == 0

    def _closed(self, exc: Exception | None) -> None:
        """The response ended (its framing says so, or the connection closed)."""
        if exc is not None:
            raise exc
        if self.status is None:
            raise IncompleteResponse("the connection closed before the response's headers ended")
        if self.status != 200:
            raise HttpStatus(self.status, "".join(self.text)[:ERROR_TEXT])
        if not self._ended and (self.chunks is not None or self.length is not None):
            raise IncompleteResponse("the server closed the connection mid-response")
        for line in self.lines.close():
            if self.on_line(self.now, line):
                break
        self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


def _head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise IncompleteResponse(f"not an HTTP response: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def post_stream(
    url: str,
    body: bytes,
    on_line: Callable[[float, str], bool],
    *,
    connect_s: float | None,
    read_s: float | None,
) -> None:
    """POST the JSON ``body`` to ``url`` (plain http); each line of the response's body goes to
    ``on_line(time its bytes arrived, line)`` as it comes, until it returns True or the body ends.

    Raises what ``on_line`` raised, :class:`HttpStatus` (not 200), ``TimeoutError`` (no connection
    within ``connect_s``, or no byte for ``read_s``), ``OSError`` (the connection failed) or
    :class:`IncompleteResponse`. Cancelled, it closes the connection at once.
    """
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    response = _Response(on_line, read_s)
    connecting = loop.create_connection(lambda: response, parts.hostname or "127.0.0.1", parts.port or 80)
    transport, _ = await asyncio.wait_for(connecting, connect_s)
    try:
        transport.write(
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await response.done
    finally:
        if response.timer is not None:
            response.timer.cancel()
        transport.close()


async def httpx_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], on_line: Callable[[float, str], bool]
) -> None:
    """:func:`post_stream` on an httpx client (https, the co-runner's load); httpx's errors as they come."""
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode("utf-8", "replace")[:ERROR_TEXT]
            raise HttpStatus(response.status_code, text)
        async for line in response.aiter_lines():
            if on_line(time.perf_counter(), line):
                return
