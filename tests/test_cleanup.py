"""Nothing is left running: after Ctrl-C, and after SIGKILL of pytest followed by a new session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_ktinterf.system.assets import cache_dir
from pytest_ktinterf.system.reap import reap_leftovers

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


def start_session(pytester: pytest.Pytester, state_dir: Path) -> subprocess.Popen[bytes]:
    pytester.makepyfile(test_hold=SESSION)
    env = {**os.environ, "KTINTERF_STATE_DIR": str(state_dir), "KTINTERF_CACHE": CACHE}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_hold.py"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: (pytester.path / "ready").exists() or proc.poll() is not None, 120, "the session")
    if proc.poll() is not None:
        raise AssertionError(proc.stdout.read().decode() if proc.stdout else "session ended early")
    return proc


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def alive(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    return out


def test_ctrl_c_stops_server_and_actors(pytester: pytest.Pytester, tmp_path, monkeypatch):
    proc = start_session(pytester, tmp_path)
    started = descendants(proc.pid)
    names = " ".join(p.name() for p in started)
    cmdlines = " ".join(" ".join(p.cmdline()) for p in started)
    assert "llama-server" in names and "stress-ng" in names
    assert "--stream" in cmdlines and "filler_child" in cmdlines
    cgroup = Path((pytester.path / "cgroup").read_text())
    assert cgroup.is_dir(), "the server runs in a memory cgroup of its own"
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode()
    assert "KeyboardInterrupt" in out
    # Fixtures stopped server and stress-ng; the orphan-maker's sleep is outside any fixture,
    # so only the reaper catches it.
    wait_for(lambda: all("sleep" in p for p in alive(started)), 15, "fixtures to stop their processes")
    assert not cgroup.exists(), "the server's cgroup outlived the session"
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    reap_leftovers()
    assert alive(started) == []


def test_sigkill_then_new_session_reaps_everything(pytester: pytest.Pytester, tmp_path):
    proc = start_session(pytester, tmp_path)
    direct = psutil.Process(proc.pid).children()
    started = descendants(proc.pid)
    cgroup = Path((pytester.path / "cgroup").read_text())
    assert cgroup.is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # The kernel's death signal takes the direct children; the orphaned sleep survives it.
    wait_for(lambda: alive(direct) == [], 15, "direct children to die")
    assert any("sleep" in p for p in alive(started)), "the test lost its orphan; it would prove nothing"
    # A new session starts: the plugin reaps at session start.
    pytester.makepyfile(test_noop="def test_noop():\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_noop.py"],
        cwd=pytester.path,
        env={**os.environ, "KTINTERF_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "reaped leftover orphan-maker" in result.stdout, result.stdout
    assert f"reaped leftover cgroup {cgroup.name}" in result.stdout, result.stdout
    assert not cgroup.exists()
    wait_for(lambda: alive(started) == [], 10, "leftovers to be reaped")
    assert list((tmp_path / "live").glob("*.json")) == []
