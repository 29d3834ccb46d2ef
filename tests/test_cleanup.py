"""Nothing is left running: after Ctrl-C, and after SIGKILL of pytest followed by a new session."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from pytest_ktinterf.system.assets import cache_dir
from pytest_ktinterf.system.reap import reap_leftovers
from tests.child_sessions import Child, child_process

# Resolved now: pytester points HOME at a temporary directory for the sessions it starts.
CACHE = str(cache_dir())

SESSION = """
import time
from pathlib import Path
from pytest_ktinterf.system.processes import spawn

def test_hold(kt_server, kt_cpu_stress, kt_memory_bandwidth, kt_ram_filler, kt_ram_overflow, kt_log_dir):
    # A grandchild that the kernel's death signal cannot reach: only the reaper can.
    spawn(["sh", "-c", "sleep 300 & wait"], name="orphan-maker", log_path=kt_log_dir / "o.log")
    Path("cgroup").write_text(str(kt_server.cgroup.path) if kt_server.cgroup else "")
    with kt_cpu_stress([0]), kt_memory_bandwidth([1]), kt_ram_filler(gib=0.25), kt_ram_overflow("contained"):
        Path("ready").write_text("ready")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not Path("never").exists():
            time.sleep(0.1)
"""


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def sessions(pytester: pytest.Pytester, tmp_path: Path) -> Iterator[Callable[[str], Child]]:
    """Starts child pytest sessions that leave nothing behind, whatever the test does.

    Each child runs in a session of its own with SIGINT at its default (see
    :mod:`tests.child_sessions`). At teardown every child's process tree is killed and reaped, then
    the reaper clears what their registry (``tmp_path``) still lists: grandchildren orphaned
    before they were seen, and the server's memory cgroup.
    """
    env = {**os.environ, "KTINTERF_STATE_DIR": str(tmp_path), "KTINTERF_CACHE": CACHE}
    numbers = itertools.count()
    stack = contextlib.ExitStack()

    def start(test_file: str) -> Child:
        log_path = tmp_path / f"session-{next(numbers)}.log"
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file]
        return stack.enter_context(child_process(argv, cwd=pytester.path, env=env, log_path=log_path))

    try:
        yield start
    finally:
        try:
            stack.close()
        finally:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
                reap_leftovers()


def start_session(pytester: pytest.Pytester, sessions: Callable[[str], Child]) -> Child:
    pytester.makepyfile(test_hold=SESSION)
    session = sessions("test_hold.py")
    wait_for(
        lambda: (pytester.path / "ready").exists() or session.popen.poll() is not None, 120, "the session"
    )
    if session.popen.poll() is not None:
        raise AssertionError(session.output() or "session ended early")
    return session


def alive(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    return out


def test_ctrl_c_stops_server_and_actors(pytester: pytest.Pytester, sessions, tmp_path, monkeypatch):
    session = start_session(pytester, sessions)
    started = session.descendants()
    names = " ".join(p.name() for p in started)
    cmdlines = " ".join(" ".join(p.cmdline()) for p in started)
    assert "llama-server" in names and "stress-ng" in names
    assert "--stream" in cmdlines and "filler_child" in cmdlines
    cgroup = Path((pytester.path / "cgroup").read_text())
    assert cgroup.is_dir(), "the server runs in a memory cgroup of its own"
    session.interrupt()
    session.popen.wait(timeout=60)
    assert "KeyboardInterrupt" in session.output()
    # Fixtures stopped server and stress-ng; the orphan-maker's sleep is outside any fixture,
    # so only the reaper catches it.
    wait_for(lambda: all("sleep" in p for p in alive(started)), 15, "fixtures to stop their processes")
    assert not cgroup.exists(), "the server's cgroup outlived the session"
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    reap_leftovers()
    assert alive(started) == []


def test_sigkill_then_new_session_reaps_everything(pytester: pytest.Pytester, sessions, tmp_path):
    session = start_session(pytester, sessions)
    direct = psutil.Process(session.pid).children()
    started = session.descendants()
    cgroup = Path((pytester.path / "cgroup").read_text())
    assert cgroup.is_dir()
    session.popen.send_signal(signal.SIGKILL)
    session.popen.wait(timeout=30)
    # The kernel's death signal takes the direct children; the orphaned sleep survives it.
    wait_for(lambda: alive(direct) == [], 15, "direct children to die")
    assert any("sleep" in p for p in alive(started)), "the test lost its orphan; it would prove nothing"
    # A new session that uses the plugin starts: the plugin reaps before its first test.
    pytester.makepyfile(test_noop="def test_noop(kt_log_dir):\n    pass\n")
    second = sessions("test_noop.py")
    second.popen.wait(timeout=120)
    output = second.output()
    assert "reaped leftover orphan-maker" in output, output
    assert f"reaped leftover cgroup {cgroup.name}" in output, output
    assert not cgroup.exists()
    wait_for(lambda: alive(started) == [], 10, "leftovers to be reaped")
    assert list((tmp_path / "live").glob("*.json")) == []
