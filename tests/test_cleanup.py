"""Nothing is left running: after Ctrl-C, and after SIGKILL of pytest followed by a new session.

The held session (``SESSION``) and the ``sessions`` fixture are shared with ``test_leftovers.py``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from pytest_ktinterf.system.reap import reap_leftovers
from tests.child_sessions import alive, start_session, wait_for


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
