"""Probe ceiling: can the probe keep up with a fast server? (issue 14 item 5; a benchmark, not a test)

    python -m tests.benchmarks.bench_probe_ceiling [--streams 1,16,64] [--rate 500] [--tokens 1000]
                                                   [--rounds 3]

A paced SSE server written for this benchmark (raw asyncio, HTTP/1.1 keep-alive, chunked) sends
each stream's OpenAI-style token chunks on an absolute schedule of ``rate`` tokens/s and stamps
every chunk with ``perf_counter`` when it writes it (CLOCK_MONOTONIC: every process on the machine
reads the same clock). It runs on the last core; each client runs in its own process on core 0:

- ``probe``: the plugin's :class:`Probe` (subclassed only to remember each request's nonce);
- ``floor``: a raw asyncio socket that only finds token events in the bytes, stamped per read:
  what any client must at least spend;
- ``aiohttp``: a client in the style of vLLM's ``benchmark_serving`` (skipped when aiohttp is not
  installed; it is not a dependency).

Per client and stream count it prints the share of the offered rate counted (the plugin's
union-window decode aggregate on both sides), the delay of its stamps behind the server's (p50,
p99) and its CPU µs per token, then the issue's targets as ratios to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import union_length

PROMPT_TOKENS = 128
STAMPS: dict[str, list[float]] = {}


# -- the paced server ---------------------------------------------------------------------------


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


async def _answer(writer: asyncio.StreamWriter, body: dict[str, Any], rate: float) -> None:
    key = str(body.get("nonce") or body["messages"][0]["content"])
    tokens = int(body["max_tokens"])
    stamps = STAMPS.setdefault(key, [])
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    event = b'data: {"choices":[{"index":0,"delta":{"content":" tok"}}]}\n\n'
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(tokens):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        stamps.append(time.perf_counter())
        writer.write(_chunk(event))
    usage = {"choices": [], "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": tokens}}
    writer.write(_chunk(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode()) + b"0\r\n\r\n")
    await writer.drain()


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next(
                (int(h.split(":")[1]) for h in head.split("\r\n") if h.lower().startswith("content-length")),
                0,
            )
            body = await reader.readexactly(length)
            if head.startswith("GET /stamps"):
                data = json.dumps(STAMPS).encode()
                STAMPS.clear()
                writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
            else:
                await _answer(writer, json.loads(body), rate)
            if "connection: close" in head.lower():
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int, rate: float) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _connection(r, w, rate), "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the clients ----------------------------------------------------------------------------------


class NoncedProbe(Probe):
    """The plugin's probe, remembering each body's nonce (its system message) in order."""

    keys: list[str]

    def body(self, words: int, max_tokens: int) -> dict[str, Any]:
        body = super().body(words, max_tokens)
        self.keys.append(body["messages"][0]["content"])
        return body


def _probe_round(url: str, streams: int, tokens: int) -> dict[str, list[float]]:
    probe = NoncedProbe(url, prompt_tokens=PROMPT_TOKENS, max_tokens=tokens)
    probe.filler_words, probe.keys = 10, []
    sample = probe.measure(streams)
    return {key: r.token_times for key, r in zip(probe.keys, sample.requests, strict=True)}


async def _floor_one(host: str, port: int, key: str, tokens: int) -> list[float]:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
    body = json.dumps({"nonce": key, "max_tokens": tokens}).encode()
    writer.write(
        f"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode()
        + body
    )
    times: list[float] = []
    while data := await reader.read(1 << 16):
        now = time.perf_counter()
        times += [now] * data.count(b'"content"')
    writer.close()
    return times


async def _aiohttp_one(session: Any, url: str, key: str, tokens: int) -> list[float]:
    times: list[float] = []
    async with session.post(url, json={"nonce": key, "max_tokens": tokens}) as response:
        async for raw in response.content:
            chunk = raw.strip()
            if not chunk or chunk == b"data: [DONE]":
                continue
            data = json.loads(chunk.removeprefix(b"data: "))
            if data.get("choices") and data["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
    return times


async def _gathered(kind: str, url: str, streams: int, tokens: int) -> dict[str, list[float]]:
    keys = [f"{kind}-{time.perf_counter_ns()}-{i}" for i in range(streams)]
    if kind == "floor":
        found = await asyncio.gather(
            *(_floor_one("127.0.0.1", int(url.rsplit(":", 1)[1]), k, tokens) for k in keys)
        )
    else:
        import aiohttp  # only this client needs it

        async with aiohttp.ClientSession(trust_env=False) as session:
            target = f"{url}/v1/chat/completions"
            found = await asyncio.gather(*(_aiohttp_one(session, target, k, tokens) for k in keys))
    return dict(zip(keys, found, strict=True))


def _aggregate(series: list[list[float]]) -> float:
    tokens = sum(len(s) - 1 for s in series if s)
    window = union_length([(s[0], s[-1]) for s in series if s])
    return tokens / window if window > 0 else float("nan")


def client(kind: str, url: str, streams: int, tokens: int, rounds: int) -> None:
    """Measure ``rounds`` rounds, then fetch the server's stamps; print one JSON summary line."""
    os.sched_setaffinity(0, {0})
    counted, offered, delays, cpu, total = [], [], [], 0.0, 0
    for _ in range(rounds):
        started = time.process_time()
        seen = (
            _probe_round(url, streams, tokens)
            if kind == "probe"
            else asyncio.run(_gathered(kind, url, streams, tokens))
        )
        cpu += time.process_time() - started
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        conn.request("GET", "/stamps", headers={"Connection": "close"})
        stamps = json.loads(conn.getresponse().read())
        conn.close()
        counted.append(_aggregate(list(seen.values())))
        offered.append(_aggregate([stamps[k] for k in seen]))
        for key, times in seen.items():
            delays += [t - s for t, s in zip(times, stamps[key], strict=False)]
            total += len(times)
    delays.sort()
    print(
        json.dumps(
            {
                "counted": statistics.median(c / o for c, o in zip(counted, offered, strict=True)),
                "p50_ms": 1000 * delays[len(delays) // 2],
                "p99_ms": 1000 * delays[min(len(delays) - 1, int(0.99 * len(delays)))],
                "cpu_us": 1e6 * cpu / max(1, total),
            }
        )
    )


# -- the driver -----------------------------------------------------------------------------------


def _run_client(kind: str, url: str, streams: int, args: argparse.Namespace) -> dict[str, float]:
    argv = [
        sys.executable,
        "-m",
        "tests.benchmarks.bench_probe_ceiling",
        "--client",
        kind,
        "--url",
        url,
        "--streams",
        str(streams),
        "--tokens",
        str(args.tokens),
        "--rounds",
        str(args.rounds),
    ]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", default="1,16,64")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18731)
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--client")
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    if args.serve:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        serve(args.port, args.rate)
        return 0
    if args.client:
        client(args.client, args.url, int(args.streams), args.tokens, args.rounds)
        return 0
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.bench_probe_ceiling",
            "--serve",
            "--port",
            str(args.port),
            "--rate",
            str(args.rate),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        kinds = ["probe", "floor"]
        try:
            import aiohttp  # noqa: F401

            kinds.append("aiohttp")
        except ImportError:
            print("aiohttp is not installed: its client is skipped (pip install aiohttp)")
        print(
            f"server: {args.rate:.0f} tok/s per stream, {args.tokens} tokens a request, {args.rounds} rounds"
        )
        print(f"{'streams':>7} {'client':>8} {'counted':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/tok':>10}")
        for streams in (int(s) for s in args.streams.split(",")):
            found = {kind: _run_client(kind, url, streams, args) for kind in kinds}
            for kind, r in found.items():
                delays = f"{r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"
                print(f"{streams:7d} {kind:>8} {100 * r['counted']:7.1f}% {delays} {r['cpu_us']:10.1f}")
            probe, floor = found["probe"], found["floor"]
            print(
                f"{'':7} targets: counted {100 * probe['counted']:.1f}% (>= 98%), p99 "
                f"{probe['p99_ms'] / floor['p99_ms']:.2f}x the floor (<= 2x), CPU "
                f"{probe['cpu_us'] / floor['cpu_us']:.2f}x the floor (<= 2x)"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
