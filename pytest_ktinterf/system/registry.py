"""The registry of what this machine's sessions own: one JSON record per process group or cgroup.

Every process group and cgroup (memory, CPU) the plugin creates is recorded here with its owner (the
pytest process and its start time), so that a later session can reap what a killed one left
behind. Records are written atomically: a session starting beside a live one never reads half a
record and mistakes it for garbage. The folder must be ours alone, since a record is an order to
kill.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from pytest_ktinterf.datafile import write_atomic
from pytest_ktinterf.errors import KtInterfError


def registry_dir() -> Path:
    """Where live process groups are recorded (machine-wide, shared by all sessions).

    The folder must be this user's alone (:func:`_check_private`): the reaper kills the process
    groups and empties the cgroups its records name.
    """
    base = Path(
        os.environ.get("KTINTERF_STATE_DIR")
        or os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp", f"pytest-ktinterf-{os.getuid()}")
    )
    path = base / "live"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(base)
    _check_private(path)
    return path


def _check_private(folder: Path) -> None:
    """Refuse a state folder that another user owns or may write (a link to one included).

    The default lives in ``/tmp`` under a name anyone can guess: a local user who created it
    first, or who may write records into it, could make the next root session SIGKILL a process
    group or empty a cgroup of their choice (a record names its pgid and start time, both
    readable in ``/proc``), or hold the machine lock for ever.
    """
    uid = os.getuid()
    link, target = folder.lstat(), folder.stat()
    if link.st_uid != uid or target.st_uid != uid or target.st_mode & 0o022:
        raise KtInterfError(
            f"the state folder {folder} is not private to this user (owner uid {target.st_uid}, "
            f"mode {target.st_mode & 0o777:o}{', a link' if folder.is_symlink() else ''}): another "
            "user could plant records there that make this session kill processes of their choice",
            f"remove it (rm -r {folder}) or set KTINTERF_STATE_DIR to a folder only you can write",
        )


def write_record(stem: str, payload: dict[str, object]) -> Path:
    """Record something we own (a process group, a cgroup) with us as its owner, for the reaper."""
    record = registry_dir() / f"{stem}.json"
    owner = {"owner_pid": os.getpid(), "owner_create_time": psutil.Process().create_time()}
    write_atomic(record, json.dumps({**payload, **owner}))  # a starting session never reads half of it
    return record


def owner_alive(record: dict[str, object]) -> bool:
    try:
        owner = psutil.Process(int(record["owner_pid"]))  # type: ignore[arg-type]
        return abs(owner.create_time() - float(record["owner_create_time"])) < 1.0  # type: ignore[arg-type]
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return False


def orphaned_records() -> list[tuple[Path, dict[str, object]]]:
    """Registry records whose owning session is gone (unreadable ones are dropped)."""
    orphaned = []
    for path in sorted(registry_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if not owner_alive(record):
            orphaned.append((path, record))
    return orphaned
