"""The report's pictures and Markdown: the effects plot (a dot per comparison and metric, the band
each hard claim accepts), the throughput bars, ticks and titles, report.md with its co-location advice.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.report.markdown import HARMFUL, OPEN, SAFE, advice_class, advice_lines, write_markdown
from pytest_ktinterf.report.plots import COLOURS, effects_svg, throughput_svg, write_plots
from pytest_ktinterf.report.svg import fit, nice_ticks
from pytest_ktinterf.report.text import INTERFERENCE_TITLE
from tests.report_records import SVG, new_record, old_record


def test_effects_svg_draws_one_dot_per_comparison_and_metric() -> None:
    record = new_record()
    record["server"]["description"] = "KT <DeepSeek> & friends"
    svg = effects_svg(record)
    root = ET.fromstring(svg)
    dots = root.findall(f".//{SVG}circle[@class='dot']")
    assert sorted(d.get("data-metric") for d in dots) == ["decode", "decode", "prefill", "prefill", "prefill"]
    assert len(root.findall(f".//{SVG}line[@class='ci']")) == 5
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert any("KT <DeepSeek> & friends" in t for t in texts)
    assert any(t.startswith("RAM streamed by a co-runner") and t.endswith("(4 streams)") for t in texts)
    assert "0%" in texts and len(root.findall(f".//{SVG}line[@class='no-change']")) == 2
    # The dot sits where its ratio says: -20% prefill lies left of the 0% line.
    (zero, *_), spare_prefill = root.findall(f".//{SVG}line[@class='no-change']"), dots[0]
    assert float(spare_prefill.get("cx")) < float(zero.get("x1"))


def test_throughput_svg_has_a_bar_per_concurrency_and_metric() -> None:
    root = ET.fromstring(throughput_svg(old_record()))
    bars = root.findall(f".//{SVG}rect[@class='bar']")
    assert sorted(b.get("data-metric") for b in bars) == ["decode", "decode", "prefill", "prefill"]
    assert len(root.findall(f".//{SVG}line[@class='sum']")) == 2  # only the 4-stream rounds have a sum


def test_write_plots_writes_only_plots_with_data(tmp_path: Path) -> None:
    assert write_plots({"comparisons": [], "concurrency": {}}, tmp_path) == []
    rounds_only = copy.deepcopy(old_record())
    rounds_only["comparisons"] = []
    assert write_plots(rounds_only, tmp_path) == [tmp_path / "throughput.svg"]
    written = write_plots(new_record(), tmp_path / "sub")
    assert [p.name for p in written] == ["effects.svg", "throughput.svg"]
    for path in written:
        ET.parse(path)


@given(st.floats(-1e6, 1e6), st.floats(0, 1e6))
@settings(max_examples=200, deadline=None)
def test_nice_ticks_cover_the_range(lo: float, span: float) -> None:
    ticks = nice_ticks(lo, lo + span)
    slack = 1e-6 * max(1.0, abs(lo), span)  # float rounding relative to the axis, not to lo alone
    assert ticks[0] <= lo + slack and ticks[-1] >= lo + span - slack
    assert 2 <= len(ticks) <= 12


def test_markdown_report_has_the_tables_the_gate_and_the_plots_by_name(tmp_path: Path) -> None:
    record = new_record()
    record["candidate"] = {"description": "server command 'new'", "url": "http://127.0.0.1:2", "identity": {}}
    plots = write_plots(record, tmp_path)
    text = write_markdown(record, tmp_path / "report.md", plots).read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# pytest-ktinterf report")
    assert any(line.startswith("- candidate: server command 'new' at http://127.0.0.1:2") for line in lines)
    title = lines.index(f"### {INTERFERENCE_TITLE}")
    assert lines[title + 1] == "" and lines[title + 2].startswith("| condition | streams | pairs | prefill |")
    assert lines[title + 3].startswith("|---|---|") and all(
        line.startswith("| ") and line.endswith(" |")
        for line in lines[title + 4 : title + 4 + len(record["comparisons"])]
    )
    assert lines[title + 4 + len(record["comparisons"])] == ""  # else the notes below read as rows
    assert "![effects](effects.svg)" in lines and "![throughput](throughput.svg)" in lines


@given(st.text(min_size=0, max_size=300), st.floats(50, 2000), st.sampled_from([11, 12, 16]), st.booleans())
def test_titles_are_cut_to_their_picture_with_an_ellipsis(
    title: str, width: float, size: int, bold: bool
) -> None:
    shown = fit(title, width, size, bold)
    most = max(4, int(width / (size * (0.66 if bold else 0.6))))
    if len(title) <= most:
        assert shown == title
    else:
        assert len(shown) == most and shown.endswith("…") and title.startswith(shown[:-1])


def test_a_long_server_name_does_not_run_off_the_throughput_plot() -> None:
    record = old_record()
    record["server"]["description"] = "embedded llama-server (" + "x" * 200 + ".gguf)"
    (title,) = re.findall(r'font-weight="bold">([^<]*)</text>', throughput_svg(record))[:1]
    width = float(re.search(r'<svg[^>]* width="([0-9.]+)"', throughput_svg(record)).group(1))
    assert title.endswith("…") and 14 + len(title) * 16 * 0.66 <= width


def _job(prefill: tuple[float, float, float], decode: tuple[float, float, float]) -> dict[str, Any]:
    ratios = {
        m: dict(zip(("point", "lo", "hi"), r, strict=True))
        for m, r in (("prefill", prefill), ("decode", decode))
    }
    return {"ratios": ratios, "trials": [{"arm": "condition", "actor": {"kind": "cpu"}}]}


@pytest.mark.parametrize(
    ("prefill", "decode", "where"),
    [
        ((0.5, 0.4, 0.6), (1.0, 0.9, 1.1), HARMFUL),  # one metric's whole interval 10% or more down
        ((0.95, 0.89, 0.9), (1.0, 0.95, 1.05), HARMFUL),  # exactly at the bound
        ((0.99, 0.9, 1.1), (1.0, 0.86, 1.14), SAFE),  # both within 15%
        ((0.99, 0.84, 1.1), (1.0, 0.9, 1.1), OPEN),  # reaches past 15%, not shown down by 10%
    ],
)
def test_colocation_advice_uses_the_vocabulary_bounds(prefill, decode, where) -> None:  # type: ignore[no-untyped-def]
    assert advice_class(_job(prefill, decode)) == where


def test_colocation_advice_lists_jobs_only() -> None:
    job = {
        **_job((0.5, 0.4, 0.6), (0.5, 0.4, 0.6)),
        "id": "cpu_server",
        "label": "CPU stress",
        "status": "complete",
    }
    streams = {**job, "id": "concurrency", "trials": [{"arm": "condition", "actor": None}]}
    lines = advice_lines({"comparisons": [job, streams]})
    assert any(line.startswith("- cpu_server: CPU stress (prefill -50% [-60%, -40%]") for line in lines)
    assert not any("concurrency" in line for line in lines)


def test_effects_plot_shades_what_each_hard_claim_accepts_and_never_reddens_a_report_cell() -> None:
    record = new_record()
    first = record["comparisons"][0]
    first["claimed"] = {"prefill": [0.0, 0.9], "decode": [0.85, 1.15]}
    first["reference_effect"] = {"decode": -0.56}
    first["verdicts"] = [
        {"metric": "prefill", "kind": "report", "status": "fail", "word": "differs"},
        {"metric": "decode", "kind": "expect", "status": "pass", "word": "pass"},
    ]
    svg = effects_svg(record)
    shaded = re.findall(r'<rect class="claimed" x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)"', svg)
    assert len(shaded) == 2 and all(float(w) > 0 for _, w in shaded)
    assert svg.count('class="report-effect"') == 1 and "the report measured -56% (decode)" in svg
    assert "the report's own effect (its machine)" in svg
    dots: dict[str, str] = {}
    pattern = r'<circle class="dot" data-metric="(\w+)" cx="[0-9.]+" cy="[0-9.]+" r="4.5" fill="(#\w+)"'
    for metric, colour in re.findall(pattern, svg):
        dots.setdefault(metric, colour)  # the first row's
    assert dots["prefill"] == COLOURS[None] and dots["decode"] == COLOURS["pass"]  # first row's dots
