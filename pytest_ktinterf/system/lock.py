"""Measurements never overlap anything: a machine-wide readers-writer lock.

Two experiments measuring the same machine at once would each be the other's interference, and
so would an ordinary test running on another xdist worker. The lock is an ``flock`` on a file
in the shared state directory, so it also serialises separate pytest sessions, and the kernel
releases it if its holder dies:

* measuring (every ``interference`` item, and :func:`measuring` wherever a fixture measures)
  takes it **exclusively**;
* every other test item of a session that uses the plugin takes it **shared**, so ordinary
  tests run in parallel with each other but never during a measurement (a session that does
  not use the plugin takes no lock at all: see plugin.py);
* a wait longer than its timeout fails naming the holders, read from ``/proc/locks``.

Within one process the lock is re-entrant: a measurement inside an item that already holds it
upgrades shared to exclusive and returns to shared afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.progress import Say
from pytest_ktinterf.system.registry import registry_dir

EXCLUSIVE = "exclusive"
SHARED = "shared"


class _Held:
    handle: IO[str] | None = None
    mode: str | None = None


_held = _Held()


def _lock_path() -> str:
    return str(registry_dir().parent / "measure.lock")


def holders(path: str) -> list[str]:
    """The processes holding a flock on ``path``, as "pid (command line)", read from /proc/locks.

    The kernel knows who holds a lock; asking it needs no bookkeeping that a killed holder
    could leave stale.
    """
    try:
        inode = os.stat(path).st_ino
        rows = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    found = []
    for row in rows:
        fields = row.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or int(fields[5].rsplit(":", 1)[-1]) != inode:
            continue
        pid = int(fields[4])
        try:
            command = " ".join(psutil.Process(pid).cmdline())[:120]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            command = "?"
        found.append(f"{pid} ({command})")
    return sorted(set(found))


def _acquire(
    handle: IO[str], mode: str, say: Say | None, note_every_s: float, timeout_s: float | None
) -> None:
    flag = fcntl.LOCK_EX if mode == EXCLUSIVE else fcntl.LOCK_SH
    started = time.monotonic()
    next_note = started + note_every_s
    while True:
        try:
            fcntl.flock(handle, flag | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            waited = time.monotonic() - started
            if timeout_s is not None and waited >= timeout_s:
                held_by = ", ".join(p for p in holders(handle.name) if not p.startswith(f"{os.getpid()} "))
                raise KtInterfError(
                    f"the machine lock {handle.name} is still held after {waited:.0f} s by "
                    f"{held_by or 'another process'}",
                    "wait for that test session to end or stop it (kill PID), or raise --kt-lock-timeout",
                ) from None
            if say is not None and time.monotonic() >= next_note:
                say(f"waiting for the machine: another test or session is using it ({waited:.0f} s)")
                next_note += note_every_s
            time.sleep(0.05)


@contextlib.contextmanager
def hold(
    mode: str, say: Say | None = None, note_every_s: float = 15.0, timeout_s: float | None = None
) -> Iterator[None]:
    """Hold the machine lock in ``mode`` (``EXCLUSIVE`` or ``SHARED``) for the block.

    ``timeout_s``: give up after that long with an error naming the holders (None: wait).
    """
    previous = _held.mode
    if previous in (EXCLUSIVE, mode):
        yield
        return
    if _held.handle is None:
        _held.handle = open(_lock_path(), "a+")  # noqa: SIM115 - kept open while held
    try:
        _acquire(_held.handle, mode, say, note_every_s, timeout_s)
    except BaseException:
        if previous is None:
            _held.handle.close()
            _held.handle = None
        raise
    _held.mode = mode
    try:
        yield
    finally:
        if previous is None:
            fcntl.flock(_held.handle, fcntl.LOCK_UN)
            _held.handle.close()
            _held.handle = None
            _held.mode = None
        elif _held.handle is not None:
            _acquire(_held.handle, previous, None, note_every_s, None)
            _held.mode = previous
        # else the outer hold let go first: Ctrl-C unwinds an item's protocol (and its hold) before
        # pytest tears down the item's fixtures, one of which may hold this one; nothing to restore


def measuring(say: Say | None = None) -> contextlib.AbstractContextManager[None]:
    """Hold the machine exclusively while measuring; tell the user while waiting."""
    return hold(EXCLUSIVE, say)
