"""Reaping what sessions that died left behind: process groups first, then cgroups (memory, CPU).

Processes first: a cgroup can only be removed once nothing lives in it. Containers are reaped
by ``docker_engine.reap_containers`` (their owner is recorded in labels, not in the registry).
"""

from __future__ import annotations

from pytest_ktinterf.system.cgroups import reap_cgroup
from pytest_ktinterf.system.processes import reap_group
from pytest_ktinterf.system.registry import orphaned_records


def reap_leftovers() -> list[str]:
    """Kill process groups, then remove cgroups, left by sessions that died; a line per item."""
    reaped: list[str] = []
    orphaned = orphaned_records()
    for path, record in orphaned:
        if record.get("kind") != "cgroup":
            reaped.extend(reap_group(record))
            path.unlink(missing_ok=True)
    for path, record in orphaned:
        if record.get("kind") == "cgroup":
            reaped.extend(reap_cgroup(record))
            path.unlink(missing_ok=True)
    return reaped
