"""The busy co-runner's load: the probe's own streaming requests, sent without pause to loopback.

There is one OpenAI-compatible client in the package, :class:`~pytest_ktinterf.measure.probe.Probe`:
the load builds its bodies with :meth:`Probe.body` (a fresh nonce first, so no prefix cache turns the
co-runner's prefill into a lookup; ``max_tokens`` with ``ignore_eos``) and streams and counts tokens
with :meth:`Probe.request`. What is the load's own: requests follow one another without a pause, and
nothing is judged as a measurement -- a request that streams tokens has completed; a failure is
counted and shown, not raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.probe import Probe

PROMPT_WORDS = 24  # "Tell a long story." and one pass over the probe's filler: a short, fixed prompt


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine's loopback interface (the only place we send load)."""
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class LoopCounts:
    """What the request loop has done so far (a consistent snapshot)."""

    completed: int = 0
    tokens: int = 0
    errors: int = 0
    last_error: str = ""


def _describe(exc: BaseException) -> str:
    text = exc.cause if isinstance(exc, KtInterfError) else f"{type(exc).__name__}: {exc}"
    return text[:300]


class RequestLoop:
    """``streams`` concurrent streams, each sending one completion request after another until stopped.

    They run as tasks of one event loop in one daemon thread. Bounded by construction: every request
    has a timeout, and :meth:`request_stop` cancels the requests in flight, so :meth:`join` returns
    promptly whether the server is alive, hung or killed. A request cut short by the stop counts as
    neither completed nor failed, and its tokens after the stop are not counted.
    """

    def __init__(
        self,
        url: str,
        *,
        api: str,
        model: str | None,
        max_tokens: int,
        streams: int,
        timeout_s: float,
        name: str,
    ) -> None:
        self.probe = Probe(url, api=api, model=model, max_tokens=max_tokens, request_timeout_s=timeout_s)
        self.probe.timeout = httpx.Timeout(timeout_s, connect=2.0)
        self.streams = streams
        self.name = name
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = LoopCounts()
        self._thread: threading.Thread | None = None
        self._main: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    @property
    def path(self) -> str:
        return self.probe.path

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-requests", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        with self._lock:
            self._stop.set()
            main = self._main
        if main is not None:
            loop, task = main
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(task.cancel)

    def join(self, timeout_s: float) -> bool:
        """Wait for the requests to end; True when nothing of the loop is left running."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self._thread is None or not self._thread.is_alive()

    def snapshot(self) -> LoopCounts:
        with self._lock:
            return self._counts

    def _add(self, **delta: Any) -> None:
        with self._lock:
            if self._stop.is_set():
                return  # frozen at stop: what arrives while the streams are cancelled is not the load's
            counts = self._counts
            self._counts = dataclasses.replace(
                counts,
                completed=counts.completed + delta.get("completed", 0),
                tokens=counts.tokens + delta.get("tokens", 0),
                errors=counts.errors + delta.get("errors", 0),
                last_error=delta.get("last_error", counts.last_error),
            )

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(self._all_streams())

    async def _all_streams(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            if self._stop.is_set():
                return
            self._main = (asyncio.get_running_loop(), task)
        limits = httpx.Limits(max_connections=self.streams + 2)
        # trust_env=False: a proxy from the environment must never carry loopback load elsewhere.
        async with httpx.AsyncClient(timeout=self.probe.timeout, limits=limits, trust_env=False) as client:
            await asyncio.gather(*(self._stream(client, i) for i in range(self.streams)))

    async def _stream(self, client: httpx.AsyncClient, stream: int) -> None:
        while not self._stop.is_set():
            counted = 0

            def on_token() -> None:
                nonlocal counted
                counted += 1
                self._add(tokens=1)  # live, so a window shorter than a request still sees work

            body = self.probe.body(PROMPT_WORDS, self.probe.max_tokens)
            try:
                sample = await self.probe.request(client, stream, body, on_token=on_token)
            except Exception as exc:  # any failure must surface in check(), not end the stream
                self._add(errors=1, last_error=_describe(exc))
                await asyncio.sleep(0.2)  # do not spin on a failing server
                continue
            # The server's own count (usage) wins: one chunk may carry several tokens.
            self._add(completed=1, tokens=sample.completion_tokens - counted)
