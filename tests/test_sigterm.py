"""SIGTERM (a runner's timeout, ``docker stop``, ``kill``) tears a session down as Ctrl-C does.

A child pytest session uses the plugin, holds a session fixture and says when its test is
running; it is then sent SIGTERM alone (as a runner does), and must exit on its own with code 2
(interrupted) after its fixtures' teardown ran -- also when a second SIGTERM arrives during that
teardown. A disposition someone else chose is left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_ktinterf.system.sigterm import sigterm_as_ctrl_c

CHILD = """
import os, pathlib, signal, time
import pytest

MARKS = pathlib.Path(os.environ["MARKS"])

@pytest.fixture(scope="session")
def held(kt_log_dir):  # any of the plugin's fixtures puts the plugin in use
    yield
    if os.environ.get("TERM_AGAIN"):
        os.kill(os.getpid(), signal.SIGTERM)  # a runner repeating its signal mid-teardown
    (MARKS / "teardown-done").write_text("")

def test_held(held):
    (MARKS / "running").write_text("")
    deadline = time.monotonic() + 60  # the parent signals long before; this only bounds a failure
    while time.monotonic() < deadline:
        time.sleep(0.05)
"""

THEIRS = """
import os, pathlib, signal

def _theirs(signum, frame):
    (pathlib.Path(os.environ["MARKS"]) / "theirs").write_text("")
    raise SystemExit(5)

signal.signal(signal.SIGTERM, _theirs)
"""


def _run_and_terminate(path: Path, marks: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_child.py"],
        cwd=path,
        env={**os.environ, **env, "MARKS": str(marks)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a runner signals pytest alone, not a terminal's group
    )
    try:
        deadline = time.monotonic() + 60
        while not (marks / "running").exists():
            assert child.poll() is None, (
                f"the child session ended before its test ran (rc {child.returncode})"
            )
            assert time.monotonic() < deadline, "the child session's test did not start within 60 s"
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=10)  # the bound for Ctrl-C, which SIGTERM now is
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    return child


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    pytester.makepyfile(test_child=CHILD)
    marks = tmp_path / "marks"
    marks.mkdir()
    yield marks


@pytest.mark.parametrize("again", [False, True], ids=["once", "twice"])
def test_sigterm_tears_the_session_down_and_exits_interrupted(
    pytester: pytest.Pytester, project: Path, again: bool
) -> None:
    child = _run_and_terminate(pytester.path, project, {"TERM_AGAIN": "1"} if again else {})
    assert child.returncode == pytest.ExitCode.INTERRUPTED, child.returncode
    assert (project / "teardown-done").exists(), "the session's fixtures were not torn down"


def test_a_handler_someone_installed_is_theirs(pytester: pytest.Pytester, project: Path) -> None:
    pytester.makeconftest(THEIRS)
    child = _run_and_terminate(pytester.path, project, {})
    assert (project / "theirs").exists()
    assert child.returncode == pytest.ExitCode.TESTS_FAILED  # their SystemExit failed the test
    assert (project / "teardown-done").exists()


def test_only_the_default_disposition_is_replaced_and_the_undo_restores_it() -> None:
    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited "ignore": kept
        sigterm_as_ctrl_c()()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        undo = sigterm_as_ctrl_c()
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        undo()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)
