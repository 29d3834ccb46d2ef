"""Interference measurements must never overlap: one machine-wide lock, across sessions and xdist.

Two experiments measuring the same machine at once would each be the other's interference. The
lock is an ``flock`` on a file in the shared state directory, so it also serialises separate
pytest runs, and it is released by the kernel if its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

from pytest_ktinterf.processes import registry_dir
from pytest_ktinterf.server.base import Say


@contextlib.contextmanager
def measuring(say: Say | None = None, note_every_s: float = 15.0) -> Iterator[None]:
    """Hold the machine for the duration of a measurement; tell the user while waiting."""
    path = registry_dir().parent / "measure.lock"
    with open(path, "a+") as handle:
        started = time.monotonic()
        next_note = started + note_every_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if say is not None and time.monotonic() >= next_note:
                    handle.seek(0)
                    holder = handle.read().strip() or "another session"
                    say(
                        f"waiting for the machine: {holder} is measuring ({time.monotonic() - started:.0f} s)"
                    )
                    next_note += note_every_s
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
