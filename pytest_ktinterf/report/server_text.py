"""The report's "Client vs server": each condition's rates as the probe and as the server measured them.

Per condition and arm, over its counted rounds: the probe's rate in the server's own definition
(``RoundSample.per_request``) beside the server's (its ``/metrics``, else KT's ``Performance``
log lines, else llama.cpp's per-request ``timings``), their ratio (median and range over the
rounds), and a flag when the median ratio is further from 1 than the probe's known accuracy
(``measure.server_view.AGREEMENT``). Prefill is compared at one stream only: at more, the
client's time to first token includes waiting for the other streams' prompts, which no server
counts as prefill.
"""

from __future__ import annotations

import statistics
from typing import Any

from pytest_ktinterf.measure.comparison import ARMS
from pytest_ktinterf.measure.server_view import AGREEMENT
from pytest_ktinterf.report.record import is_finite, truncate
from pytest_ktinterf.report.section import Style

TITLE = (
    "Client vs server (tok/s as the probe measured / as the server counted; ratio median [range] over rounds)"
)
SOURCES = ("metrics", "kt_log", "timings")


def _rounds(trial: dict[str, Any]) -> list[dict[str, Any]]:
    return [trial, *(trial.get("more_rounds") or [])]


def server_rate(round_record: dict[str, Any], metric: str) -> tuple[str, float] | None:
    """The server's own rate for a round and where it came from, or None when it gave none."""
    own = round_record.get("server") or {}
    for source in SOURCES[:2]:
        value = (own.get(source) or {}).get(f"{metric}_tps")
        if is_finite(value):
            return source, float(value)
    timed = [r.get(f"server_{metric}_tps") for r in round_record.get("requests") or []]
    if timed and all(is_finite(v) for v in timed):
        return "timings", statistics.median(float(v) for v in timed)
    return None


def client_rate(round_record: dict[str, Any], metric: str) -> float | None:
    """The probe's rate for the round in the server's definition (per-request, or the median request's)."""
    value = (round_record.get("client_per_request_tps") or {}).get(metric)
    if is_finite(value):
        return float(value)
    rates = [r.get(f"{metric}_tps") for r in round_record.get("requests") or []]
    kept = [float(v) for v in rates if is_finite(v)]
    return statistics.median(kept) if kept else None


def agreement(trials: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """Client and server medians, the ratio's median and range, and the source, over the trials' rounds."""
    pairs, sources = [], set()
    for trial in trials:
        for record in _rounds(trial):
            server, client = server_rate(record, metric), client_rate(record, metric)
            if server is not None and client is not None and server[1] > 0:
                pairs.append((client, server[1]))
                sources.add(server[0])
    if not pairs:
        return None
    ratios = [s / c for c, s in pairs]
    median = statistics.median(ratios)
    return {
        "source": "+".join(sorted(sources)),
        "client": statistics.median(c for c, _ in pairs),
        "server": statistics.median(s for _, s in pairs),
        "ratio": median,
        "range": (min(ratios), max(ratios)),
        "rounds": len(pairs),
        "disagrees": abs(median - 1) > AGREEMENT[metric],
    }


GAUGES = (("running_max", "running {:.0f}"), ("queued_max", "queued {:.0f}"), ("kv_use_max", "KV {:.0%}"))


def held(trials: list[dict[str, Any]]) -> str:
    """The most the server was seen holding over the arm's rounds: requests running, requests
    queued, KV cache use (its gauges, scraped during each round).

    Queued above 0 means some requests waited for a slot: at N streams the server did not run
    all N at once (too few slots, ``--parallel``), and the "aggregate" is not N concurrent ones.
    """
    most: dict[str, float] = {}
    for trial in trials:
        for record in _rounds(trial):
            metrics = (record.get("server") or {}).get("metrics") or {}
            for key, _ in GAUGES:
                if is_finite(metrics.get(key)):
                    most[key] = max(most.get(key, 0.0), float(metrics[key]))
    return ", ".join(text.format(most[key]) for key, text in GAUGES if key in most) or "-"


def _cell(found: dict[str, Any] | None) -> str:
    if found is None:
        return "-"
    lo, hi = found["range"]
    flag = " DISAGREE" if found["disagrees"] else ""
    return f"{found['client']:.3g} / {found['server']:.3g}: {found['ratio']:.3f} [{lo:.3f}, {hi:.3f}]{flag}"


def server_lines(comparisons: list[dict[str, Any]], style: Style) -> list[str]:
    """The table, one row per condition and arm; nothing when no round has a server figure."""
    rows = []
    for comparison in comparisons:
        name = truncate(str(comparison.get("id") or comparison.get("label") or "?"))
        one_stream = int(comparison.get("streams") or 1) == 1
        for arm in ARMS:
            trials = [t for t in comparison.get("trials") or [] if t.get("arm") == arm]
            decode = agreement(trials, "decode")
            prefill = agreement(trials, "prefill") if one_stream else None
            if decode is None and prefill is None:
                continue
            source = (decode or prefill or {}).get("source", "-")
            prefill_cell = _cell(prefill) if one_stream else "(1 stream only)"
            rows.append([name, arm, source, _cell(decode), prefill_cell, held(trials)])
    if not rows:
        return []
    accuracy = ", ".join(f"{m} {100 * a:.0f}%" for m, a in AGREEMENT.items())
    return [
        "",
        style.title(TITLE),
        *style.table(
            ["condition", "arm", "server's figures", "decode", "prefill", "server held (most seen)"], rows
        ),
        f"DISAGREE: the median ratio is further from 1 than the probe's known accuracy ({accuracy}); "
        "a prefill the server counts far faster than the probe's time to first token says the prompt "
        "is too short for TTFT to time prefill (HTTP and tokenisation dominate: raise --kt-prompt-tokens). "
        "Server held: its gauges, scraped during the rounds; queued above 0 means requests waited for a slot",
    ]
