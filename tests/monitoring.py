"""Test helpers shared by the actor tests: a measurement window of monitor samples, and what the
kernel itself counts (``/proc/meminfo``, ``/proc/PID/status``) to hold the monitor's figures to."""

from __future__ import annotations

from pytest_ktinterf.actors.base import wait_for
from pytest_ktinterf.measure.monitor import ResourceMonitor


def wait_for_samples(monitor: ResourceMonitor, count: int = 12, timeout_s: float = 10) -> None:
    """Wait (with a deadline) until ``monitor`` holds ``count`` samples: the window a test judges."""
    wait_for(
        lambda: (len(monitor.snapshots) >= count, f"{len(monitor.snapshots)} samples"),
        timeout_s=timeout_s,
        asked=f"a window of {count} monitor samples",
        fix="the monitor thread is stuck",
    )


def meminfo_mib() -> dict[str, float]:
    """Every ``kB`` field of the host's ``/proc/meminfo`` (``AnonPages``, ``Shmem``, ...) in MiB."""
    fields: dict[str, float] = {}
    with open("/proc/meminfo") as handle:
        for row in handle:
            key, _, value = row.partition(":")
            words = value.split()
            if len(words) == 2 and words[1] == "kB":
                fields[key] = int(words[0]) / 1024
    return fields
