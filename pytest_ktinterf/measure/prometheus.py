"""A server's Prometheus ``/metrics``: the text format, and what each engine calls its counters.

The server's own view of a round is the difference of its counters between a scrape just before
the round and one just after it, so it covers exactly the round's requests when no one else uses
the server (checked: the tokens it counted must be the tokens the probe received). Gauges
(requests running, queued, KV-cache use) are sampled at a fixed interval in between.

Rates follow each engine's own definition, and the probe computes the same quantity from the
same requests (``RoundSample.per_request``) for the cross-check:

* llama.cpp (``--metrics``) counts the seconds it spent on prompts and on generation, so
  prefill = prompt tokens / prompt seconds and decode = (generated tokens - one per request) /
  generation seconds: its timer starts when the first token is out, as its own
  ``predicted_per_second`` does;
* SGLang (KT's current server, ``--enable-metrics``) and vLLM keep histograms of time to first
  token and time per output token, so prefill = prompt tokens / summed TTFT (queueing included)
  and decode = 1 / the mean time per output token (a stream's rate).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, summed over label sets, by name.

    Histogram buckets are dropped (``_sum`` and ``_count`` are what rates need); a value that is
    not a number is skipped, never an error: a scrape must not fail a measurement.
    """
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE.match(line)
        if found is None or found.group(1).endswith("_bucket"):
            continue
        try:
            value = float(found.group(3))
        except ValueError:
            continue
        if math.isfinite(value):
            values[found.group(1)] = values.get(found.group(1), 0.0) + value
    return values


@dataclass(frozen=True)
class Names:
    """One engine's metric names (None: it has no such metric)."""

    engine: str
    prompt_tokens: str
    generated_tokens: str
    prompt_seconds: str | None = None  # counters of time spent (llama.cpp)
    generated_seconds: str | None = None
    ttft: str | None = None  # histograms (their _sum and _count)
    tpot: str | None = None
    running: str | None = None
    queued: str | None = None
    kv_use: str | None = None  # a ratio 0..1 of the KV cache in use


ENGINES = (
    Names(
        engine="llama.cpp",
        prompt_tokens="llamacpp:prompt_tokens_total",
        generated_tokens="llamacpp:tokens_predicted_total",
        prompt_seconds="llamacpp:prompt_seconds_total",
        generated_seconds="llamacpp:tokens_predicted_seconds_total",
        running="llamacpp:requests_processing",
        queued="llamacpp:requests_deferred",
        kv_use="llamacpp:kv_cache_usage_ratio",
    ),
    Names(
        engine="sglang",
        prompt_tokens="sglang:prompt_tokens_total",
        generated_tokens="sglang:generation_tokens_total",
        ttft="sglang:time_to_first_token_seconds",
        tpot="sglang:time_per_output_token_seconds",
        running="sglang:num_running_reqs",
        queued="sglang:num_queue_reqs",
        kv_use="sglang:token_usage",
    ),
    Names(
        engine="vllm",
        prompt_tokens="vllm:prompt_tokens_total",
        generated_tokens="vllm:generation_tokens_total",
        ttft="vllm:time_to_first_token_seconds",
        tpot="vllm:time_per_output_token_seconds",
        running="vllm:num_requests_running",
        queued="vllm:num_requests_waiting",
        kv_use="vllm:kv_cache_usage_perc",
    ),
)


def engine_of(values: dict[str, float]) -> Names | None:
    """Whose metrics these are, by their token counters; None for an engine we do not know."""
    for names in ENGINES:
        if names.prompt_tokens in values and names.generated_tokens in values:
            return names
    return None


def _delta(before: dict[str, float], after: dict[str, float], name: str | None) -> float | None:
    if name is None or name not in before or name not in after:
        return None
    return after[name] - before[name]


def _histogram_mean(before: dict[str, float], after: dict[str, float], name: str | None) -> float | None:
    """The mean of what a histogram observed between two scrapes (None when it observed nothing)."""
    if name is None:
        return None
    total, count = _delta(before, after, f"{name}_sum"), _delta(before, after, f"{name}_count")
    return total / count if total is not None and count else None


def rates(
    names: Names, before: dict[str, float], after: dict[str, float], requests: int
) -> dict[str, float | None]:
    """The server's token counts and prefill/decode tok/s between two scrapes of ``requests`` requests."""
    prompt = _delta(before, after, names.prompt_tokens)
    generated = _delta(before, after, names.generated_tokens)
    prefill = decode = None
    prompt_s = _delta(before, after, names.prompt_seconds)
    generated_s = _delta(before, after, names.generated_seconds)
    if prompt is not None and prompt_s:
        prefill = prompt / prompt_s
    elif prompt is not None and (ttft := _histogram_mean(before, after, names.ttft)):
        count = _delta(before, after, f"{names.ttft}_count") or 1.0
        prefill = prompt / (ttft * count)
    if generated is not None and generated_s:
        decode = (generated - requests) / generated_s
    elif tpot := _histogram_mean(before, after, names.tpot):
        decode = 1.0 / tpot
    return {
        "prompt_tokens": prompt,
        "generated_tokens": generated,
        "prefill_tps": prefill,
        "decode_tps": decode,
    }
