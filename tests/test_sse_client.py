"""The probe's own HTTP client (``measure/sse.py``): framing undone and lines split, whatever the reads.

A socket hands over bytes split anywhere: in a chunk's size line, between a CR and its LF, inside
a UTF-8 character. Every line must come out once, whole and in order, for any split. The client's
behaviour against servers (statuses, hangs, a killed server) is tested through the probe with the
fake broken server and the real llama-server.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_ktinterf.measure.sse import HttpStatus, IncompleteResponse, _Dechunker, _Lines, post_stream

LINE = st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=40)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _chunked(payload: bytes, sizes: list[int]) -> bytes:
    out, i = b"", 0
    for size in sizes:
        piece = payload[i : i + size]
        if piece:
            out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        i += size
    if i < len(payload):
        out += f"{len(payload) - i:X}\r\n".encode() + payload[i:] + b"\r\n"
    return out + b"0\r\nTrailer: x\r\n\r\n"


@given(
    lines=st.lists(LINE, max_size=12),
    crlf=st.booleans(),
    sizes=st.lists(st.integers(1, 30), max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_every_line_comes_out_once_and_in_order_whatever_the_splits(
    lines: list[str], crlf: bool, sizes: list[int], cuts: list[int]
) -> None:
    end = "\r\n" if crlf else "\n"
    payload = "".join(line + end for line in lines).encode()
    dechunk, split = _Dechunker(), _Lines()
    seen: list[str] = []
    for piece in _split(_chunked(payload, sizes), cuts):
        seen += split.feed(dechunk.feed(piece))
    seen += split.close()
    assert dechunk.done
    assert seen == lines


def test_a_chunk_size_that_is_not_hexadecimal_is_a_broken_response() -> None:
    with pytest.raises(IncompleteResponse, match="not hexadecimal"):
        _Dechunker().feed(b"zz\r\nabc\r\n")


def test_a_last_line_without_its_end_still_comes_out() -> None:
    split = _Lines()
    assert split.feed(b"data: a\ndata: b") == ["data: a"]
    assert split.close() == ["data: b"]


async def _serve_once(answer: bytes) -> tuple[asyncio.AbstractServer, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)  # the body, b"{}": a close with unread input would be a reset
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions"


async def _read_all(answer: bytes) -> list[str]:
    server, url = await _serve_once(answer)
    async with server:
        lines: list[str] = []

        def take(_: float, line: str) -> bool:
            lines.append(line)
            return False

        await post_stream(url, b"{}", take, connect_s=5, read_s=5)
        return lines


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(b"data: 1\n\n", [3]),
            ["data: 1", ""],
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ndata: 2\n\nIGNORED", ["data: 2", ""]),
        (b"HTTP/1.0 200 OK\r\n\r\ndata: 3\n\n", ["data: 3", ""]),
    ],
    ids=["chunked", "content-length", "to-the-close"],
)
def test_each_framing_against_a_loopback_socket(answer: bytes, expected: list[str]) -> None:
    assert asyncio.run(_read_all(answer)) == expected


def test_an_error_status_carries_the_start_of_its_body() -> None:
    answer = b"HTTP/1.1 503 Busy\r\nContent-Length: 13\r\n\r\nout of memory"
    with pytest.raises(HttpStatus, match="HTTP 503: out of memory"):
        asyncio.run(_read_all(answer))


def test_a_response_cut_short_is_named() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata"
    with pytest.raises(IncompleteResponse, match="mid-response"):
        asyncio.run(_read_all(answer))


def test_the_callers_done_ends_the_response_and_its_error_ends_it_with_that_error() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\ndata: 1\ndata: 2\n"

    async def read(on_line: object) -> None:
        server, url = await _serve_once(answer)
        async with server:
            await post_stream(url, b"{}", on_line, connect_s=5, read_s=5)  # type: ignore[arg-type]

    seen: list[str] = []
    asyncio.run(read(lambda _, line: seen.append(line) or line == "data: 1"))
    assert seen == ["data: 1"]

    def refuse(_: float, line: str) -> bool:
        raise ValueError(f"refused {line}")

    with pytest.raises(ValueError, match="refused data: 1"):
        asyncio.run(read(refuse))


def test_no_byte_for_the_read_timeout_is_a_timeout() -> None:
    async def read() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await asyncio.sleep(30)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with server:
            await post_stream(url, b"{}", lambda _, __: False, connect_s=5, read_s=0.3)

    with pytest.raises(TimeoutError, match=r"no byte for 0\.3 s"):
        asyncio.run(asyncio.wait_for(read(), 10))
