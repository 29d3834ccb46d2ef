"""What one measurement produced: per-request timings and per-round (N concurrent streams) figures.

The definitions live here, next to the data, so every consumer computes them the same way:

* prefill tok/s = prompt tokens processed (prompt - cached) / time to first token (TTFT);
* decode tok/s = (completion tokens - 1) / (last token time - first token time);
* aggregate throughput of a round = total tokens / the *union* of the streams' windows.
  Summing per-stream rates overstates it when streams take turns on the same cores
  (measurement note 2), so the "30+17+27+17" sum is only ever shown beside the true figure.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


def union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by a set of closed intervals."""
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


@dataclass
class RequestSample:
    """One streamed request, timed on the client (seconds on ``time.perf_counter``)."""

    stream: int
    t_send: float
    t_first: float
    t_last: float
    token_times: list[float]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None
    tokens_from_usage: bool = True
    server_prefill_tps: float | None = None
    server_decode_tps: float | None = None

    @property
    def ttft(self) -> float:
        return self.t_first - self.t_send

    @property
    def processed_tokens(self) -> int:
        """Prompt tokens the server actually computed (a prefix-cache hit is not prefill)."""
        return self.prompt_tokens - (self.cached_tokens or 0)

    @property
    def prefill_tps(self) -> float:
        return self.processed_tokens / self.ttft if self.ttft > 0 else float("nan")

    @property
    def decode_tps(self) -> float:
        span = self.t_last - self.t_first
        return (self.completion_tokens - 1) / span if span > 0 else float("nan")

    @property
    def inter_token_latencies(self) -> list[float]:
        times = self.token_times
        return [b - a for a, b in itertools.pairwise(times)]

    def summary(self) -> dict[str, Any]:
        """Derived figures, for reports and the JSON record."""
        itl = self.inter_token_latencies
        return {
            "stream": self.stream,
            "ttft_s": self.ttft,
            "prefill_tps": self.prefill_tps,
            "decode_tps": self.decode_tps,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "tokens_from_usage": self.tokens_from_usage,
            "itl_median_s": statistics.median(itl) if itl else None,
            "itl_max_s": max(itl) if itl else None,
            "server_prefill_tps": self.server_prefill_tps,
            "server_decode_tps": self.server_decode_tps,
        }


@dataclass
class RoundSample:
    """One round: ``streams`` requests started together, each with its own prompt."""

    streams: int
    requests: list[RequestSample]
    t_start: float
    t_end: float
    resources: dict[str, Any] = field(default_factory=dict)
    # The probe's own CPU time for the round (its thread's, so the resource monitor's is not
    # counted): a probe short of CPU would under-report a fast server, and this says how close.
    probe_cpu_s: float | None = None
    server: dict[str, Any] = field(default_factory=dict)  # the server's own view (``server_view.py``)

    @property
    def prefill_aggregate(self) -> float:
        tokens = sum(r.processed_tokens for r in self.requests)
        window = union_length([(r.t_send, r.t_first) for r in self.requests])
        return tokens / window if window > 0 else float("nan")

    @property
    def decode_aggregate(self) -> float:
        tokens = sum(r.completion_tokens - 1 for r in self.requests)
        window = union_length([(r.t_first, r.t_last) for r in self.requests])
        return tokens / window if window > 0 else float("nan")

    def metric(self, name: str) -> float:
        """One figure of this round by name; NaN when it was not measured (no GPU: no ``vram``).

        ``prefill`` / ``decode``: aggregate tokens/s (the request's own at 1 stream);
        ``prefill_per_stream`` / ``decode_per_stream``: the median stream's rate;
        ``ram``: the server's resident memory at its peak (host RAM used when the server's
        processes are unknown); ``vram``: GPU memory used at its peak, MiB.
        """
        if name == "prefill":
            return self.prefill_aggregate
        if name == "decode":
            return self.decode_aggregate
        if name in ("prefill_per_stream", "decode_per_stream"):
            rates = [x for x in self.per_stream(name.removesuffix("_per_stream")) if x == x]
            return statistics.median(rates) if rates else float("nan")
        if name == "ram":
            value = self.resources.get("server_rss_peak_mib") or self.resources.get("ram_used_peak_mib")
            return float(value) if value else float("nan")
        if name == "vram":
            value = self.resources.get("vram_used_peak_mib")
            return (
                float(value) if value is not None and self.resources.get("gpu") == "present" else float("nan")
            )
        raise KeyError(
            f"unknown metric {name!r}; use prefill, decode, prefill_per_stream, "
            "decode_per_stream, ram or vram"
        )

    def per_request(self, name: str) -> float:
        """Tokens over the seconds the requests spent on them, summed over the round's requests:
        prefill = processed prompt tokens / summed TTFT, decode = (tokens - 1 each) / summed
        decode spans. The quantity servers count (``measure/prometheus.py``), for the cross-check."""
        if name == "prefill":
            tokens = sum(r.processed_tokens for r in self.requests)
            seconds = sum(r.ttft for r in self.requests)
        else:
            tokens = sum(r.completion_tokens - 1 for r in self.requests)
            seconds = sum(r.t_last - r.t_first for r in self.requests)
        return tokens / seconds if seconds > 0 else float("nan")

    def per_stream(self, name: str) -> list[float]:
        attr = "prefill_tps" if name == "prefill" else "decode_tps"
        return [getattr(r, attr) for r in sorted(self.requests, key=lambda r: r.stream)]

    def summation(self, name: str) -> str:
        """The report's form, e.g. ``30+17+27+17 ≈ 91 (sum); aggregate 25``."""
        rates = self.per_stream(name)
        parts = "+".join(f"{x:.3g}" for x in rates)
        if len(rates) == 1:
            return f"{rates[0]:.3g}"
        return f"{parts} ≈ {sum(rates):.3g} (sum of streams); true aggregate {self.metric(name):.3g}"

    def to_record(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "prefill_aggregate_tps": self.prefill_aggregate,
            "decode_aggregate_tps": self.decode_aggregate,
            "prefill_per_stream_tps": self.per_stream("prefill"),
            "decode_per_stream_tps": self.per_stream("decode"),
            "requests": [r.summary() for r in self.requests],
            "raw": [asdict(r) for r in self.requests],
            "resources": self.resources,
            "probe_cpu_s": self.probe_cpu_s,
            **({"server": self.server} if self.server else {}),
            **(
                {"client_per_request_tps": {m: self.per_request(m) for m in ("prefill", "decode")}}
                if self.server
                else {}
            ),
        }
