"""Interference actors: processes (or limits) that take a resource away from the server, provably.

One module per resource of the report's association matrix:

* ``cpu.py`` -- stress-ng pinned to the server's cores or the spare ones;
* ``bandwidth.py`` -- stress-ng ``--stream`` (memory bandwidth);
* ``memory.py`` -- a RAM filler, idle or streaming through what it holds;
* ``overflow.py`` -- RAM overflow, contained in a memory cgroup or on the host (swap);
* ``gpu.py`` -- a GPU-memory hog and a GPU compute load (NVIDIA, through NVML: ``gpu_device.py``;
  their pure decisions: ``gpu_rules.py``);
* ``corunner.py`` -- any command, e.g. a second model server, with an optional request loop.
"""

from pytest_ktinterf.actors.bandwidth import MemoryBandwidth
from pytest_ktinterf.actors.base import Actor, Window
from pytest_ktinterf.actors.corunner import CoRunner
from pytest_ktinterf.actors.cpu import CpuStress, core_set
from pytest_ktinterf.actors.gpu import GpuCompute, GpuMemoryHog, gpu_unavailable_reason
from pytest_ktinterf.actors.memory import RamFiller
from pytest_ktinterf.actors.overflow import ContainedOverflow, HostOverflow

__all__ = [
    "Actor",
    "CoRunner",
    "ContainedOverflow",
    "CpuStress",
    "GpuCompute",
    "GpuMemoryHog",
    "HostOverflow",
    "MemoryBandwidth",
    "RamFiller",
    "Window",
    "core_set",
    "gpu_unavailable_reason",
]
