"""Nothing measured is lost, and nothing is left running, when the real server dies: the embedded
llama-server is killed at pair 3, under a running CPU stress actor, in a child pytest session;
that session's JSON record keeps pairs 1 and 2, and it leaves nothing behind.

The same rules on a scripted probe are in ``test_lost_data.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from pytest_ktinterf.system.assets import cache_dir
from pytest_ktinterf.system.leftovers import list_leftovers
from pytest_ktinterf.system.reap import reap_leftovers

ROOT = Path(__file__).resolve().parent.parent
# Resolved now: pytester points HOME at a temporary directory for the sessions it starts.
CACHE = str(cache_dir())


# -- against the real embedded server: kill it at pair 3 --------------------------------------

KILLED_AT_PAIR_3 = """
import contextlib
import os
import signal


def test_server_dies_at_pair_3(kt_compare, kt_server, kt_cpu_stress):
    calls = []

    @contextlib.contextmanager
    def stressed(kill):
        with kt_cpu_stress("spare") as actor:
            if kill:  # inside the actor's window: the server dies under pressure
                os.kill(kt_server.processes()[0].pid, signal.SIGKILL)
                kt_server.child.popen.wait(timeout=30)
            yield actor

    def condition():
        calls.append(1)
        return stressed(kill=len(calls) == 2)  # pair 3's (pairs 1 and 2 share the first actor)

    kt_compare(condition, label="server killed at pair 3", trials=6)
"""


def _running_under(path: Path) -> list[str]:
    """Processes whose command line names ``path`` (the child session's server, its weights copy)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.pid} {cmdline}")
    return found


def test_server_killed_at_pair_3_keeps_pairs_1_and_2_in_the_record(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_killed=KILLED_AT_PAIR_3)
    state = tmp_path / "state"
    env = {
        **os.environ,
        "KTINTERF_STATE_DIR": str(state),
        "KTINTERF_CACHE": CACHE,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv = [
        *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_killed.py"),
        *("--kt-prompt-tokens=64", "--kt-max-tokens=8", "--kt-parallel=1", "--kt-ready-timeout=120"),
        "--kt-request-timeout=120",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    left: list[str] = []
    try:
        out = proc.communicate(timeout=420)[0].decode("utf-8", "replace")
        monkeypatch.setenv("KTINTERF_STATE_DIR", str(state))
        left = list_leftovers(pytester.path, containers=False)  # what the ended session left itself
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        monkeypatch.setenv("KTINTERF_STATE_DIR", str(state))
        reap_leftovers()  # the server runs in a process group of its own: the reaper finds it
    assert left == [], left  # the stress-ng running when the server died was stopped
    assert proc.returncode == 1, out  # the error still fails the test
    assert "1 failed" in out, out
    # the probe's own client names the socket's error (measure/sse.py): refused, reset, or cut short
    named = r"failed: (Connection(Refused|Reset)?Error|IncompleteResponse|BrokenPipeError)"
    assert re.search(named, out), out
    assert "killed by SIGKILL" in out, out  # the server's state and log tail ride on the error
    assert "server killed at pair 3: aborted after 2 finished pairs" in out, out
    assert "ABORTED after 2 pairs, not judged" in out, out  # the text report

    record = json.loads((pytester.path / ".ktinterf" / "report.json").read_text())
    [comparison] = record["comparisons"]
    assert record["workload"]["request_timeout_s"] == 120  # the probe's, as asked
    assert comparison["status"] == "aborted"
    assert comparison["label"] == "server killed at pair 3"
    assert comparison["pairs"] == 2
    assert [(t["arm"], t["index"]) for t in comparison["trials"]] == [  # B C | C B, as measured
        ("baseline", 0),
        ("condition", 0),
        ("condition", 1),
        ("baseline", 1),
    ]
    assert all(t["decode_aggregate_tps"] > 0 for t in comparison["trials"])
    assert all(t["actor"] for t in comparison["trials"] if t["arm"] == "condition")  # stress ran
    assert [(t["arm"], t["index"]) for t in comparison["unpaired_trials"]] == [("baseline", 2)]
    assert comparison["reason"].startswith("request to http://127.0.0.1:")
    assert "-- fix: check that the server is still running" in comparison["reason"]
    assert comparison["error"] == "ServerError"
    tail = comparison["log_tail"]
    assert "killed by SIGKILL" in tail.splitlines()[0]
    assert "server log tail:" in tail and len(tail.splitlines()) > 5  # llama-server's own lines
    assert set(comparison["ratios"]) == {"prefill", "decode"}  # two pairs: a ratio, no verdict
    assert comparison["verdicts"] == []
    for svg in (pytester.path / ".ktinterf").glob("*.svg"):
        ET.parse(svg)
    assert _running_under(pytester.path) == []
