"""The report renders from its JSON record alone, merges across xdist workers, and plots as SVG.

No server here: records are made by hand (old ones, without the matrix keys, and new ones with
them), so what is checked is the rendering, not a measurement.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.baseline.gate import same_session_check, throughput_check
from pytest_ktinterf.experiment import uncontended
from pytest_ktinterf.experiment.candidate import CANDIDATE, VERSUS
from pytest_ktinterf.measure.compare import Comparison, Trial
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.report.markdown import HARMFUL, OPEN, SAFE, advice_class, advice_lines, write_markdown
from pytest_ktinterf.report.plots import COLOURS, effects_svg, throughput_svg, write_plots
from pytest_ktinterf.report.record import Report, median_round, merge_records
from pytest_ktinterf.report.svg import fit, nice_ticks
from pytest_ktinterf.report.text import INTERFERENCE_TITLE, render_lines
from pytest_ktinterf.report.throughput_plot import has_throughput
from pytest_ktinterf.report.throughput_series import SERIES

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parent.parent


def round_record(
    streams: int, prefill: list[float], decode: list[float], ram: float = 1000.0
) -> dict[str, Any]:
    """A round as ``RoundSample.to_record`` writes it (the fields the report reads)."""
    return {
        "streams": streams,
        "prefill_aggregate_tps": sum(prefill) * 0.8,
        "decode_aggregate_tps": sum(decode) * 0.8,
        "prefill_per_stream_tps": prefill,
        "decode_per_stream_tps": decode,
        "resources": {"ram_used_peak_mib": ram, "server_rss_peak_mib": 300.0, "gpu": "absent"},
    }


def ratio(point: float, lo: float, hi: float) -> dict[str, float]:
    return {"point": point, "lo": lo, "hi": hi, "confidence": 0.95}


def trials(pairs: int) -> list[dict[str, Any]]:
    return [{"arm": arm, "index": i} for i in range(pairs) for arm in ("baseline", "condition")]


def old_record() -> dict[str, Any]:
    """A record as written before the matrix keys existed: verdicts only say ``passed``."""
    return {
        "format": "pytest-ktinterf report v1",
        "server": {"description": "llama-server SmolLM2", "url": "http://127.0.0.1:1", "cpus": "1"},
        "workload": {"api": "chat", "prompt_tokens": 128, "max_tokens": 64},
        "concurrency": {
            "1": [round_record(1, [500.0], [30.0]), round_record(1, [510.0], [31.0], ram=1100.0)],
            "4": [round_record(4, [400.0, 410.0, 420.0, 430.0], [20.0, 21.0, 22.0, 23.0])],
        },
        "comparisons": [
            {
                "label": "CPU stress on spare cores",
                "streams": 1,
                "ratios": {"prefill": ratio(0.95, 0.69, 1.11), "decode": ratio(0.97, 0.85, 1.09)},
                "verdicts": [],
                "trials": trials(6),
            },
            {
                "label": "CPU stress on the server's cores",
                "streams": 1,
                "ratios": {"prefill": ratio(0.51, 0.39, 0.53), "decode": ratio(0.44, 0.41, 0.50)},
                "verdicts": [
                    {"metric": "prefill", "expectation": "degraded by at least 25%", "passed": True},
                    {"metric": "decode", "expectation": "degraded by at least 25%", "passed": False},
                ],
                "trials": trials(6),
            },
        ],
    }


LONG_LABEL = 'RAM streamed by a co-runner on the spare cores, 2 GiB, with <odd> & "quoted" words'


def new_record() -> dict[str, Any]:
    """A record with the seed report's matrix beside each measurement."""
    record = old_record()
    record["comparisons"] = [
        {
            "id": "cpu_spare",
            "experiment": "experiments/seed_report.toml",
            "label": "CPU stress on spare cores",
            "streams": 1,
            "pairs": 10,
            "reference": {"prefill": "degraded", "decode": "unaffected"},
            "expected": {"prefill": "degraded by at least 10%", "decode": "unaffected within 15%"},
            "ratios": {
                "prefill": ratio(0.80, 0.70, 0.88),
                "decode": ratio(0.95, 0.82, 1.04),
                "ram": ratio(1.25, 1.20, 1.30),
            },
            "verdicts": [
                {
                    "metric": "prefill",
                    "expectation": "degraded by at least 10%",
                    "status": "pass",
                    "passed": True,
                },
                {
                    "metric": "decode",
                    "expectation": "unaffected within 15%",
                    "status": "inconclusive",
                    "passed": False,
                },
                {
                    "metric": "ram",
                    "expectation": "increased by at least 10%",
                    "status": "pass",
                    "passed": True,
                },
            ],
            "trials": trials(10),
        },
        {
            "id": "ram_stream",
            "experiment": "experiments/seed_report.toml",
            "label": LONG_LABEL,
            "streams": 4,
            "baseline_streams": 1,
            "reference": {"prefill": "collapsed", "decode": "improved"},
            "expected": {"decode": "degraded by at least 20%"},
            "ratios": {"prefill": ratio(0.10, 0.05, 0.20), "decode": ratio(1.10, 0.90, 1.30)},
            "verdicts": [
                {
                    "metric": "decode",
                    "expectation": "degraded by at least 20%",
                    "status": "fail",
                    "passed": False,
                }
            ],
            "trials": trials(6),
        },
        {
            "label": "GPU compute",
            "streams": 1,
            "reference": {"prefill": "unaffected"},
            "ratios": {"prefill": ratio(1.0, 0.9, 1.1)},
            "verdicts": [],
            "trials": trials(6),
        },
    ]
    return record


def table(lines: list[str], title: str) -> list[list[str]]:
    """The rows (cells stripped) of the table under ``title``, header first, the -+- rule dropped."""
    start = lines.index(title) + 1
    rows = [lines[start]]
    for line in lines[start + 2 :]:
        if " | " not in line:
            break
        rows.append(line)
    return [[cell.strip() for cell in row.split(" | ")] for row in rows]


INTERFERENCE = (
    "Interference (condition / baseline: Hodges-Lehmann change over interleaved pairs, "
    "[exact CI, 95% over the looks])"
)


def test_old_record_renders_as_before() -> None:
    lines = render_lines(old_record())
    assert lines[0] == "server: llama-server SmolLM2 at http://127.0.0.1:1; cores 1"
    assert lines[1] == "workload: 128 prompt tokens, 64 generated (ignore_eos), /v1/chat/completions"
    throughput = table(lines, "Throughput (tokens/s; median round of each concurrency)")
    assert throughput[0] == ["streams", "rounds", "prefill", "decode"]
    assert throughput[1] == ["1", "2", "500", "30"]  # median_low of the decode aggregates
    assert throughput[2][2] == "400+410+420+430 ≈ 1.66e+03 (sum of streams); true aggregate 1.33e+03"
    memory = table(lines, "Memory while measuring (peak)")
    assert memory[1] == ["1", "1,100 MiB", "300 MiB", "-", "absent"]
    rows = table(lines, INTERFERENCE)
    assert rows[0] == ["condition", "streams", "pairs", "prefill", "decode", "verdict"]
    assert rows[1] == [
        "CPU stress on spare cores",
        "1",
        "6",
        "-5% [-31%, +11%]",
        "-3% [-15%, +9%]",
        "(no expectation)",
    ]
    assert rows[2][-1] == "PASS prefill degraded by at least 25%; FAIL decode degraded by at least 25%"


def test_new_record_shows_the_report_matrix_beside_the_measurement() -> None:
    lines = render_lines(new_record())
    rows = table(lines, INTERFERENCE)
    assert rows[0] == ["condition", "streams", "pairs", "prefill", "decode", "report says", "verdict"]
    spare, stream, gpu = rows[1:]
    assert spare[:6] == [
        "cpu_spare: CPU stress on spare cores",
        "1",
        "10",
        "-20% [-30%, -12%]",
        "-5% [-18%, +4%]",
        "prefill yes / decode no",
    ]
    assert spare[6] == (
        "PASS prefill degraded by at least 10%; INCONCLUSIVE decode unaffected within 15%; "
        "PASS ram increased by at least 10% (+25% [+20%, +30%])"
    )
    assert stream[0] == "ram_stream: " + LONG_LABEL[:59] + "…"
    assert stream[1:3] == ["4 vs 1", "6"]
    assert stream[5] == "prefill yes (collapse) / decode better"
    assert stream[6] == "FAIL decode degraded by at least 20%"
    assert gpu[2:] == ["6", "+0% [-10%, +10%]", "-", "prefill no / decode -", "(no expectation)"]
    assert "conditions from: experiments/seed_report.toml" in lines
    assert not [line for line in lines if line.startswith("report says:")]  # no cells judged: no legend


def verdict(metric: str, expectation: str, status: str, kind: str, word: str) -> dict[str, Any]:
    """A verdict as ``Comparison.to_record`` writes it since checks have a kind."""
    fails = (kind == "expect" and status != "pass") or (kind == "gate" and status == "fail")
    return {"metric": metric, "expectation": expectation, "status": status, "kind": kind, "word": word,
            "fails": fails, "passed": status == "pass"}  # fmt: skip


def kinds_record() -> dict[str, Any]:
    """Hard claims, the report's cells and a baseline gate, as the plugin records them now."""
    record = old_record()
    matrix = {"prefill": "degraded", "decode": "degraded"}
    record["comparisons"] = [
        {
            "id": "cpu_spare",
            "label": "CPU stress on spare cores",
            "streams": 1,
            "pairs": 6,
            "reference": {"prefill": "degraded", "decode": "unaffected"},
            "expected": {},
            "ratios": {"prefill": ratio(0.95, 0.69, 1.11), "decode": ratio(0.80, 0.75, 0.85)},
            "verdicts": [
                verdict("prefill", "degraded by at least 10%", "inconclusive", "report", "undecided"),
                verdict("decode", "unaffected within 15%", "fail", "report", "differs"),
            ],
            "trials": trials(6),
        },
        {
            "id": "cpu_server",
            "label": "CPU stress taking KT's own cores",
            "streams": 1,
            "pairs": 6,
            "reference": matrix,
            "expected": {"prefill": "degraded by at least 25%", "decode": "degraded by at least 25%"},
            "ratios": {"prefill": ratio(0.48, 0.36, 0.60), "decode": ratio(0.50, 0.45, 0.62)},
            "verdicts": [
                verdict("prefill", "degraded by at least 25%", "pass", "expect", "pass"),
                verdict("decode", "degraded by at least 25%", "pass", "expect", "pass"),
                verdict("prefill", "degraded by at least 10%", "pass", "report", "agrees"),
                verdict("decode", "degraded by at least 10%", "pass", "report", "agrees"),
                verdict("decode", "within 10% of the baseline's -45%", "fail", "gate", "regressed"),
            ],
            "trials": trials(6),
        },
        {
            "id": "concurrency",
            "label": "4 streams against 1",
            "streams": 4,
            "baseline_streams": 1,
            "pairs": 6,
            "reference": {
                "prefill": "improved",
                "decode": "improved",
                "ram": "unaffected",
                "vram": "unaffected",
            },
            "expected": {"ram": "unaffected within 15%"},
            "ratios": {
                "prefill": ratio(1.02, 0.95, 1.10),
                "decode": ratio(1.20, 1.05, 1.40),
                "ram": ratio(1.01, 0.99, 1.03),
            },
            "verdicts": [
                verdict("ram", "unaffected within 15%", "pass", "expect", "pass"),
                verdict("prefill", "improved by at least 30% and at most 50%", "fail", "report", "differs"),
                verdict(
                    "decode",
                    "improved by at least 30% and at most 50%",
                    "inconclusive",
                    "report",
                    "undecided",
                ),
                verdict("ram", "unaffected within 15%", "pass", "report", "agrees"),
            ],
            "trials": trials(6),
        },
    ]
    return record


def test_report_cells_show_beside_the_measurement_and_only_claims_are_verdicts() -> None:
    lines = render_lines(kinds_record())
    rows = table(lines, INTERFERENCE)
    assert rows[0] == ["condition", "streams", "pairs", "prefill", "decode", "report says", "verdict"]
    spare, server, concurrency = rows[1:]
    assert spare[5:] == ["prefill yes: undecided / decode no: differs", "(no claim: the report's cells only)"]
    assert server[5:] == [
        "prefill yes: agrees / decode yes: agrees",
        "PASS prefill degraded by at least 25%; PASS decode degraded by at least 25%; "
        "gate REGRESSED decode within 10% of the baseline's -45%",
    ]
    assert concurrency[5:] == [
        "prefill better: differs / decode better: undecided / ram no: agrees (+1% [-1%, +3%]) / vram no",
        "PASS ram unaffected within 15% (+1% [-1%, +3%])",
    ]
    start = next(
        i for i, line in enumerate(lines) if line.startswith("report says: the report's matrix cell")
    )
    assert lines[start + 1].startswith("or is undecided, judged with the same bounds; never a failure here")


def test_expected_without_verdicts_says_not_checked() -> None:
    record = new_record()
    record["comparisons"][0]["verdicts"] = []
    rows = table(render_lines(record), INTERFERENCE)
    assert (
        rows[1][-1]
        == "(not checked: expected prefill degraded by at least 10%; decode unaffected within 15%)"
    )


def test_render_survives_a_json_round_trip_and_missing_figures() -> None:
    record = new_record()
    record["comparisons"][0]["ratios"]["decode"] = {"point": math.nan, "lo": math.nan, "hi": math.nan}
    record["concurrency"]["1"][0]["decode_aggregate_tps"] = math.nan
    again = json.loads(json.dumps(record))
    assert render_lines(again) == render_lines(record)
    assert table(render_lines(record), INTERFERENCE)[1][4] == "-"
    assert render_lines({}) == []


def fake_round(streams: int, ttft: float, span: float) -> RoundSample:
    requests = [
        RequestSample(
            stream=s,
            t_send=0.0,
            t_first=ttft * (1 + s / 10),
            t_last=ttft * (1 + s / 10) + span,
            token_times=[ttft + span * i / 7 for i in range(8)],
            prompt_tokens=128,
            completion_tokens=8,
        )
        for s in range(streams)
    ]
    return RoundSample(streams, requests, 0.0, max(r.t_last for r in requests), {"ram_used_peak_mib": 900.0})


def test_report_lines_are_the_rendered_record() -> None:
    report = Report(server={"description": "fake", "url": "http://x", "cpus": "0"})
    for ttft, span in ((0.5, 0.2), (0.4, 0.3), (0.6, 0.25)):
        report.add_round(fake_round(1, ttft, span))
        report.add_round(fake_round(3, ttft, span))
    lines = render_lines(report.to_record())
    throughput = table(lines, "Throughput (tokens/s; median round of each concurrency)")
    assert [row[:2] for row in throughput[1:]] == [["1", "3"], ["3", "3"]]
    # The median round by decode aggregate (spans 0.2, 0.3, 0.25 -> decode 35, 23.3, 28): span 0.25.
    assert throughput[1][3] == "28"
    assert median_round(report.to_record()["concurrency"]["1"])["decode_aggregate_tps"] == pytest.approx(28)


def test_merge_concatenates_rounds_per_concurrency_and_comparisons() -> None:
    a, b = old_record(), new_record()
    a["server"], a["workload"] = {}, {}
    a["machine"] = {"hostname": "one"}
    b["machine"] = {"hostname": "two"}
    merged = merge_records([a, b])
    assert sorted(merged["concurrency"]) == ["1", "4"]
    assert len(merged["concurrency"]["1"]) == 4 and len(merged["concurrency"]["4"]) == 2
    assert [c["label"] for c in merged["comparisons"]] == [
        *(c["label"] for c in a["comparisons"]),
        *(c["label"] for c in b["comparisons"]),
    ]
    assert merged["server"] == b["server"] and merged["workload"] == b["workload"]
    assert merged["machine"] == {"hostname": "one"}
    assert merged["merged_from"] == 2
    assert table(render_lines(merged), "Throughput (tokens/s; median round of each concurrency)")[1][1] == "4"


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["1", "2", "4", "8"]), st.integers(0, 3), max_size=4),
        min_size=1,
        max_size=5,
    )
)
@settings(max_examples=60, deadline=None)
def test_merge_keeps_every_round_and_is_associative(shapes: list[dict[str, int]]) -> None:
    records = [
        {
            "concurrency": {
                k: [round_record(int(k), [1.0 * n], [2.0 * n]) for n in range(v)] for k, v in s.items()
            }
        }
        for s in shapes
    ]
    merged = merge_records(records)
    for key in ("1", "2", "4", "8"):
        assert len(merged["concurrency"].get(key, [])) == sum(s.get(key, 0) for s in shapes)
    split = merge_records([merge_records(records[:1]), merge_records(records[1:])])
    assert split["concurrency"] == merged["concurrency"]


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


ROUNDS_TEST = """
from pytest_ktinterf.measure.samples import RequestSample, RoundSample

def fake_round(streams):
    reqs = [RequestSample(s, 0.0, 0.5, 0.8, [0.5, 0.8], 128, 2) for s in range(streams)]
    return RoundSample(streams, reqs, 0.0, 0.8)

def test_one(kt_report):
    kt_report.add_round(fake_round({streams}))

def test_two(kt_report):
    kt_report.add_round(fake_round({streams}))
"""


def test_xdist_controller_prints_the_merged_report(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    # The plugin loads through its entry point; its package must be importable from the
    # subprocess's directory too, whether or not it is installed from this checkout.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_a=ROUNDS_TEST.format(streams=1), test_b=ROUNDS_TEST.format(streams=2))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    workers = sorted(p.name for p in (pytester.path / ".ktinterf").glob("report-gw*.json"))
    assert workers == ["report-gw0.json", "report-gw1.json"]  # both workers measured something
    result.stdout.fnmatch_lines(
        [
            "*ktinterf report*",
            "Throughput (tokens/s; median round of each concurrency)",
            "streams | rounds | prefill*",
            "*",
            "1       | 2      | 256 *",
            "2       | 2      | 256+256 ≈ 512 (sum of streams); true aggregate 512 *",
            "JSON record: *report.json",
            "plots: *throughput.svg",
            "Markdown report: *report.md",
        ]
    )
    markdown = (pytester.path / ".ktinterf" / "report.md").read_text()
    assert "| 2 | 2 | 256+256 ≈ 512 (sum of streams); true aggregate 512 |" in markdown, markdown
    assert "![throughput](throughput.svg)" in markdown and "[report.json](report.json)" in markdown
    merged = json.loads((pytester.path / ".ktinterf" / "report.json").read_text())
    assert merged["merged_from"] == 2 and sorted(merged["concurrency"]) == ["1", "2"]
    assert not (pytester.path / ".ktinterf" / "effects.svg").exists()


def test_without_xdist_the_session_prints_its_own_report(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytest_testnodedown`` is an xdist hook: without xdist loaded it must not break the session."""
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_a=ROUNDS_TEST.format(streams=1))
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*ktinterf report*", "1       | 2      | 256 *", "plots: *throughput.svg"])
    record = json.loads((pytester.path / ".ktinterf" / "report.json").read_text())
    assert "merged_from" not in record and len(record["concurrency"]["1"]) == 2


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
