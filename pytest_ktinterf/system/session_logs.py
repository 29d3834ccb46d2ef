"""The sessions' log folders (``.ktinterf/logs/session-<pid>``): where they are, and reaping them.

A session's folder holds its server and actor logs, kept after the run for post-mortems, and,
while an embedded server runs, a private copy of the model weights (``weights-<port>-<model>``,
~94 MB for the default model; ``docker-weights-<port>/`` for the docker backend; see
``server/embedded.py``). A session that ends normally deletes its copy; a SIGKILLed one cannot,
and nothing pruned the folders either, so a CI machine filled its disk one killed session at a
time (issue 13). So every session that uses the plugin reaps, at its start and beside the process
and cgroup reaper (``plugin._activate``): the weights copies of dead sessions, and the folders of
dead sessions beyond the newest :data:`KEEP_DEAD_SESSION_LOGS`.

A folder is a dead session's only when that is sure: its pid names no process, or one that is
not Python (the pid was reused by another program). A live Python process keeps the folder even
if it is another program that got the pid: keeping a folder too long costs disk, deleting a live
session's logs would cost its run.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
from pathlib import Path

import psutil

LOGS = Path(".ktinterf", "logs")  # under the pytest rootdir
PREFIX = "session-"
# Dead sessions' folders kept, newest first: their logs are the post-mortem of a crash (the
# server's log, the actors'), and 20 reach back over the last several runs of a CI job; with
# their weights copies gone a folder holds only logs, so 20 of them bound the disk taken.
KEEP_DEAD_SESSION_LOGS = 20
WEIGHTS = ("weights-*", "docker-weights-*")  # server/embedded.py, server/docker.py
# What a live session's actors use to talk with their children and delete at stop (a filler's
# status and grow files, actors/memory.py; a GPU child's ready file, actors/gpu.py; the ``.tmp``
# of their atomic writes): a killed session cannot delete them, and they are not logs.
RUNTIME = ("*.status", "*.grow", "*.ready", "*.tmp")
_PYTHON = ("python", "pytest", "py.test", "pypy")  # what runs a pytest session


def session_log_dir(rootpath: Path, pid: int | None = None) -> Path:
    """The log folder of the session ``pid`` (default: this process) under ``rootpath``."""
    return Path(rootpath, LOGS, f"{PREFIX}{pid or os.getpid()}")


def session_alive(pid: int) -> bool:
    """False only when the session ``pid`` is surely gone; when unsure (no permission), True."""
    if pid == os.getpid():
        return True
    try:
        process = psutil.Process(pid)
        names = [process.name(), *process.cmdline()[:2]]  # "pytest", or "python3 -m pytest"
    except psutil.NoSuchProcess:  # a zombie too: it runs nothing any more
        return False
    except psutil.Error:
        return True
    return any(word in Path(name).name.lower() for name in names if name for word in _PYTHON)


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(Path(top, name).lstat().st_size for top, _, files in os.walk(path) for name in files)


def _matching(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Every file or folder in a session folder (the candidate's subfolder too) named by ``patterns``."""
    found = []
    for top, dirs, files in os.walk(folder):  # symlinked folders are not followed
        for name in [*dirs, *files]:
            if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                found.append(Path(top, name))
        dirs[:] = [d for d in dirs if Path(top, d) not in found]
    return found


def _weights_copies(folder: Path) -> list[Path]:
    """Every ``weights-*`` file or folder in a session folder (the candidate's subfolder too)."""
    return _matching(folder, WEIGHTS)


def dead_sessions_leftovers(rootpath: Path) -> list[Path]:
    """What dead sessions' log folders under ``rootpath`` still hold besides logs: weights copies
    and runtime files. Empty is the state :func:`reap_session_logs` leaves."""
    logs = Path(rootpath, LOGS)
    if not logs.is_dir():
        return []
    folders = [folder for _, folder in _dead_session_folders(logs)]
    return [path for folder in folders for path in _matching(folder, WEIGHTS + RUNTIME)]


def _remove(path: Path) -> None:
    """Delete a file, link or folder; raises OSError (a folder left by root, say) for the caller."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _dead_session_folders(logs: Path) -> list[tuple[int, Path]]:
    """``(mtime_ns, folder)`` of every dead session's folder, newest first."""
    found = []
    for folder in logs.glob(f"{PREFIX}*"):
        pid = folder.name[len(PREFIX) :]
        if folder.is_symlink() or not folder.is_dir() or not pid.isdigit() or session_alive(int(pid)):
            continue
        try:
            found.append((folder.stat().st_mtime_ns, folder))
        except OSError:  # reaped meanwhile by a session starting beside us
            continue
    return sorted(found, key=lambda item: (item[0], item[1].name), reverse=True)


def reap_session_logs(rootpath: Path, keep: int = KEEP_DEAD_SESSION_LOGS) -> list[str]:
    """Delete dead sessions' weights copies and runtime files, and their folders beyond the newest ``keep``.

    Returns a line per weights copy and one for the pruned folders, for the session to print;
    what cannot be deleted (a folder a root session left, say) is named, never an error. A
    folder keeps its modification time when its copy goes: the order the next prune reads.
    """
    logs = Path(rootpath, LOGS)
    if not logs.is_dir():
        return []
    dead = _dead_session_folders(logs)
    said: list[str] = []
    pruned = []
    for _, folder in dead[keep:]:
        try:
            _remove(folder)
            pruned.append(folder.name)
        except OSError as exc:
            said.append(f"could not remove the log folder {folder} of a session that died: {exc.strerror}")
    if pruned:
        said.append(
            f"removed {len(pruned)} log folder(s) of dead sessions in {logs} (the newest {keep} are "
            f"kept): {', '.join(pruned)}"
        )
    for _, folder in dead[:keep]:
        try:
            stat = folder.stat()
            copies = _weights_copies(folder)
        except OSError:
            continue
        for copy in copies:
            try:
                size = _size(copy)
                _remove(copy)
            except FileNotFoundError:  # removed meanwhile by a session starting beside us
                continue
            except OSError as exc:
                said.append(
                    f"could not remove the weights copy {copy} of a session that died: {exc.strerror}"
                )
                continue
            said.append(f"removed the weights copy {copy} ({size / 1e6:.0f} MB) of a session that died")
        runtime = 0
        for path in _matching(folder, RUNTIME):
            with contextlib.suppress(OSError):  # tiny files: one that resists is not worth a line
                path.unlink()
                runtime += 1
        if runtime:
            said.append(f"removed {runtime} runtime file(s) of a session that died from {folder}")
        with contextlib.suppress(OSError):
            os.utime(folder, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return said
