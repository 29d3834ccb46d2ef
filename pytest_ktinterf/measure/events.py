"""From an OpenAI-compatible stream's lines to one request's measurement.

Which chunk carries a token (role-only and usage-only chunks do not), what ``usage`` and llama.cpp's
``timings`` said, when the stream stalls with only keep-alive lines, and which broken answers make
the request invalid. The probe (``measure/probe.py``) sends the request and judges the sample;
this module only reads what came back, a line at a time, as the transport hands it over.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

from pytest_ktinterf.errors import InvalidMeasurement, ServerError
from pytest_ktinterf.measure.samples import RequestSample

LONG_PREFILL = "a long prefill that is expected: raise --kt-request-timeout"  # a timeout's other fix


class ProbeWarning(UserWarning):
    """A measurement that is usable but less exact than it should be."""


class TokenStream:
    """One request's stream as its lines come: the token times, the usage and timings seen.

    ``url`` and ``path`` are the server's and the request's (for the errors), ``stall_s`` the
    longest the stream may go without a token.
    """

    def __init__(
        self,
        url: str,
        path: str,
        api: str,
        stall_s: float | None,
        t_send: float,
        on_token: Callable[[], None] | None,
    ) -> None:
        self.url = url
        self.path = path
        self.api = api
        self.stall_s = stall_s
        self.t_send = t_send
        self.on_token = on_token
        self.token_times: list[float] = []
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None

    def line(self, now: float, line: str) -> bool:
        """Take one line that arrived at ``now``; True once the stream says it is done."""
        times = self.token_times
        _check_progress(now - (times[-1] if times else self.t_send), self.stall_s, self.url + self.path)
        if not line.startswith("data:"):
            return False  # blank separators, SSE comments, event: lines
        data = line[5:].strip()
        if data == "[DONE]":
            return True
        chunk = _parse_chunk(data, self.url)
        if _carries_token(chunk, self.api, started=bool(times)):
            times.append(now)
            if self.on_token is not None:
                self.on_token()
        self.usage = chunk.get("usage") or self.usage
        self.timings = chunk.get("timings") or self.timings
        return False

    def sample(self, stream: int) -> RequestSample:
        """The request as measured (raises :class:`InvalidMeasurement` when it carried no token)."""
        token_times, usage, timings, url = self.token_times, self.usage, self.timings, self.url
        if not token_times:
            raise InvalidMeasurement(
                f"server at {url} streamed no tokens",
                "check that the server streams (stream=true) and that the model name is right",
            )
        prompt_tokens = completion_tokens = 0
        cached: int | None = None
        from_usage = usage is not None
        if usage is not None:
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            if isinstance(details, dict) and details.get("cached_tokens") is not None:
                cached = int(details["cached_tokens"])
        if completion_tokens <= 0:
            from_usage = False
            completion_tokens = len(token_times)
            warnings.warn(
                ProbeWarning(f"server at {url} sent no usage; counting {len(token_times)} chunks as tokens"),
                stacklevel=2,
            )
        if prompt_tokens <= 0 and timings:
            prompt_tokens = int(timings.get("prompt_n") or 0)
        return RequestSample(
            stream=stream,
            t_send=self.t_send,
            t_first=token_times[0],
            t_last=token_times[-1],
            token_times=token_times,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached,
            tokens_from_usage=from_usage,
            server_prefill_tps=_float(timings, "prompt_per_second"),
            server_decode_tps=_float(timings, "predicted_per_second"),
        )


def _check_progress(since_token_s: float, limit: float | None, url: str) -> None:
    """Raise when the stream has carried no token for the read timeout.

    The read timeout bounds the wait for each *read*, so a stream kept alive by SSE comments
    or token-less chunks (a proxy's keep-alive in front of a hung server) would never time out:
    the probe would hang for good. Progress is a token (or, before the first, the request).
    """
    if limit is not None and since_token_s > limit:
        raise ServerError(
            f"request to {url} streamed no token for {limit} s (only keep-alive lines or token-less chunks)",
            f"the server is hung behind a live connection: check its log, or lower --kt-streams; "
            f"{LONG_PREFILL}",
        )


def _parse_chunk(data: str, url: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise InvalidMeasurement(
            f"server at {url} sent a stream chunk that is not JSON: {data[:80]!r}",
            "point --kt-url at an OpenAI-compatible server (SSE 'data: {json}' lines)",
        ) from exc
    if not isinstance(chunk, dict):
        raise InvalidMeasurement(
            f"server at {url} sent a stream chunk that is not a JSON object: {data[:80]!r}",
            "point --kt-url at an OpenAI-compatible server",
        )
    if "error" in chunk:
        raise ServerError(
            f"server at {url} reported an error mid-stream: {str(chunk['error'])[:200]}",
            "check the server log; the request was rejected or the server ran out of memory",
        )
    return chunk


def _carries_token(chunk: dict[str, Any], api: str, started: bool) -> bool:
    """Whether a chunk delivers generated output (role-only and usage-only chunks do not).

    An empty piece counts once output has started (special tokens decode to ''), but not
    before, where some servers send an empty role chunk as soon as the request arrives.
    """
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    if api == "chat":
        delta = choice.get("delta") or {}
        piece = delta.get("content")
        if piece is None:
            piece = delta.get("reasoning_content")
    else:
        piece = choice.get("text")
    if piece is None:
        return False
    return bool(piece) or started


def _float(source: dict[str, Any] | None, key: str) -> float | None:
    if not source or source.get(key) is None:
        return None
    return float(source[key])
