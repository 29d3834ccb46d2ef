"""Child processes a test starts (a pytest session, a holder) that cannot outlive the test.

A test that starts a child must leave nothing running whatever happens -- a timeout, a failed
assertion, an interrupt -- or the leftover disturbs every later test. :func:`child_process`
gives that guarantee:

* the child starts in a session (and process group) of its own, so it can be signalled as a
  whole, the way a terminal signals its foreground job, and never shares our group;
* SIGINT is back to its default disposition in the child: a shell that runs a job in the
  background (``nohup``, ``&``, cron, many CI runners) starts it with SIGINT ignored, the child
  inherits that, and Python then never raises ``KeyboardInterrupt``;
* its output goes to a file, not a pipe that nobody reads and that blocks it when full;
* on leaving the block, the child's group and the group of every descendant it was ever seen
  with are killed (SIGKILL) and reaped. Descendants that changed groups keep being tracked
  because the tree is recorded before anything is killed, and on every :meth:`Child.descendants`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REAP_TIMEOUT_S = 30.0


def _default_sigint() -> None:
    """Runs in the child before exec: undo an inherited ``SIG_IGN`` for SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Child:
    """A started child process, its log, and every descendant it has been seen with."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        """Everything the child wrote so far (stdout and stderr)."""
        try:
            return self.log_path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def descendants(self) -> list[psutil.Process]:
        """The child's live descendants now; each is remembered, to be killed at the end."""
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for proc in found:
            self.seen.setdefault(proc.pid, proc)
        return found

    def interrupt(self) -> None:
        """What Ctrl-C in a terminal does: SIGINT to the child's (foreground) process group."""
        os.killpg(self.pid, signal.SIGINT)

    def kill_all(self) -> None:
        """SIGKILL the child's group and the groups of all its descendants, then reap them all."""
        ours = os.getpgrp()
        groups: set[int] = set()
        if self.popen.poll() is None:  # not reaped: its pid (and so its group id) is still its own
            self.descendants()
            groups.add(self.pid)
        live = [proc for proc in self.seen.values() if proc.is_running()]  # is_running: not a reused pid
        for proc in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                groups.add(os.getpgid(proc.pid))
        for pgid in groups - {ours, 0, 1}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for proc in live:  # also the ones that had joined a group we must not kill (ours)
            with contextlib.suppress(psutil.Error):
                proc.kill()
        try:
            self.popen.wait(timeout=REAP_TIMEOUT_S)
        finally:
            _, stuck = psutil.wait_procs(live, timeout=REAP_TIMEOUT_S)
        assert not stuck, f"still alive {REAP_TIMEOUT_S:.0f} s after SIGKILL: {stuck}"


@contextlib.contextmanager
def child_process(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path
) -> Iterator[Child]:
    """Start ``argv`` (own session, default SIGINT, output to ``log_path``); kill it all on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
    child = Child(popen=popen, log_path=log_path)
    try:
        yield child
    finally:
        child.kill_all()


# -- a pytest session that holds the server and every host actor, to be interrupted or killed --

# The held session: the embedded server (its weights copy, its memory cgroup), CPU stress,
# memory bandwidth, an idle RAM filler and the contained overflow (the cgroup's limit set), plus
# a grandchild the kernel's death signal cannot reach: only the reaper can. It writes the
# server's cgroup to ``cgroup`` and ``ready`` once every actor is at pressure, then waits.
SESSION = """
import time
from pathlib import Path
from pytest_ktinterf.system.processes import spawn

def test_hold(kt_server, kt_cpu_stress, kt_memory_bandwidth, kt_ram_filler, kt_ram_overflow, kt_log_dir):
    spawn(["sh", "-c", "sleep 300 & wait"], name="orphan-maker", log_path=kt_log_dir / "o.log")
    Path("cgroup").write_text(str(kt_server.cgroup.path) if kt_server.cgroup else "")
    with kt_cpu_stress([0]), kt_memory_bandwidth([1]), kt_ram_filler(gib=0.25), kt_ram_overflow("contained"):
        Path("ready").write_text("ready")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not Path("never").exists():
            time.sleep(0.1)
"""


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_session(
    pytester: pytest.Pytester, sessions: Callable[..., Child], source: str = SESSION, *args: str
) -> Child:
    """Start the held session (``source``, pytest ``args``); return once it wrote ``ready``."""
    pytester.makepyfile(test_hold=source)
    session = sessions("test_hold.py", *args)
    wait_for(
        lambda: (pytester.path / "ready").exists() or session.popen.poll() is not None, 120, "the session"
    )
    if session.popen.poll() is not None:
        raise AssertionError(session.output() or "session ended early")
    return session


def alive(procs: list[psutil.Process]) -> list[str]:
    """``pid cmdline`` of those of ``procs`` still running (zombies are not)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    return out
