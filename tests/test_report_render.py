"""The report renders from its JSON record alone (text tables) and merges across xdist workers.

No server here: records are made by hand (old ones, without the matrix keys, and new ones with
them), so what is checked is the rendering, not a measurement.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.report.record import Report, median_round, merge_records
from pytest_ktinterf.report.text import render_lines
from tests.report_records import (
    INTERFERENCE,
    LONG_LABEL,
    fake_round,
    new_record,
    old_record,
    ratio,
    round_record,
    table,
    trials,
)

ROOT = Path(__file__).resolve().parent.parent


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
