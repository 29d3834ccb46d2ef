"""The throughput probe: streaming OpenAI-compatible requests, timed per token on the client.

Validity rules (each one learned the hard way, see the measurement notes):

* every prompt starts with a unique nonce, so no prefix cache can serve it. Only what precedes
  the nonce can be shared: BOS, and on the chat API the template's fixed opening
  (``<|im_start|>system\n``: llama.cpp reports 3-6 cached tokens, depending on the slot).
  Prefill is computed over the tokens actually processed (prompt - cached), the same figure
  as the server's own ``prompt_n``, so that opening cannot fake prefill; a hit larger than
  :func:`cache_allowance` means the nonce failed and the request is invalid;
* prompts are calibrated to a fixed length in tokens and decode length is fixed (``max_tokens``
  with ``ignore_eos``), so rates are computed over the same amount of work every time;
* token counts come from ``usage`` (``stream_options.include_usage``); without it we count
  chunks and warn, because servers may pack several tokens into one chunk;
* where the server reports its own timings (llama.cpp ``timings``) they are kept beside ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from typing import Any

import httpx

from pytest_ktinterf.errors import InvalidMeasurement, KtInterfError, ServerError
from pytest_ktinterf.measure.events import LONG_PREFILL, TokenStream
from pytest_ktinterf.measure.events import ProbeWarning as ProbeWarning
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.measure.server_view import ServerView
from pytest_ktinterf.measure.sse import HttpStatus, IncompleteResponse, httpx_stream, post_stream
from pytest_ktinterf.system.cpus import off_cores

_FILLER = (
    "the", "river", "runs", "past", "old", "stone", "mills", "while", "lanterns", "glow", "over",
    "quiet", "streets", "and", "travellers", "trade", "stories", "of", "distant", "mountains",
    "harbours", "markets", "and", "storms",
)  # fmt: skip


WARM_WORDS = 16  # the settling round's prompt (:meth:`Probe.warm`): a few words, a few tokens out
WARM_TOKENS = 8


def cache_allowance(prompt_tokens: int) -> int:
    """Cached tokens a nonce-led prompt may still show: template opening + chance overlap."""
    return max(8, prompt_tokens // 20)


def nonce() -> str:
    """A prefix no server has seen before."""
    return uuid.uuid4().hex[:16]


def filler(words: int) -> str:
    return " ".join(_FILLER[i % len(_FILLER)] for i in range(words))


class Probe:
    """Measures one server with one fixed workload.

    ``prompt_tokens`` is the target prompt length as the server counts it (chat template
    included); call :meth:`calibrate` once before measuring.
    """

    def __init__(
        self,
        url: str,
        *,
        api: str = "chat",
        model: str | None = None,
        prompt_tokens: int = 128,
        max_tokens: int = 64,
        request_timeout_s: float = 300.0,
        extra_body: dict[str, Any] | None = None,
        avoid_cores: Collection[int] = (),
    ) -> None:
        self.url = url.rstrip("/")
        self.api = api
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.timeout = httpx.Timeout(request_timeout_s, connect=5.0)
        self.extra_body = extra_body or {}
        self.filler_words: int | None = None
        self.avoid_cores = frozenset(avoid_cores)  # the server's: rounds run off them (``off_cores``)
        self.server_view: ServerView | None = None  # its /metrics and log, watched per monitored round

    @contextlib.contextmanager
    def generating(self, max_tokens: int | None) -> Iterator[None]:
        """Requests generate ``max_tokens`` each inside the block (None: the session's), then as before.

        A condition's own output length (``max_tokens`` in an experiment file): a server that
        collapses decodes 64 tokens in 18 s here and in minutes on a KT box, while a few tokens
        show the collapse as surely. The same probe object, so servers taking turns keep theirs.
        """
        before = self.max_tokens
        self.max_tokens = before if max_tokens is None else max_tokens
        try:
            yield
        finally:
            self.max_tokens = before

    # -- request construction ------------------------------------------------------------

    def body(self, words: int, max_tokens: int) -> dict[str, Any]:
        """A streaming request body: a fresh nonce, then ``words`` of filler; ``max_tokens`` exactly."""
        text = f"{nonce()} Tell a long story. {filler(words)}"
        body: dict[str, Any] = {
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
            "temperature": 0.0,
        }
        if self.model:
            body["model"] = self.model
        if self.api == "chat":
            # The nonce opens the system message: the template's first tokens are all a
            # prefix cache could share, and there is no default system prompt to reuse.
            body["messages"] = [
                {"role": "system", "content": text[: text.index(" Tell")]},
                {"role": "user", "content": text[text.index("Tell") :]},
            ]
        else:
            body["prompt"] = text
        body.update(self.extra_body)
        return body

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"

    # -- one request -----------------------------------------------------------------------

    async def request(
        self,
        client: httpx.AsyncClient | None,
        stream: int,
        body: dict[str, Any],
        on_token: Callable[[], None] | None = None,
    ) -> RequestSample:
        """Stream one request, timing each token; ``on_token`` is told of each as it comes.

        ``client`` None: plain http through ``measure/sse.py``'s lean client (the probe's own
        path); an httpx client otherwise (https, the co-runner's load). Raises
        :class:`KtInterfError` (HTTP status, timeout, transport, error mid-stream) or
        :class:`InvalidMeasurement` (not JSON, no tokens); the caller judges the sample.
        """
        url = self.url + self.path
        seen = TokenStream(self.url, self.path, self.api, self.timeout.read, time.perf_counter(), on_token)
        try:
            if client is None:
                await post_stream(
                    url,
                    json.dumps(body).encode(),
                    seen.line,
                    connect_s=self.timeout.connect,
                    read_s=self.timeout.read,
                )
            else:
                await httpx_stream(client, url, body, seen.line)
        except HttpStatus as exc:
            raise ServerError(
                f"POST {self.path} answered HTTP {exc.status}: {exc.text}",
                "check --kt-model-name and --kt-api against what the server serves",
            ) from exc
        except (httpx.TimeoutException, TimeoutError, asyncio.TimeoutError) as exc:
            raise ServerError(
                f"request to {self.url}{self.path} timed out after {self.timeout.read} s",
                f"the server is overloaded or hung: check its log, or lower --kt-streams; {LONG_PREFILL}",
            ) from exc
        except (httpx.HTTPError, OSError, IncompleteResponse) as exc:
            raise ServerError(
                f"request to {self.url}{self.path} failed: {type(exc).__name__}: {exc}",
                "check that the server is still running (its log tail is below and in the report)",
            ) from exc
        return seen.sample(stream)

    async def _round(self, bodies: list[dict[str, Any]]) -> RoundSample:
        if self.url.startswith("http://"):
            return await self._gather(None, bodies)
        limits = httpx.Limits(max_connections=len(bodies) + 2)
        # trust_env=False: a proxy from the environment (http_proxy, ALL_PROXY) must never carry
        # the measurement, and no environment lookup may cost probe time.
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits, trust_env=False) as client:
            return await self._gather(client, bodies)

    async def _gather(self, client: httpx.AsyncClient | None, bodies: list[dict[str, Any]]) -> RoundSample:
        t_start = time.perf_counter()
        requests = await asyncio.gather(*(self.request(client, i, body) for i, body in enumerate(bodies)))
        t_end = time.perf_counter()
        return RoundSample(streams=len(bodies), requests=list(requests), t_start=t_start, t_end=t_end)

    # -- public API --------------------------------------------------------------------------

    def calibrate(self) -> int:
        """Find the filler length that makes prompts ``prompt_tokens`` long; return the error.

        Two short requests give the linear map words -> tokens (template overhead + slope),
        a third checks it; the nonce's own length varies by a token or two.
        """

        def count(words: int) -> int:
            """The median of 3 requests: each nonce tokenizes to a slightly different length."""
            found = []
            for _ in range(3):
                body = self.body(words, max_tokens=1)
                body.pop("ignore_eos", None)
                found.append(asyncio.run(self._round([body])).requests[0].prompt_tokens)
            return int(statistics.median(found))

        low, high = 8, 8 + max(16, self.prompt_tokens // 2)
        t_low, t_high = count(low), count(high)
        slope = (t_high - t_low) / (high - low)
        if slope <= 0:
            raise ServerError(
                f"prompt length does not grow with the prompt ({t_low} -> {t_high} tokens)",
                "the server's usage.prompt_tokens looks wrong; check --kt-api",
            )
        words = max(1, round(low + (self.prompt_tokens - t_low) / slope))
        if t_low > self.prompt_tokens:
            raise KtInterfError(
                f"--kt-prompt-tokens={self.prompt_tokens} is shorter than the fixed part of the "
                f"prompt ({t_low} tokens)",
                f"use --kt-prompt-tokens of at least {t_low + 8}",
            )
        self.filler_words = words
        return count(words) - self.prompt_tokens

    def measure(self, streams: int = 1) -> RoundSample:
        """One round of ``streams`` concurrent requests, each with a fresh nonce."""
        if self.filler_words is None:
            self.calibrate()
        assert self.filler_words is not None
        bodies = [self.body(self.filler_words, self.max_tokens) for _ in range(streams)]
        cpu = time.thread_time()
        sample = self._run(bodies)
        sample.probe_cpu_s = time.thread_time() - cpu
        for request in sample.requests:
            self._validate(request)
        return sample

    def warm(self, streams: int = 1) -> RoundSample:
        """A short round that settles the server after a switch: recorded, never validated or counted.

        The first round after an actor starts or stops is the one that runs slow (pages faulted
        back in, a co-runner's load ramping up): in a main job of two rounds a trial, the first
        rounds alone would have given the seed rows' intervals a width sum of 385 points, the
        second rounds 268. A request of a few words and :data:`WARM_TOKENS` tokens per stream
        takes that hit for about a third of a round's time (0.45 s against 1.5 s on this 2-core VM).
        """
        bodies = [self.body(WARM_WORDS, WARM_TOKENS) for _ in range(streams)]
        return self._run(bodies)

    def _run(self, bodies: list[dict[str, Any]]) -> RoundSample:
        """One round, on cores other than the server's when there are any (``avoid_cores``)."""
        with off_cores(self.avoid_cores):
            return asyncio.run(self._round(bodies))

    def _validate(self, request: RequestSample) -> None:
        allowed = cache_allowance(request.prompt_tokens)
        if request.cached_tokens and request.cached_tokens > allowed:
            raise InvalidMeasurement(
                f"the server's prefix cache served {request.cached_tokens} of "
                f"{request.prompt_tokens} prompt tokens (more than the {allowed} a chat "
                f"template's fixed opening can explain), so prefill was not measured",
                "the nonce did not defeat this server's prefix cache; disable prompt caching "
                "on the server (llama.cpp: request field cache_prompt=false) and report it",
            )
        if request.completion_tokens != self.max_tokens:
            raise InvalidMeasurement(
                f"the server generated {request.completion_tokens} tokens, expected exactly "
                f"{self.max_tokens} (max_tokens with ignore_eos)",
                "use a server that honours max_tokens and ignore_eos, or set --kt-max-tokens "
                "to the server's fixed output length (KT v0.2: --max_new_tokens)",
            )
        low, high = 0.9 * self.prompt_tokens, 1.1 * self.prompt_tokens + 2
        if not low <= request.prompt_tokens <= high:
            raise InvalidMeasurement(
                f"prompt was {request.prompt_tokens} tokens, target {self.prompt_tokens}",
                "calibration drifted; rerun, or report the server's usage.prompt_tokens as odd",
            )
