"""The throughput plot: this run beside the stored baseline (with its band) and a same-session
candidate (with the paired change), its texts inside the picture and apart.
"""

from __future__ import annotations

import json
import statistics
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_ktinterf.baseline.gate import same_session_check, throughput_check
from pytest_ktinterf.experiment import uncontended
from pytest_ktinterf.experiment.candidate import CANDIDATE, VERSUS
from pytest_ktinterf.measure.compare import Comparison, Trial
from pytest_ktinterf.report.plots import throughput_svg
from pytest_ktinterf.report.record import Report, median_round
from pytest_ktinterf.report.throughput_plot import has_throughput
from pytest_ktinterf.report.throughput_series import SERIES
from tests.report_records import SVG, fake_round, old_record

# -- the throughput plot: now vs baseline vs candidate --------------------------------------------


def ab_report(streams: int = 2) -> tuple[Report, Comparison]:
    """A session's report with rounds at 1 and 4 streams and a same-session A/B, built as the
    plugin builds it (``experiment.candidate.run``): the current server is the ``baseline`` arm,
    the candidate (slower here: longer decode spans, later first tokens) the ``condition`` arm."""
    report = Report(server={"description": "embedded llama-server", "url": "http://x", "cpus": "0"})
    for ttft, span in ((0.5, 0.2), (0.4, 0.3), (0.6, 0.25)):
        report.add_round(fake_round(1, ttft, span))
        report.add_round(fake_round(4, ttft, span))
    checks = [same_session_check(f"{CANDIDATE} {m}", m, 0.1, VERSUS) for m in ("prefill", "decode")]
    comparison = Comparison(
        label=f"the candidate server against {VERSUS}", streams=streams, expectations=checks
    )
    for i in range(8):
        comparison.trials.append(Trial("baseline", i, fake_round(streams, 0.5 + 0.01 * i, 0.25 + 0.003 * i)))
        comparison.trials.append(
            Trial("condition", i, fake_round(streams, 0.55 + 0.01 * i, 0.28 + 0.004 * i))
        )
    comparison.judge()
    comparison.id = CANDIDATE
    report.add_comparison(comparison)
    report.candidate = {"description": "server command 'new-server --port {port}'"}
    return report, comparison


def gate_report(report: Report) -> dict[tuple[int, str], Any]:
    """Add the uncontended gate's verdicts as ``experiment.uncontended`` records them; the baseline
    sessions are faster than now by 4% (pass) everywhere but decode at 1 stream (-23%: regressed).
    Returns the checks by (streams, metric)."""
    levels = {(1, "prefill"): 263.0, (1, "decode"): 28.8, (4, "prefill"): 720.0, (4, "decode"): 92.5}
    now = {(1, "prefill"): 252.0, (1, "decode"): 22.2, (4, "prefill"): 691.0, (4, "decode"): 88.8}
    checks = {
        (s, m): throughput_check(
            f"uncontended {m} at {s} stream{'s' if s > 1 else ''}",
            m,
            [[level * f * (1 + 0.01 * k) for k in range(6)] for f in (0.97, 1.0, 1.04)],
            0.1,
        )
        for (s, m), level in levels.items()
    }
    trials = {s: [{m: now[s, m] + 0.1 * k for m in ("prefill", "decode")} for k in range(6)] for s in (1, 4)}
    testbed = SimpleNamespace(report=report)
    uncontended._verdicts(testbed, [1, 4], {"prefill", "decode"}, trials, checks, None)  # type: ignore[arg-type]
    report.baseline.update({"mode": "compare", "file": "baselines/x.json", "sessions": 3})
    return checks


def plot_bars(svg: str) -> dict[tuple[str, str, int], ET.Element]:
    """The throughput plot's bars by (series, metric, streams); each key must be drawn once."""
    bars = ET.fromstring(svg).findall(f".//{SVG}rect[@class='bar']")
    keyed = {(b.get("data-series"), b.get("data-metric"), int(b.get("data-streams"))): b for b in bars}
    assert len(keyed) == len(bars), "a series drew two bars for one metric and stream count"
    return keyed  # type: ignore[return-value]


def legend_entries(svg: str) -> dict[str, str]:
    """The legend's swatches: fill colour -> the words beside it (the text that follows the swatch)."""
    children = list(ET.fromstring(svg))
    return {
        swatch.get("fill"): "".join(children[i + 1].itertext())
        for i, swatch in enumerate(children)
        if swatch.get("class") == "legend"
    }


def svg_texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_throughput_plot_draws_the_candidate_beside_the_current_server_with_the_paired_change() -> None:
    report, comparison = ab_report(streams=2)
    record = report.to_record()
    svg = throughput_svg(record)
    bars = plot_bars(svg)
    notes = [
        "".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "ab-change"
    ]
    for metric in ("prefill", "decode"):
        current = statistics.median(comparison.values("baseline", metric))
        candidate = statistics.median(comparison.values("condition", metric))
        assert candidate < 0.95 * current  # the data tell the arms apart: a swap would fail below
        assert float(bars["candidate", metric, 2].get("data-value")) == pytest.approx(candidate, rel=1e-5)
        assert float(bars["current", metric, 2].get("data-value")) == pytest.approx(current, rel=1e-5)
        assert bars["candidate", metric, 2].get("fill") == SERIES["candidate"][1]
        assert bars["current", metric, 2].get("fill") == SERIES["current"][1]
        change = f"candidate {comparison.ratio(metric).as_percent_change()}"  # e.g. -11% [-12%, -11%]
        assert change.startswith("candidate -")
        assert f"{change} at 2 streams" in notes
        assert f"{change} vs current (paired, 95% CI)" in bars["candidate", metric, 2].findtext(f"{SVG}title")
    assert notes == [n for n in notes if n.startswith("candidate -")] and len(notes) == 2
    # The A/B ran at 2 streams only: its bars stand there, this run's rounds at 1 and 4.
    assert sorted({k[2] for k in bars if k[0] in ("current", "candidate")}) == [2]
    assert sorted({k[2] for k in bars if k[0] == "now"}) == [1, 4]
    legend = legend_entries(svg)  # each colour named for what it shows, one entry per series drawn
    assert len(legend) == 3 and len({b.get("fill") for b in bars.values()}) == 3
    assert legend[bars["candidate", "decode", 2].get("fill")].startswith("candidate server")
    assert legend[bars["current", "decode", 2].get("fill")].startswith("current server")
    assert legend[bars["now", "decode", 1].get("fill")].startswith("this run")


def test_throughput_plot_draws_the_stored_baseline_with_its_band() -> None:
    report, _ = ab_report()
    checks = gate_report(report)
    record = json.loads(json.dumps(report.to_record()))  # as written to report.json
    svg = throughput_svg(record)
    bars = plot_bars(svg)
    for (streams, metric), check in checks.items():
        bar = bars["baseline", metric, streams]
        assert float(bar.get("data-value")) == pytest.approx(check.center, abs=0.051)  # the reason's 0.1
        assert bar.get("fill") == SERIES["baseline"][1]
        assert "3 sessions" in bar.findtext(f"{SVG}title")
    statuses = {(v["figure"], v["word"]) for v in record["baseline"]["verdicts"]}
    assert ("uncontended decode at 1 stream", "regressed") in statuses
    bands = ET.fromstring(svg).findall(f".//{SVG}g[@class='band']")  # one per stored figure
    assert len(bands) == len(checks)
    (band,) = [b for b in bands if b.get("data-metric") == "decode" and b.get("data-streams") == "1"]
    # The whisker spans the band on the bar's scale (pixels to tok/s through the bar's own height).
    bar = bars["baseline", "decode", 1]
    base, scale = float(bar.get("y")) + float(bar.get("height")), float(bar.get("height"))
    whisker = band.find(f"{SVG}line")
    drawn = [(base - float(whisker.get(k))) / scale * float(bar.get("data-value")) for k in ("y1", "y2")]
    assert drawn == pytest.approx(list(checks[1, "decode"].band), rel=0.01)
    texts = svg_texts(svg)
    baseline_words = legend_entries(svg)[bars["baseline", "decode", 1].get("fill")]
    assert baseline_words.startswith("baseline") and baseline_words.endswith("whisker: its unchanged band")
    assert len(legend_entries(svg)) == 4
    assert any(t.startswith("candidate -") for t in texts)  # the A/B is still drawn beside it


def test_throughput_plot_without_baseline_or_candidate_draws_only_this_run() -> None:
    record = old_record()
    svg = throughput_svg(record)
    bars = plot_bars(svg)
    expected = {
        ("now", m, s): median_round(rounds)[f"{m}_aggregate_tps"]
        for s, rounds in ((1, record["concurrency"]["1"]), (4, record["concurrency"]["4"]))
        for m in ("prefill", "decode")
    }
    assert {k: float(b.get("data-value")) for k, b in bars.items()} == pytest.approx(expected)
    root = ET.fromstring(svg)
    assert len(root.findall(f".//{SVG}line[@class='sum']")) == 2
    assert not root.findall(f".//{SVG}g[@class='band']")
    assert not [t for t in root.iter(f"{SVG}text") if t.get("class") == "ab-change"]
    assert list(legend_entries(svg).values()) == ["this run (median round)"]
    assert not any("baseline" in t or "candidate" in t for t in svg_texts(svg))


def test_throughput_plot_exists_for_any_series() -> None:
    report, _ = ab_report()
    report.rounds.clear()
    only_ab = report.to_record()
    assert has_throughput(only_ab) and set(k[0] for k in plot_bars(throughput_svg(only_ab))) == {
        "current",
        "candidate",
    }
    report.comparisons.clear()
    gate_report(report)
    only_baseline = report.to_record()
    assert has_throughput(only_baseline)
    assert {k[0] for k in plot_bars(throughput_svg(only_baseline))} == {"baseline"}
    assert not has_throughput({"concurrency": {}, "comparisons": [], "baseline": {}})


def text_box(element: ET.Element) -> tuple[float, float, float, float]:
    """A text's box (x0, y0, x1, y1), sized as the plots size labels (0.6 em a glyph, no font)."""
    size = float(element.get("font-size"))
    width = len("".join(element.itertext())) * size * 0.6
    x, y = float(element.get("x")), float(element.get("y"))
    x0 = {"start": x, "middle": x - width / 2, "end": x - width}[element.get("text-anchor")]
    return x0, y - 0.8 * size, x0 + width, y + 0.2 * size


def test_throughput_plot_texts_stay_inside_the_picture_and_apart() -> None:
    report, _ = ab_report()
    gate_report(report)
    root = ET.fromstring(throughput_svg(report.to_record()))
    width, height = float(root.get("width")), float(root.get("height"))
    boxes = [text_box(t) for t in root.iter(f"{SVG}text")]
    for x0, y0, x1, y1 in boxes:
        assert x0 >= 0 and x1 <= width and y0 >= 0 and y1 <= height
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
