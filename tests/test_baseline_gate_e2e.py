"""The baseline gate end to end: record 3 sessions, then compare unchanged, slower and more sensitive.

Real parts throughout: a llama-server started by the plugin (process backend, pinned to the
last core), stress-ng on the spare cores, the server's CPU capped by a real cgroup. Each
session is a child pytest session. The baseline is recorded once for the module (3 sessions).

The threshold is 25% everywhere here: the claims tested are "an unchanged server is not called
25% slower" and "a server given half its CPU, or one that spreads onto the neighbour's core, is
past the threshold and fails the strict gate, with the verdict the offline comparison gives" --
claims about the gate that hold on any machine where the server is CPU-bound, not bounds read
off a run. Whether such a change is *regressed* rather than *inconclusive* depends on the
machine's session-to-session spread; that decision is tested on numbers in test_baseline_gate.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_ktinterf.baseline.gate import compare_sessions
from pytest_ktinterf.baseline.store import BaselineFile, session_from_record
from pytest_ktinterf.report.baseline_text import gate_verdicts
from tests.gate_sessions import new_project, session, usable

needs_assets = pytest.mark.skipif(
    not usable(), reason="needs llama-server (python -m pytest_ktinterf fetch), 2 cores and root (cgroups)"
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose baselines/ holds 3 sessions of the unchanged server."""
    project = new_project(tmp_path_factory.mktemp("gate"))
    for n in range(3):
        code, output = session(project, project / f"save-{n}.log", "--kt-baseline-save")
        assert code == 0, output
        assert "baseline saved" in output, output
    return project


def _baseline(project: Path) -> dict:
    (path,) = (project / "baselines").glob("*.json")
    return json.loads(path.read_text())


@needs_assets
def test_three_saved_sessions_hold_every_figure_with_its_raw_values(recorded: Path) -> None:
    (path,) = (recorded / "baselines").glob("*.json")
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=1, sort_keys=True) + "\n"  # diff-friendly, stable
    assert data["schema_version"] == 1 and len(data["sessions"]) == 3
    for stored in data["sessions"]:
        effect = stored["effects"]["gate.toml::cpu_spare"]["decode"]
        assert len(effect["log_ratios"]) == effect["pairs"] >= 6
        assert effect["lo"] <= effect["point"] <= effect["hi"]
        assert len(stored["uncontended"]["1"]["decode"]) >= 6
        assert stored["server"]["identity"]["binary"]["digest"].startswith("sha256:")


@needs_assets
def test_unchanged_server_is_not_called_regressed(recorded: Path) -> None:
    code, output = session(recorded, recorded / "same.log", "--kt-baseline-compare")
    assert code == 0, output
    (summary,) = [line for line in output.splitlines() if line.startswith("  gate: ")]
    assert "pass" in summary and "regressed" not in summary and "REGRESSED" not in output, output
    assert "(3 sessions" in output, output  # the report names the file and its sessions


def _fails_the_gate(project: Path, output: str, figure: str, offline: str) -> None:
    """The figure is past the threshold, fails under --kt-baseline-strict, and is judged as offline.

    Whether it is called *regressed* or *inconclusive* depends on how far apart this machine's
    3 baseline sessions happened to be (sessions 47.8, 63.9 and 74.4 tok/s were seen here), so
    the test asserts what holds either way: the change is past the 25% threshold, the strict
    gate fails it, the terminal prints it, and its word is the one ``compare_sessions`` gives
    for the same numbers read back from the JSON record and the baseline file. Which word which
    numbers give is tested in test_baseline_gate.py.
    """
    record = json.loads((project / "report.json").read_text())
    (verdict,) = [v for v in gate_verdicts(record) if v["figure"] == figure]
    assert verdict["fails"] and "past the 25% threshold" in verdict["reason"], verdict
    assert verdict["word"] in ("regressed", "inconclusive"), verdict
    (line,) = [line for line in output.splitlines() if line.startswith(f"  {figure} ")]  # its section
    assert verdict["word"].upper() in line and "->" in line, output
    (path,) = (project / "baselines").glob("*.json")
    results = compare_sessions(BaselineFile.load(path), session_from_record(record), {"*": 0.25})
    (offline_result,) = [r for r in results if r.figure == offline]
    assert offline_result.status == verdict["word"], (offline_result, verdict)


@needs_assets
def test_server_capped_to_half_its_cpu_fails_the_strict_gate_then_to_now(recorded: Path) -> None:
    code, output = session(
        recorded,
        recorded / "capped.log",
        "--kt-baseline-compare",
        "--kt-baseline-strict",
        "--kt-server-cpu-quota=0.5",
    )
    assert code == 1, output
    figure = "uncontended decode at 1 stream"
    _fails_the_gate(recorded, output, figure, offline=figure)


@needs_assets
def test_server_made_more_sensitive_to_its_neighbour_fails_the_sensitivity_gate(recorded: Path) -> None:
    before = len(_baseline(recorded)["sessions"])
    args = ("--kt-baseline-compare", "--kt-baseline-save", "--kt-baseline-strict")
    code, output = session(recorded, recorded / "spread.log", *args, spread=True)
    assert code == 1, output
    _fails_the_gate(recorded, output, "cpu_spare decode", offline="gate.toml::cpu_spare decode")
    assert "baseline NOT saved: the gate failed this session" in output, output
    assert len(_baseline(recorded)["sessions"]) == before


@needs_assets
def test_fingerprint_mismatch_is_one_line_naming_the_field(recorded: Path) -> None:
    (path,) = (recorded / "baselines").glob("*.json")
    code, output = session(
        recorded, recorded / "mismatch.log", f"--kt-baseline-file={path}", "--kt-prompt-tokens=64"
    )
    assert code == 4, output  # a usage error, before anything starts
    (line,) = [line for line in output.splitlines() if "recorded on another machine" in line]
    assert "workload.prompt_tokens" in line and "128" in line and "64" in line, output


@needs_assets
def test_missing_baseline_skips_with_the_command_and_fails_when_strict(recorded: Path) -> None:
    args = ("--kt-baseline-compare", "--kt-baseline-dir=nowhere", "-k", "uncontended")
    code, output = session(recorded, recorded / "missing.log", *args)
    assert code == 0, output
    assert "SKIPPED" in output and "no baseline for" in output and "--kt-baseline-save" in output, output
    code, output = session(recorded, recorded / "strict.log", *args, "--kt-baseline-strict")
    assert code == 1, output
    assert "no baseline for" in output, output
