"""The report as text: the seed report's tables, measured, rendered from a JSON record.

Rendering works on the record only (never on live objects), so what is printed is exactly
what was recorded, and a record written yesterday or merged from xdist workers renders alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pytest_ktinterf.report.record import (
    TABLE_METRICS,
    comparison_status,
    concurrency_rounds,
    condition_pairs,
    is_finite,
    median_round,
    percent_change,
    truncate,
    verdict_status,
)
from pytest_ktinterf.report.server_text import server_lines
from pytest_ktinterf.report.time_text import time_lines
from pytest_ktinterf.server.identity import describe

# The seed report's matrix in its own words, as the interference table shows them.
REFERENCE_WORDS = {
    "degraded": "yes",
    "collapsed": "yes (collapse)",
    "unaffected": "no",
    "improved": "better",
}


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MiB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    return [line(header), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub-flavoured table between blank lines: a table must not touch the paragraph above,
    and a line right below it would be read as one more row."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return ["", line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows), ""]


@dataclass(frozen=True)
class Style:
    """How a section's title and table are written: aligned text for the terminal, or Markdown."""

    table: Callable[[list[str], list[str]], list[str]] = _table
    title: Callable[[str], str] = str


TEXT = Style()
MARKDOWN = Style(table=markdown_table, title=lambda text: f"### {text}")


def summation(per_stream: list[float], aggregate: float) -> str:
    """The report's form, e.g. ``30+17+27+17 ≈ 91 (sum of streams); true aggregate 25``.

    The sum is only ever shown beside the true aggregate: it overstates throughput when the
    streams take turns on the same cores.
    """
    if len(per_stream) == 1:
        return f"{per_stream[0]:.3g}"
    if not per_stream:
        return f"{aggregate:.3g}" if is_finite(aggregate) else "-"
    parts = "+".join(f"{x:.3g}" for x in per_stream)
    return f"{parts} ≈ {sum(per_stream):.3g} (sum of streams); true aggregate {aggregate:.3g}"


def streams_cell(comparison: dict[str, Any]) -> str:
    """``4``, or ``4 vs 1`` when the baseline arm ran at another concurrency; ``1, 16 tokens out``
    when the condition set its own output length (both arms)."""
    streams, baseline = comparison.get("streams", "?"), comparison.get("baseline_streams")
    cell = f"{streams}" if baseline in (None, streams) else f"{streams} vs {baseline}"
    tokens = comparison.get("max_tokens")
    return cell if tokens is None else f"{cell}, {tokens} tokens out"


def _switches(record: dict[str, Any]) -> str:
    """What taking turns cost (``--kt-candidate-residency alternate``): the reader weighs it."""
    starts = [s for c in record.get("comparisons", []) for s in c.get("server_starts", [])]
    if not starts:
        return ""
    seconds = sorted(s.get("start_s", 0.0) + s.get("warm_up_s", 0.0) for s in starts)
    total = (record.get("candidate") or {}).get("server_starts")
    return (
        f"; started in turns with the server (never both resident): {len(starts)} switches during "
        f"the pairs, median {seconds[len(seconds) // 2]:.1f} s each with its warm-up"
        + (f"; {total} server starts in the session" if total else "")
    )


def header_lines(record: dict[str, Any]) -> list[str]:
    """The server, the candidate (A/B) and the workload, one line each."""
    out: list[str] = []
    server = record.get("server") or {}
    if server:
        out.append(
            f"server: {server.get('description')} at {server.get('url')}"
            f"; cores {server.get('cpus') or 'unknown'}"
            + (f"; {server['threads']} threads" if server.get("threads") else "")
            + (f"; {server['parallel']} slots" if server.get("parallel") else "")
        )
    candidate = record.get("candidate") or {}
    if candidate:  # same-session A/B (experiment/candidate.py): its identity, beside the server's
        out.append(
            f"candidate: {candidate.get('description')} at {candidate.get('url')}"
            f"; {describe(candidate.get('identity') or {})}" + _switches(record)
        )
    w = record.get("workload") or {}
    if w:
        out.append(
            f"workload: {w.get('prompt_tokens')} prompt tokens, {w.get('max_tokens')} generated "
            f"(ignore_eos), /v1/{'chat/completions' if w.get('api') == 'chat' else 'completions'}"
        )
    return out


def _throughput_lines(levels: list[tuple[int, list[dict[str, Any]]]], style: Style = TEXT) -> list[str]:
    rows = []
    for streams, rounds in levels:
        middle = median_round(rounds)
        rows.append(
            [
                str(streams),
                str(len(rounds)),
                *(
                    summation(list(middle.get(f"{m}_per_stream_tps") or []), middle.get(f"{m}_aggregate_tps"))
                    for m in TABLE_METRICS
                ),
            ]
        )
    return [
        "",
        style.title("Throughput (tokens/s; median round of each concurrency)"),
        *style.table(["streams", "rounds", "prefill", "decode"], rows),
    ]


def _memory_lines(levels: list[tuple[int, list[dict[str, Any]]]], style: Style = TEXT) -> list[str]:
    rows = []
    for streams, rounds in levels:
        res = [r["resources"] for r in rounds if r.get("resources")]
        if not res:
            continue

        def peak(key: str, found: list[dict[str, Any]] = res) -> float | None:
            vals = [r[key] for r in found if r.get(key) is not None]
            return max(vals) if vals else None

        gpu = res[-1].get("gpu", "")
        rows.append(
            [
                str(streams),
                _mib(peak("ram_used_peak_mib")),
                _mib(peak("server_rss_peak_mib")),
                _mib(peak("swap_used_peak_mib")),
                _mib(peak("vram_used_peak_mib")) if gpu == "present" else gpu,
            ]
        )
    return [
        "",
        style.title("Memory while measuring (peak)"),
        *style.table(["streams", "host RAM used", "server RSS", "swap used", "VRAM"], rows),
    ]


def _metric_order(keys: Iterable[str]) -> list[str]:
    """prefill and decode first (the table's columns), then the rest alphabetically."""
    keys = list(keys)
    return [m for m in TABLE_METRICS if m in keys] + sorted(k for k in keys if k not in TABLE_METRICS)


def _kind(verdict: dict[str, Any]) -> str:
    """``expect``, ``report`` or ``gate``; older records have no kind: all were claims."""
    return str(verdict.get("kind") or "expect")


def _word(verdict: dict[str, Any]) -> str:
    """The status in its kind's words (``agrees``, ``regressed``); older records: the status."""
    return str(verdict.get("word") or verdict_status(verdict))


def _off_table(metric: str, ratios: dict[str, Any]) -> str:
    """The measured change of a metric without a column of its own (ram, vram, ...), else nothing."""
    return f" ({percent_change(ratios[metric])})" if metric not in TABLE_METRICS and metric in ratios else ""


def report_says(comparison: dict[str, Any]) -> str:
    """``prefill yes: differs / decode no: agrees``: the report's matrix row, each cell followed
    by what this machine's interval says of it (an older record, or a cell not judged: the word).
    """
    reference = comparison.get("reference") or {}
    ratios = comparison.get("ratios") or {}
    judged = {v.get("metric"): v for v in comparison.get("verdicts") or [] if _kind(v) == "report"}
    words = []
    for metric in _metric_order(set(TABLE_METRICS) | set(reference)):
        said = reference.get(metric)
        text = f"{metric} {REFERENCE_WORDS.get(str(said), str(said)) if said else '-'}"
        if metric in judged:
            text += f": {_word(judged[metric])}{_off_table(metric, ratios)}"
        words.append(text)
    return " / ".join(words)


def _verdict_cell(comparison: dict[str, Any]) -> str:
    """The claims' verdicts as ``STATUS metric expectation`` (the report's cells have their own
    column) and the gates' (baseline, or same-session A/B) as ``gate REGRESSED ...``; off-table
    ratios ride along."""
    status = comparison_status(comparison)
    if status != "complete":
        return f"{status.upper()} after {_count(condition_pairs(comparison), 'pair')}, not judged"
    ratios = comparison.get("ratios") or {}
    parts = []
    verdicts = comparison.get("verdicts") or []
    for v in verdicts:
        if _kind(v) == "report":
            continue
        metric = str(v.get("metric", "?"))
        prefix = "gate " if _kind(v) == "gate" else ""
        text = f"{prefix}{_word(v).upper()} {metric} {v.get('expectation', '')}".rstrip()
        parts.append(text + _off_table(metric, ratios))
    if parts:
        return "; ".join(parts)
    expected = comparison.get("expected") or {}
    if expected:
        asked = "; ".join(f"{m} {expected[m]}" for m in _metric_order(expected))
        return f"(not checked: expected {asked})"
    return "(no claim: the report's cells only)" if verdicts else "(no expectation)"


TAIL_SHOWN = 5
INTERFERENCE_TITLE = (
    "Interference (condition / baseline: Hodges-Lehmann change over interleaved pairs, "
    "[exact CI, 95% over the looks])"
)
REPORT_LEGEND = [
    "report says: the report's matrix cell, then whether this machine's interval agrees, differs",
    "or is undecided, judged with the same bounds; never a failure here (the report measured another",
    "machine). The verdict column holds the claims that hold on any machine, and the baseline gate.",
]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _abort_notes(comparison: dict[str, Any], name: str) -> list[str]:
    """Why a comparison stopped part-way, and the server's state and last log lines.

    The first line of the recorded tail says whether the server was still running; the last
    lines are usually the cause. The whole tail is in the JSON record.
    """
    status = comparison_status(comparison)
    if status == "complete":
        return []
    finished = _count(condition_pairs(comparison), "finished pair")
    out = [f"{name}: {status} after {finished}: {comparison.get('reason') or 'no reason recorded'}"]
    tail = [row for row in str(comparison.get("log_tail") or "").rstrip().splitlines() if row.strip()]
    if tail:
        shown = tail if len(tail) <= TAIL_SHOWN + 1 else [tail[0], "…", *tail[-TAIL_SHOWN:]]
        out += ["    " + row for row in shown]
    unpaired = len(comparison.get("unpaired_trials") or [])
    if unpaired:
        out.append(f"    {_count(unpaired, 'trial')} of the unfinished pair kept in the JSON record")
    return out


def _interference_lines(comparisons: list[dict[str, Any]], style: Style = TEXT) -> list[str]:
    with_reference = any(c.get("reference") for c in comparisons)
    header = ["condition", "streams", "pairs", *TABLE_METRICS]
    header += ["report says"] if with_reference else []
    header += ["verdict"]
    rows, notes, experiments = [], [], []
    for cmp in comparisons:
        label = truncate(str(cmp.get("label", "?")))
        name = f"{cmp['id']}: {label}" if cmp.get("id") else label
        ratios = cmp.get("ratios") or {}
        row = [name, streams_cell(cmp), str(condition_pairs(cmp))]
        row += [percent_change(ratios.get(m)) for m in TABLE_METRICS]
        row += [report_says(cmp) if cmp.get("reference") else "-"] if with_reference else []
        row += [_verdict_cell(cmp)]
        rows.append(row)
        notes += _abort_notes(cmp, str(cmp.get("id") or label))
        if cmp.get("experiment") and cmp["experiment"] not in experiments:
            experiments.append(cmp["experiment"])
    out = [
        "",
        style.title(INTERFERENCE_TITLE),
        *style.table(header, rows),
    ]
    if experiments:
        out.append(f"conditions from: {', '.join(str(e) for e in experiments)}")
    if any(_kind(v) == "report" for c in comparisons for v in c.get("verdicts") or []):
        out += REPORT_LEGEND
    out += notes
    return out


def render_lines(record: dict[str, Any], style: Style = TEXT) -> list[str]:
    """The report's text (server, throughput, memory and interference tables) from a record.

    Pure: the record (``Report.to_record()``, a JSON file read back, or ``merge_records``) is
    all it reads. Optional keys that older records lack (reference, expected, id, status, ...)
    only add columns and notes when present.
    """
    out = header_lines(record)
    levels = concurrency_rounds(record)
    if levels:
        out += _throughput_lines(levels, style)
        out += _memory_lines(levels, style)
    comparisons = record.get("comparisons") or []
    if comparisons:
        out += _interference_lines(comparisons, style)
        out += server_lines(comparisons, style)
        out += time_lines(comparisons, style)
    return out
