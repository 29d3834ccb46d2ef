"""SIGINT, SIGTERM or SIGKILL of pytest mid-experiment, then a new session: nothing of the old remains.

The held session (``tests.child_sessions.SESSION``) runs the embedded server in its memory
cgroup (a private weights copy in its log folder), CPU stress, memory bandwidth, a RAM filler, the
contained overflow (the cgroup's limit set) and an orphan only the reaper can reach. It is
signalled while every actor is at pressure; then a new session that uses the plugin starts, and
the plugin's own leftover listing (``system/leftovers.py``, the one place for the rule: processes,
cgroups, registry records, containers, weights copies, runtime and half-written files) must be
empty, and every process the session was seen with gone.

SIGINT is Ctrl-C (the session cleans up itself, the reaper takes the orphan); SIGTERM, a CI
runner's timeout, is Ctrl-C too while the plugin is in use (``system/sigterm.py``). SIGKILL
leaves everything to the next session, so there the listing must first name what the dead
session left -- the weights copy, the cgroup, the orphan's process group -- or its emptiness
afterwards would prove nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from pytest_ktinterf.system.leftovers import list_leftovers
from tests.child_sessions import Child, alive, start_session, wait_for

NOOP = "def test_noop(kt_log_dir):\n    pass\n"  # uses the plugin: it reaps before its first test


KINDS = ("weights copy", "cgroup", "process group", "registry record")  # what a killed session leaves


def kinds(lines: list[str]) -> set[str]:
    """Which of :data:`KINDS` the listing names."""
    return {kind for kind in KINDS for line in lines if line.startswith(kind + " ")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_signal_then_new_session_leaves_nothing(
    pytester: pytest.Pytester,
    sessions: Callable[..., Child],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sig: signal.Signals,
) -> None:
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))  # the children's registry
    session = start_session(pytester, sessions)
    started = session.descendants()
    cgroup = Path((pytester.path / "cgroup").read_text())
    assert cgroup.is_dir(), "the server runs in a memory cgroup of its own"
    weights = list((pytester.path / ".ktinterf" / "logs").glob(f"session-{session.pid}/weights-*"))
    assert weights, "the embedded server runs on a private weights copy"
    assert list_leftovers(pytester.path, containers=False) == [], "a live session's things are not leftovers"

    if sig == signal.SIGINT:
        session.interrupt()  # Ctrl-C: the terminal signals the foreground group
    else:
        os.kill(session.pid, sig)  # a runner's timeout, or kill -9, signals pytest alone
    session.popen.wait(timeout=60)
    if sig == signal.SIGTERM:
        assert session.popen.returncode == pytest.ExitCode.INTERRUPTED, session.output()
    if sig == signal.SIGKILL:
        left = list_leftovers(pytester.path, containers=False)
        assert kinds(left) == set(KINDS), left
        assert any(str(weights[0]) in line for line in left), left

    pytester.makepyfile(test_noop=NOOP)
    second = sessions("test_noop.py")
    second.popen.wait(timeout=120)
    assert second.popen.returncode == 0, second.output()
    wait_for(lambda: alive(started) == [], 15, "the old session's processes to be gone")
    assert list_leftovers(pytester.path) == []
    assert not cgroup.exists()
    assert not [p for p in weights if p.exists()]
    assert not [p for p in psutil.process_iter() if _under(p, pytester.path)]


def _under(proc: psutil.Process, path: Path) -> bool:
    """Whether ``proc`` runs on something under ``path`` (the weights copy, a log folder)."""
    try:
        return str(path) in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
