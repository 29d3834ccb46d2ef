"""What one look at a container's processes costs: the monitor asks four times a second.

    python -m tests.benchmarks.bench_container_tree [calls]   (default 200)

A real server container (the docker backend, tools image, last core) is started, then each way
of listing its processes as the host sees them is called ``calls`` times and timed:

- ``engine``: the docker backend's way before: ``container.reload()`` (an API call to the engine)
  for its main pid, then that process's descendants;
- ``scan``: the external backend's way before: every process's ``/proc/PID/cgroup`` read;
- ``cgroup``: now (``server.discover.container_processes``): the container's own cgroup's
  ``cgroup.procs``.

Printed: the mean CPU and wall ms per call of each, the processes on the host, and the ratio of
each old way to the new one. Numbers, not assertions; needs root and a Docker engine.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from pytest_ktinterf.options import Options
from pytest_ktinterf.server import open_server
from pytest_ktinterf.server.discover import container_of, container_processes
from pytest_ktinterf.system import docker_engine, image
from pytest_ktinterf.system.assets import llama_server_path


def _timed(look: Callable[[], list[psutil.Process]], calls: int) -> tuple[float, float, int]:
    """(CPU ms, wall ms) per call of ``look`` and how many processes it found."""
    found = len(look())
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        look()
    return (time.process_time() - cpu) * 1e3 / calls, (time.perf_counter() - wall) * 1e3 / calls, found


def main(argv: list[str]) -> int:
    calls = int(argv[1]) if len(argv) > 1 else 200
    client, why = docker_engine.try_connect()
    if client is None:
        print(f"no Docker engine: {why}")
        return 1
    image.build(client, llama_server_path(), image.which_stress_ng(), say=lambda _: None)
    last = (os.cpu_count() or 1) - 1
    options = Options(backend="docker", server_cpus=[last], server_cpus_given=True)
    with tempfile.TemporaryDirectory() as tmp, open_server(options, Path(tmp)) as server:
        container = client.containers.get(server.meta["container"])

        def engine() -> list[psutil.Process]:
            container.reload()
            root = psutil.Process(int(container.attrs["State"]["Pid"]))
            return [root, *root.children(recursive=True)]

        pid = int(container.attrs["State"]["Pid"])

        def scan() -> list[psutil.Process]:
            return [psutil.Process(p) for p in psutil.pids() if container_of(p) == container.id]

        ways = {"engine": engine, "scan": scan, "cgroup": lambda: container_processes(pid, container.id)}
        results = {name: _timed(look, calls) for name, look in ways.items()}
    print(f"{calls} calls each; {len(psutil.pids())} processes on this host")
    for name, (cpu_ms, wall_ms, found) in results.items():
        print(f"{name:7} {cpu_ms:7.3f} ms CPU  {wall_ms:7.3f} ms wall per call  ({found} processes found)")
    new_cpu, new_wall, _ = results["cgroup"]
    for name in ("engine", "scan"):
        cpu_ms, wall_ms, _ = results[name]
        print(f"{name} / cgroup: CPU x{cpu_ms / new_cpu:.1f}, wall x{wall_ms / new_wall:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
