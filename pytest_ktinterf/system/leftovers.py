"""What sessions that died left behind on this machine: one list, one place for the rule.

The reapers (``reap.py``, ``docker_engine.reap_containers``, ``session_logs.reap_session_logs``)
remove a dead session's leftovers when the next session starts; this lists them, without
touching anything, so that a test (``tests/test_leftovers.py``) and a user
(``python -m pytest_ktinterf leftovers``) can check that nothing remains. A session is dead when
its pytest process is gone (the registry's owner pid and start time, a container's owner labels,
a log folder's pid); a live session's things are never listed.

Listed: process groups still running and cgroups still present (memory, CPU), the registry records
naming them, half-written registry records (``.tmp`` of a dead writer), containers, weights copies
and actor runtime files in the session log folders, and half-written ``.tmp`` files of the report
or plots under ``.ktinterf/``. The plugin creates no swap file (it asks the user for one); what a
dead filler held in swap goes with its process, which is listed as a process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from pytest_ktinterf.system import docker_engine
from pytest_ktinterf.system.processes import group_members
from pytest_ktinterf.system.registry import owner_alive, registry_dir
from pytest_ktinterf.system.session_logs import LOGS, dead_sessions_leftovers, session_alive


def _dead_writer(path: Path) -> bool:
    """A ``name.<pid>.tmp`` file whose writing process is gone (an atomic write cut short)."""
    parts = path.name.split(".")
    if len(parts) < 3 or parts[-1] != "tmp" or not parts[-2].isdigit():
        return False
    return not session_alive(int(parts[-2]))


def _registry_leftovers() -> list[str]:
    found = []
    for path in sorted(registry_dir().iterdir()):
        if path.name.endswith(".tmp"):
            if _dead_writer(path):
                found.append(f"half-written registry record {path}")
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            found.append(f"unreadable registry record {path}")
            continue
        if owner_alive(record):
            continue
        found.append(f"registry record {path} of dead session {record.get('owner_pid')}")
        name = record.get("name", "?")
        if record.get("kind") == "cgroup":
            if Path(str(record.get("path"))).exists():
                found.append(f"cgroup {record['path']} ({name})")
            continue
        members = [p for p in group_members(record) if _running(p)]
        if members:
            pids = ", ".join(str(p.pid) for p in members)
            found.append(f"process group {record.get('pgid')} ({name}): processes {pids}")
    return found


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def list_leftovers(rootpath: Path | None = None, *, containers: bool = True) -> list[str]:
    """A line per thing a dead session left: empty when nothing remains.

    ``rootpath`` is the pytest rootdir whose ``.ktinterf/`` is searched (default: none searched);
    ``containers=False`` skips asking the Docker engine.
    """
    found = _registry_leftovers()
    if containers:
        found += [docker_engine.describe(c) for c in docker_engine.orphaned_containers()]
    if rootpath is not None:
        for path in dead_sessions_leftovers(rootpath):
            kind = "weights copy" if path.name.startswith(("weights-", "docker-weights-")) else "runtime file"
            found.append(f"{kind} {path} of a dead session")
        logs = Path(rootpath, LOGS)
        for top, dirs, files in os.walk(Path(rootpath, ".ktinterf")):
            dirs[:] = [d for d in dirs if Path(top, d) != logs]  # session folders: above
            found += [f"half-written file {Path(top, f)}" for f in files if _dead_writer(Path(top, f))]
    return found
