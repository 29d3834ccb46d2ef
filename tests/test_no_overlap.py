"""Measurements never overlap: one xdist group, and a lock that holds across processes.

Every process here uses its own state directory: this test session itself holds the default
machine lock (shared) while it runs.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from pytest_ktinterf.system.lock import EXCLUSIVE, SHARED

TWO_EXPERIMENTS = """
import os, pytest
from pathlib import Path

@pytest.mark.interference
@pytest.mark.parametrize("n", range(4))
def test_experiment(n):
    Path(f"worker-{n}").write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_interference_items_run_on_one_xdist_worker(pytester: pytest.Pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    pytester.makepyfile(TWO_EXPERIMENTS)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=4)
    workers = {(pytester.path / f"worker-{n}").read_text() for n in range(4)}
    assert len(workers) == 1


HOLDER = """
import sys, time
from pytest_ktinterf.system.lock import hold
with hold(sys.argv[1]):
    print(time.time(), flush=True)
    sys.stdin.readline()
"""


def holder(mode: str, state_dir: str) -> subprocess.Popen[str]:
    """A process that takes the lock in ``mode``, prints when it got it, and holds until told."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, mode],
        env={**os.environ, "KTINTERF_STATE_DIR": state_dir},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def acquired_at(proc: subprocess.Popen[str], timeout: float) -> float | None:
    """When ``proc`` got the lock, or None if it has not within ``timeout``."""
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    return float(proc.stdout.readline()) if readable else None


def release(proc: subprocess.Popen[str]) -> float:
    released = time.time()
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=10)
    return released


@pytest.mark.parametrize(("first", "second", "overlap"), [
    (EXCLUSIVE, EXCLUSIVE, False),
    (EXCLUSIVE, SHARED, False),
    (SHARED, EXCLUSIVE, False),
    (SHARED, SHARED, True),
])  # fmt: skip
def test_lock_modes_across_processes(tmp_path, first, second, overlap):
    one = holder(first, str(tmp_path))
    two = None
    try:
        assert acquired_at(one, 30) is not None
        two = holder(second, str(tmp_path))
        early = acquired_at(two, 2.0)  # two seconds to (wrongly) get in
        assert (early is not None) == overlap
        released = release(one)
        if not overlap:
            late = acquired_at(two, 30)
            assert late is not None and late >= released
    finally:
        for proc in (one, two):
            if proc is not None and proc.poll() is None:
                release(proc)
