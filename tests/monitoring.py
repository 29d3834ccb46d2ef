"""Test helper shared by the actor tests: a measurement window of monitor samples."""

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
