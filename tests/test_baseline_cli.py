"""``python -m pytest_ktinterf compare``: the offline gate, run in-process on files in tmp_path.

Exit 0 when nothing regressed, 1 when something did, 2 with one ``error: <cause>; <fix>`` line
when the files cannot be compared -- a CI job branches on these.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf.__main__ import main as package_main
from pytest_ktinterf.baseline.cli import main, server_change
from pytest_ktinterf.baseline.fingerprint import Fingerprint
from pytest_ktinterf.baseline.store import BaselineFile

KEYED = {"cpu_model": "AMD EPYC", "logical_cpus": 2, "ram_gib": 24, "workload": {"prompt_tokens": 128}}


def effect(point: float, half_width: float = 0.02) -> dict[str, Any]:
    return {
        "point": point,
        "lo": point * math.exp(-half_width),
        "hi": point * math.exp(half_width),
        "pairs": 8,
    }


def session(level: float, server: str = "b100", seed: int = 0) -> dict[str, Any]:
    """A session whose effect is ``level`` and whose uncontended decode is 31 tok/s times it."""
    rng = random.Random(seed)
    return {
        "recorded_at": f"2025-01-0{seed + 1}T00:00:00",
        "server": {"version": server},
        "unstable": {},
        "effects": {"cpu.toml::cpu_spare": {"decode": effect(0.9 * level)}},
        "uncontended": {"1": {"decode": [31.0 * level * math.exp(rng.gauss(0, 0.005)) for _ in range(8)]}},
    }


def baseline_file(path: Path, sessions: list[dict[str, Any]], keyed: dict[str, Any] | None = None) -> Path:
    BaselineFile(path, Fingerprint(keyed or KEYED), sessions).save()
    return path


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    levels = (0.99, 1.0, 1.01)
    return baseline_file(tmp_path / "base.json", [session(x, seed=i) for i, x in enumerate(levels)])


def test_an_unchanged_session_passes(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = baseline_file(tmp_path / "now.json", [session(1.0, seed=5)])
    assert main([str(baseline), str(now)]) == 0
    out = capsys.readouterr().out
    assert "cpu_spare decode" in out and "uncontended decode at 1 stream" in out
    assert "server: unchanged" in out
    assert out.rstrip().splitlines()[-1].startswith("ok: 2 figure(s) against 3 baseline session(s)")


def test_a_regressed_session_fails_naming_the_figure_and_the_server_change(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = baseline_file(tmp_path / "now.json", [session(0.75, server="b200", seed=5)])
    assert main([str(baseline), str(now)]) == 1
    out = capsys.readouterr().out
    assert "server: version=b100 -> version=b200" in out
    assert "regressed: cpu.toml::cpu_spare decode: then -10%" in out
    assert "regressed: uncontended decode at 1 stream: then 31.0 tok/s" in out
    assert "REGRESSED" in out
    assert out.rstrip().splitlines()[-1].startswith("FAILED: 2 figure(s)")


def test_inconclusive_fails_only_when_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spread = [session(x, seed=i) for i, x in enumerate((0.85, 1.0, 1.15))]
    base = baseline_file(tmp_path / "base.json", spread)
    now = baseline_file(tmp_path / "now.json", [session(0.86, seed=5)])
    assert main([str(base), str(now)]) == 0
    assert "inconclusive: cpu.toml::cpu_spare decode" in capsys.readouterr().out
    assert main([str(base), str(now), "--strict"]) == 1


def test_thresholds_come_from_fail(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = baseline_file(tmp_path / "now.json", [session(0.75, seed=5)])
    assert main([str(baseline), str(now), "--fail", "decode:30%"]) == 0
    assert "threshold decode 30%, others 10%" in capsys.readouterr().out


def test_a_report_record_with_a_fingerprint_is_judged(baseline: Path, tmp_path: Path) -> None:
    trials = []
    for i in range(8):
        trials.append({"arm": "baseline", "index": i, "decode_aggregate_tps": 20.0 + i * 0.01})
        trials.append({"arm": "condition", "index": i, "decode_aggregate_tps": 18.0 + i * 0.01})
    report = {
        "format": "pytest-ktinterf report v1",
        "created": "2025-02-01T00:00:00",
        "fingerprint": KEYED,
        "server": {"version": "b100"},
        "comparisons": [
            {"id": "cpu_spare", "experiment": "cpu.toml", "status": "complete", "trials": trials}
        ],
        "uncontended": {"1": [{"decode": 31.0 + i * 0.01} for i in range(8)]},
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert main([str(baseline), str(path)]) == 0


def test_a_record_without_a_fingerprint_says_how_to_get_one(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "pytest-ktinterf report v1", "comparisons": []}))
    assert main([str(baseline), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "predates" in err and "--kt-report-json" in err
    assert len(err.strip().splitlines()) == 1


def test_a_baseline_compared_with_itself_judges_its_newest_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = baseline_file(
        tmp_path / "b.json", [session(1.0, seed=0), session(1.01, seed=1), session(0.7, seed=2)]
    )
    assert main([str(path), str(path)]) == 1
    assert "against 2 baseline session(s)" in capsys.readouterr().out
    single = baseline_file(tmp_path / "one.json", [session(1.0)])
    assert main([str(single), str(single)]) == 2


def test_different_set_ups_are_refused_naming_the_fields(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = {**KEYED, "ram_gib": 32, "workload": {"prompt_tokens": 512}}
    now = baseline_file(tmp_path / "now.json", [session(1.0)], keyed=other)
    assert main([str(baseline), str(now)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "ram_gib: 24 in the baseline, 32 here" in err
    assert "workload.prompt_tokens: 128 in the baseline, 512 here" in err
    assert "own baseline file" in err


@pytest.mark.parametrize("content", ["garbage", "[]", '{"format": "something else"}'])
def test_a_garbage_file_is_one_error_line(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "garbage.json"
    path.write_text(content)
    assert main([str(baseline), str(path)]) == 2
    assert main([str(path), str(baseline)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") and "garbage.json" in line for line in err)


def test_an_empty_baseline_and_a_bad_threshold_are_errors(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = baseline_file(tmp_path / "empty.json", [])
    assert main([str(empty), str(baseline)]) == 2
    assert main([str(baseline), str(baseline), "--fail", "decode:lots"]) == 2
    err = capsys.readouterr().err
    assert "holds no sessions" in err and "--fail: 'decode:lots'" in err


def test_the_package_command_runs_compare(baseline: Path, tmp_path: Path) -> None:
    now = baseline_file(tmp_path / "now.json", [session(0.75, seed=5)])
    assert package_main(["compare", str(baseline), str(now)]) == 1
    assert package_main(["compare", str(baseline), str(tmp_path / "missing.json")]) == 2


def test_server_change_names_only_what_changed() -> None:
    same = {"version": "b1", "model": "m"}
    assert server_change(same, dict(same)) is None
    assert server_change(same, {"version": "b2", "model": "m"}) == "server: version=b1 -> version=b2"
    assert server_change({}, {"image": "sha256:1"}) == "server: image=- -> image=sha256:1"


def test_the_baseline_command_runs_n_sessions_the_first_starting_the_file_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``python -m pytest_ktinterf baseline``: one pytest process per session, stopping on an error."""
    calls: list[list[str]] = []
    codes = iter([0, 1, 0])  # a failed hard claim (exit 1) still measured: the recording goes on

    def call(argv: list[str]) -> int:
        calls.append(argv)
        return next(codes)

    monkeypatch.setattr("pytest_ktinterf.__main__.subprocess.call", call)
    assert package_main(["baseline", "--sessions", "3", "--", "-m", "interference", "experiments/"]) == 0
    flags = [argv[3] for argv in calls]
    assert flags == ["--kt-baseline-update", "--kt-baseline-save", "--kt-baseline-save"]
    assert all(argv[-3:] == ["-m", "interference", "experiments/"] for argv in calls)
    assert all("--kt-baseline-sessions" in argv for argv in calls)

    calls.clear()
    codes = iter([0, 2])  # an internal error stops it and says how many sessions were kept
    assert package_main(["baseline", "--sessions", "3"]) == 2
    assert len(calls) == 2 and calls[0][-2:] == ["-m", "interference"]
