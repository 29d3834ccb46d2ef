"""Figures of a process tree read from the OS: CPU seconds, resident memory, the cores it may use.

A process that has gone between listing and reading is skipped: the tree is read as it is now.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import psutil


def tree_cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs``, including children they have already reaped.

    Counting reaped children keeps short-lived helpers of a shell-wrapped command from vanishing
    out of the share between two readings.
    """
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def tree_rss_mib(procs: Sequence[psutil.Process]) -> float:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 2**20


def escaped_cores(procs: Sequence[psutil.Process], cores: Sequence[int]) -> tuple[int, list[int]] | None:
    """The first of ``procs`` allowed to run outside ``cores``, as (pid, its cores); None if none is."""
    for proc in procs:
        try:
            allowed = set(proc.cpu_affinity() or [])
        except psutil.Error:
            continue
        if not allowed <= set(cores):
            return proc.pid, sorted(allowed)
    return None
