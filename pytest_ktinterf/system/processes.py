"""Child processes that cannot outlive us: own process group, death signal, on-disk registry.

Everything the plugin starts (servers, stress-ng, fillers) goes through :func:`spawn`. Three
layers make sure nothing is left running:

1. each child leads its own process group, so :func:`terminate` kills the whole tree
   (stress-ng forks its workers, KT forks a scheduler and an engine);
2. the child asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), which
   covers a SIGKILL of pytest for the direct child;
3. every live group is written to a registry directory; a new session calls
   :func:`reap.reap_leftovers`, which kills groups whose owning pytest is gone (grandchildren that
   the death signal does not reach, a crashed session on another terminal).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from pytest_ktinterf.system.registry import write_record

_PR_SET_PDEATHSIG = 1


def _child_setup(cpus: Sequence[int] | None, cgroup: Path | None) -> None:
    """Runs in the child between fork and exec: die with the parent, join the cgroup, pin.

    Joining before exec means every page the program touches is charged to that cgroup; a
    process moved in later keeps its pages charged elsewhere (the kernel no longer moves them).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # pragma: no cover - not Linux
        pass
    if cgroup is not None:
        with open(cgroup / "cgroup.procs", "w") as procs:
            procs.write("0")
    if cpus:
        os.sched_setaffinity(0, set(cpus))


def tail_of(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


@dataclass
class Child:
    """A started process group and where its output goes."""

    popen: subprocess.Popen[bytes]
    name: str
    log_path: Path
    record_path: Path | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the child's combined stdout/stderr."""
        return tail_of(self.log_path, lines)

    def tree(self) -> list[psutil.Process]:
        """The child and all its descendants that are still alive."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def spawn(
    argv: Sequence[str],
    *,
    name: str,
    log_path: Path,
    cpus: Sequence[int] | None = None,
    env: dict[str, str] | None = None,
    cgroup: Path | None = None,
) -> Child:
    """Start ``argv`` in a new process group, pinned to ``cpus``, in ``cgroup``, logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(cpus, cgroup),
            env=env,
        )
    record = _register(popen.pid, name, argv)
    return Child(popen=popen, name=name, log_path=log_path, record_path=record)


def _register(pid: int, name: str, argv: Sequence[str]) -> Path | None:
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    return write_record(
        str(pid), {"pid": pid, "pgid": pid, "create_time": created, "name": name, "argv": list(argv)}
    )


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def terminate(child: Child, grace_s: float = 5.0) -> None:
    """Stop the child's whole process group: SIGTERM, then SIGKILL after ``grace_s``."""
    pgid = child.pid
    _kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if child.popen.poll() is not None and not _group_members(pgid):
            break
        time.sleep(0.05)
    else:
        _kill_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=5)
        psutil.wait_procs(_group_members(pgid), timeout=5)
    if child.popen.poll() is None:
        child.popen.kill()
        child.popen.wait(timeout=5)
    if child.record_path is not None:
        with contextlib.suppress(FileNotFoundError):
            child.record_path.unlink()


def _leader_reused(pgid: int, create_time: float) -> bool:
    """True when ``pgid`` now names someone else's process.

    The kernel does not hand out a pid still in use as a process-group id, so a group whose
    leader is gone but whose members live is still ours; only a live leader with another start
    time means the number was recycled.
    """
    try:
        return abs(psutil.Process(pgid).create_time() - create_time) > 1.0
    except psutil.NoSuchProcess:
        return False


def group_members(record: dict[str, object]) -> list[psutil.Process]:
    """The processes still in a recorded group (none when its number now names someone else's)."""
    pgid = int(record["pgid"])  # type: ignore[call-overload]
    if _leader_reused(pgid, float(record.get("create_time", 0.0))):  # type: ignore[arg-type]
        return []
    return _group_members(pgid)


def reap_group(record: dict[str, object]) -> list[str]:
    """Kill a process group a dead session left running; a line for it, or none if it is gone."""
    pgid = int(record["pgid"])  # type: ignore[call-overload]
    members = group_members(record)
    if not members:
        return []
    _kill_group(pgid, signal.SIGKILL)
    psutil.wait_procs(members, timeout=5)
    return [f"{record.get('name', '?')} (pgid {pgid}, {len(members)} processes)"]
