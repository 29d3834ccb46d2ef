"""Measurements never overlap: one xdist group, and a lock that holds across processes.

Every process here uses its own state directory: this test session itself holds the default
machine lock (shared) while it runs.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import sys
import time

import pytest

from pytest_ktinterf.system.lock import EXCLUSIVE, SHARED

SPANS = """
import json, os, time, pytest
from pathlib import Path

@pytest.mark.interference
@pytest.mark.parametrize("n", range(4))
def test_experiment(n):
    started = time.time()
    time.sleep(1.0)  # a window in which a second worker, were it let in, would certainly start
    Path(f"span-{n}-{os.environ['PYTEST_XDIST_WORKER']}").write_text(json.dumps([started, time.time()]))
"""


@pytest.mark.parametrize("dist", ["load", "loadgroup", "worksteal", "each"])
def test_interference_items_never_overlap_under_xdist(pytester: pytest.Pytester, tmp_path, monkeypatch, dist):
    """Whatever ``--dist`` does with the items (``load`` splits them, ``each`` runs them on every
    worker, and pytest >= 9.2 ignores the node-id suffix ``loadgroup`` relies on), no two
    interference items run at once: the machine lock serialises them across workers."""
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    pytester.makepyfile(SPANS)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", dist, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8 if dist == "each" else 4)
    spans = sorted(json.loads(path.read_text()) for path in pytester.path.glob("span-*"))
    assert len(spans) == (8 if dist == "each" else 4)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans


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
    """Tell the holder to let go; one that does not within 10 s is killed, never left behind."""
    released = time.time()
    try:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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


WAITER = """
from pytest_ktinterf.system.lock import hold
with hold("exclusive", timeout_s=1.0):
    print("got the lock")
"""


def test_lock_wait_times_out_naming_the_holder(tmp_path):
    """Run in a process of its own: this test's own process holds the default lock shared."""
    env = {**os.environ, "KTINTERF_STATE_DIR": str(tmp_path)}
    one = holder(EXCLUSIVE, str(tmp_path))
    try:
        assert acquired_at(one, 30) is not None
        waiter = subprocess.run(
            [sys.executable, "-c", WAITER], env=env, capture_output=True, text=True, timeout=60
        )
        assert waiter.returncode != 0 and "got the lock" not in waiter.stdout
        assert f"held after 1 s by {one.pid} (" in waiter.stderr, waiter.stderr
        assert "--kt-lock-timeout" in waiter.stderr
    finally:
        release(one)
    free = subprocess.run([sys.executable, "-c", WAITER], env=env, capture_output=True, text=True, timeout=60)
    assert "got the lock" in free.stdout, free.stderr


OUT_OF_ORDER = """
from pytest_ktinterf.system.lock import EXCLUSIVE, SHARED, hold
outer, inner = hold(SHARED), hold(EXCLUSIVE)
outer.__enter__()
inner.__enter__()
outer.__exit__(None, None, None)  # Ctrl-C unwinds the item's hold first ...
inner.__exit__(None, None, None)  # ... then pytest tears down the fixture that measures
print("let go in any order")
"""


def test_holds_let_go_in_any_order(tmp_path):
    """Ctrl-C in a test whose fixture measures: pytest tears the fixture down after the item's
    hold is gone (a run stopped with SIGTERM printed a TypeError from the lock there). Nothing
    raises; the lock is free."""
    env = {**os.environ, "KTINTERF_STATE_DIR": str(tmp_path)}
    unwound = subprocess.run(
        [sys.executable, "-c", OUT_OF_ORDER], env=env, capture_output=True, text=True, timeout=60
    )
    assert unwound.returncode == 0 and "let go in any order" in unwound.stdout, unwound.stderr
    free = subprocess.run([sys.executable, "-c", WAITER], env=env, capture_output=True, text=True, timeout=60)
    assert "got the lock" in free.stdout, free.stderr
