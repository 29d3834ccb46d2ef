"""The seed's CPU rows against a server started by hand, reached by ``--kt-url`` only (issue 15).

Before, every CPU row skipped there ("the server's cores are unknown") and the memory table had
no server RSS. A child pytest session runs the seed file's spare-core row (a row without a hard
claim, so this test judges only what issue 15 changed) against a llama-server pinned by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_ktinterf.measure.server_view import AGREEMENT
from tests.hand_server import LAST_CORE, hand_started

SEED = Path(__file__).resolve().parent.parent / "experiments" / "seed_report.toml"


def test_a_cpu_row_runs_against_a_hand_started_server_with_its_memory_and_own_figures(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child's interference item takes the machine lock exclusively while this session may hold
    # it shared (an earlier test used the plugin): the child gets a lock of its own (system/lock.py).
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    shutil.copy(SEED, pytester.path / "seed_report.toml")
    with hand_started(tmp_path, "--metrics") as (url, child):
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-m", "interference", "seed_report.toml", "-k", "cpu_spare",
            f"--kt-url={url}", "--kt-max-pairs=6", "--kt-report-json=report.json", "--kt-lock-timeout=60",
        )  # fmt: skip
    output = result.stdout.str()
    assert result.ret == 0, output
    assert "cores are unknown" not in output
    record = json.loads((pytester.path / "report.json").read_text())
    assert record["server"]["cpus"] == str(LAST_CORE)
    assert f"pid {child.pid} llama-server" in record["server"]["description"]
    assert record["server"]["own_figures"]["metrics"] == "llama.cpp"
    (row,) = record["comparisons"]
    assert row["id"] == "cpu_spare" and row["status"] == "complete" and row["pairs"] >= 6
    rounds = [*row["trials"], *(r for t in row["trials"] for r in t.get("more_rounds", []))]
    assert all(r["resources"]["server_rss_peak_mib"] > 50 for r in rounds)  # the model is in it
    decode = [(r["server"]["metrics"]["decode_tps"], r["client_per_request_tps"]["decode"]) for r in rounds]
    ratios = sorted(server / client for server, client in decode)
    assert abs(ratios[len(ratios) // 2] - 1) <= AGREEMENT["decode"]
    assert "Client vs server" in output and "] DISAGREE" not in output  # no row flagged
