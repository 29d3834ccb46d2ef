"""Dead sessions' weights copies and old log folders are reaped; a live session's folder never is.

A SIGKILLed session leaves its private weights copy (~94 MB) in ``.ktinterf/logs/session-<pid>``
(issue 13). These tests plant such folders for real processes (a dead pid: a ``true`` that has
exited; a live one: a sleeping Python or ``sleep``) and call the reaper directly; nothing here
starts a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_ktinterf.system.session_logs import (
    KEEP_DEAD_SESSION_LOGS,
    reap_session_logs,
    session_alive,
    session_log_dir,
)


def dead_pid() -> int:
    """The pid of a process that has exited (and been waited for): nothing runs under it now."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def live_python() -> Iterator[int]:
    """A running Python process, as a live pytest session looks to the reaper."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def plant(root: Path, pid: int, mtime: float | None = None) -> Path:
    """A session folder as a killed embedded-server session leaves it (and its A/B candidate's)."""
    folder = session_log_dir(root, pid)
    (folder / "candidate").mkdir(parents=True)
    (folder / "server-embedded.log").write_text("llama-server log\n")
    (folder / "weights-40123-SmolLM2-135M.gguf").write_bytes(b"\0" * 1000)
    (folder / "candidate" / "weights-40124-SmolLM2-135M.gguf").write_bytes(b"\0" * 1000)
    (folder / "docker-weights-40125").mkdir()
    (folder / "docker-weights-40125" / "SmolLM2-135M.gguf").write_bytes(b"\0" * 1000)
    if mtime is not None:
        os.utime(folder, (mtime, mtime))
    return folder


def test_a_dead_sessions_weights_go_and_its_logs_stay(tmp_path: Path):
    folder = plant(tmp_path, dead_pid(), mtime=1_700_000_000)
    said = reap_session_logs(tmp_path)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "candidate",
        "server-embedded.log",
    ]
    assert len(said) == 3 and all("removed the weights copy" in line for line in said), said
    assert folder.stat().st_mtime == 1_700_000_000  # its place in the pruning order is kept
    assert reap_session_logs(tmp_path) == []  # nothing left to say


def test_a_live_sessions_folder_is_untouched(tmp_path: Path, live_python: int):
    live = plant(tmp_path, live_python)
    mine = plant(tmp_path, os.getpid())
    before = sorted(tmp_path.rglob("*"))
    assert reap_session_logs(tmp_path, keep=0) == []  # not even pruned: they are alive
    assert sorted(tmp_path.rglob("*")) == before
    assert session_alive(live_python) and live.is_dir() and mine.is_dir()


def test_a_pid_reused_by_another_program_is_a_dead_session(tmp_path: Path):
    """The folder's pid now runs ``sleep``, not Python: the session that wrote it is gone."""
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        folder = plant(tmp_path, sleeper.pid)
        assert not session_alive(sleeper.pid)
        reap_session_logs(tmp_path)
        assert not list(folder.rglob("*weights-*"))
        assert (folder / "server-embedded.log").is_file()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_only_the_newest_dead_folders_are_kept(tmp_path: Path, live_python: int):
    assert KEEP_DEAD_SESSION_LOGS == 20
    dead = [plant(tmp_path, dead_pid(), mtime=1_700_000_000 + 60 * age) for age in range(25)]
    live = plant(tmp_path, live_python, mtime=1_600_000_000)  # older than all: alive, so kept
    unrelated = tmp_path / ".ktinterf" / "logs" / "session-notes"
    unrelated.mkdir()
    said = reap_session_logs(tmp_path)
    kept = sorted(p for p in (tmp_path / ".ktinterf" / "logs").iterdir())
    assert kept == sorted([*dead[5:], live, unrelated])
    assert [line for line in said if "log folder(s)" in line] == [
        f"removed 5 log folder(s) of dead sessions in {tmp_path / '.ktinterf' / 'logs'} (the newest 20 "
        f"are kept): {', '.join(folder.name for folder in reversed(dead[:5]))}"
    ]
    assert (live / "weights-40123-SmolLM2-135M.gguf").is_file()
    assert [copy for folder in dead[5:] for copy in folder.rglob("*weights-*")] == []
    assert all((folder / "server-embedded.log").is_file() for folder in dead[5:])
    assert reap_session_logs(tmp_path) == []  # the next session finds 20 dead folders: nothing to do


def test_no_log_folder_is_nothing_to_do(tmp_path: Path):
    assert reap_session_logs(tmp_path) == []
    assert not (tmp_path / ".ktinterf").exists()


def test_leftovers_command_lists_a_dead_sessions_copy_and_runtime_files_until_reaped(tmp_path: Path):
    """``python -m pytest_ktinterf leftovers`` (the plugin's listing) names what the reaper removes."""
    folder = plant(tmp_path, dead_pid())
    (folder / "ram-filler-idle-7f00.status").write_text("holding 1.0")
    env = {**os.environ, "KTINTERF_STATE_DIR": str(tmp_path / "state")}  # an empty registry of our own
    argv = [sys.executable, "-m", "pytest_ktinterf", "leftovers"]
    listed = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 1, listed.stderr
    lines = listed.stdout.splitlines()
    assert sum(line.startswith("weights copy ") for line in lines) == 3, lines
    assert [line for line in lines if line.startswith("runtime file ")] == [
        f"runtime file {folder / 'ram-filler-idle-7f00.status'} of a dead session"
    ]
    said = reap_session_logs(tmp_path)
    assert f"removed 1 runtime file(s) of a session that died from {folder}" in said
    again = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (again.returncode, again.stdout) == (0, ""), again.stderr
    assert (folder / "server-embedded.log").is_file()
