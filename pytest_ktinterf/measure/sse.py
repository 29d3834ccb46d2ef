"""The probe's transport: a streaming POST whose response lines come with the time they arrived.

Over plain http (every loopback server, KT in its container included) a small HTTP/1.1 client
on asyncio's streams does it: it sends one POST, reads the socket in large reads, undoes the
framing itself (chunked, Content-Length, or to the close) and splits the body into lines, each
stamped when its bytes arrived. Why not httpx here: at 64 concurrent streams of a fast server
(500 tok/s each) httpx's per-read machinery (h11's parser in Python, a timeout task per read)
needed more than the one core a probe gets, and the probe fell behind the server it measured:
it counted 90% of the offered rate, with stamps up to 0.9 s late
(``tests/benchmarks/bench_probe_ceiling.py``). The read timeout is one timer per request,
re-armed only when it fires, not a task per read. https keeps httpx (certificates, TLS), with
the same lines out (:func:`httpx_lines`).

Nothing here reads the proxy environment: the probe measures the server it names, never a proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

READ_SIZE = 1 << 16
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
        self.buffer += data
        out = []
        while not self.done:
            if self.left:
                if not self.buffer:
                    break
                piece = self.buffer[: self.left]
                self.buffer = self.buffer[len(piece) :]
                self.left -= len(piece)
                self.crlf = self.left == 0
                out.append(piece)
            elif self.crlf:
                if len(self.buffer) < 2:
                    break
                self.buffer, self.crlf = self.buffer[2:], False
            else:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    break
                size = self.buffer[:end].split(b";", 1)[0].strip()
                try:
                    self.left = int(size, 16)
                except ValueError:
                    raise IncompleteResponse(f"a chunk size that is not hexadecimal: {size[:20]!r}") from None
                self.buffer = self.buffer[end + 2 :]
                self.done = self.left == 0
        return b"".join(out)


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


class _Watchdog:
    """The read timeout: cancels the reading task once no byte has come for ``limit`` seconds.

    :meth:`fed` only notes the time; the timer re-arms itself when it fires early, so a stream of
    thousands of reads costs one timer, not one per read.
    """

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.last = self.loop.time()
        self.expired = False
        self.handle = self.loop.call_at(self.last + limit, self._check) if limit is not None else None

    def fed(self) -> None:
        self.last = self.loop.time()

    def _check(self) -> None:
        assert self.limit is not None
        due = self.last + self.limit
        if self.loop.time() >= due and self.task is not None:
            self.expired = True
            self.task.cancel()
        else:
            self.handle = self.loop.call_at(due, self._check)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


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


async def post_lines(
    url: str, body: bytes, *, connect_s: float | None, read_s: float | None
) -> AsyncIterator[tuple[float, str]]:
    """POST the JSON ``body`` to ``url`` (plain http) and yield each line of the response's body
    with the ``perf_counter`` time its bytes arrived.

    Raises :class:`HttpStatus` (not 200), ``TimeoutError`` (no connection within ``connect_s``,
    or no byte for ``read_s``), ``OSError`` (the connection failed) or :class:`IncompleteResponse`.
    Close it with ``contextlib.aclosing`` so that stopping early closes the connection at once.
    """
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connecting = asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 80, limit=READ_SIZE)
    reader, writer = await asyncio.wait_for(connecting, connect_s)
    watchdog = _Watchdog(read_s)
    try:
        writer.write(
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        try:
            status, headers = _head(await reader.readuntil(b"\r\n\r\n"))
        except asyncio.IncompleteReadError as exc:
            raise IncompleteResponse("the connection closed before the response's headers ended") from exc
        watchdog.fed()
        chunks = _Dechunker() if "chunked" in headers.get("transfer-encoding", "").lower() else None
        length = int(headers["content-length"]) if chunks is None and "content-length" in headers else None
        lines = _Lines()
        text: list[str] = []
        now = time.perf_counter()
        while length is None or length > 0:
            data = await reader.read(READ_SIZE)
            now = time.perf_counter()
            watchdog.fed()
            if not data:
                cut = (chunks is not None and not chunks.done) or length is not None
                if cut and status == 200:  # an error's answer is shown with what came of it
                    raise IncompleteResponse("the server closed the connection mid-response")
                break
            if chunks is not None:
                data = chunks.feed(data)
            elif length is not None:
                data = data[:length]
                length -= len(data)
            if status != 200:
                text.append(data.decode("utf-8", "replace"))
                if sum(map(len, text)) >= ERROR_TEXT or (chunks is not None and chunks.done):
                    break
                continue
            for line in lines.feed(data):
                yield now, line
            if chunks is not None and chunks.done:
                break
        if status != 200:
            raise HttpStatus(status, "".join(text)[:ERROR_TEXT])
        for line in lines.close():
            yield now, line
    except asyncio.CancelledError:
        if not watchdog.expired:
            raise
        uncancel = getattr(asyncio.current_task(), "uncancel", None)  # 3.11+: the cancel was ours
        if uncancel is not None:
            uncancel()
        raise TimeoutError(f"no byte for {read_s} s") from None
    finally:
        watchdog.close()
        writer.close()


async def httpx_lines(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> AsyncIterator[tuple[float, str]]:
    """:func:`post_lines` on an httpx client (https, the co-runner's load); httpx's errors as they come."""
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode("utf-8", "replace")[:ERROR_TEXT]
            raise HttpStatus(response.status_code, text)
        async for line in response.aiter_lines():
            yield time.perf_counter(), line
