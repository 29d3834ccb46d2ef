"""Finding a server someone else started: its process from the URL's port, its container, its cores.

A KT user points ``--kt-url`` at the server they already run. Knowing only its URL, the CPU
rows could not run (whose cores to stress?) and the memory table had no server RSS. On the same
host the server can be seen: the owner of the socket listening on the URL's port is its
process (a container on host networking too: its processes are the host's), and from there its
process tree, the cores it may run on (affinity, which a container's cpuset also sets) and, for
a container, its id (from ``/proc/PID/cgroup``) and so its log stream.

Seeing another user's sockets needs root (``psutil.net_connections``); without it, or for a
server on another host, nothing is found and ``--kt-server-cpus`` declares the cores instead.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system import cgroups

LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
_CONTAINER_ID = re.compile(r"(?:docker[-/]|/containers?/)([0-9a-f]{64})")


@dataclass(frozen=True)
class Found:
    """The process serving a URL on this host and, when it runs in a container, the container's id."""

    pid: int
    container: str | None = None

    def tree(self) -> list[psutil.Process]:
        """The listener and its descendants, or every process of its container (a KT server in
        a container may fork its workers from a sibling, not from the listener)."""
        if self.container is not None:
            members = container_processes(self.pid, self.container)
            if members:
                return members
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []


def is_this_host(host: str) -> bool:
    """Whether ``host`` (a URL's) names this machine: loopback, any address, or one of ours."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        with contextlib.suppress(OSError):
            return host.lower() == socket.gethostname().lower()
        return False
    if address.is_loopback or address.is_unspecified:
        return True
    ours = {
        entry.address.split("%", 1)[0]
        for entries in psutil.net_if_addrs().values()
        for entry in entries
        if entry.family in (socket.AF_INET, socket.AF_INET6)
    }
    return str(address) in ours


def url_port(url: str) -> tuple[str, int]:
    """The URL's host and port (80/443 when it gives none)."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "", parts.port or default


def listener(url: str) -> Found | None:
    """The process listening on the URL's port on this host, or None (another host, no rights).

    When several sockets listen on the port (IPv4 and IPv6, SO_REUSEPORT workers), the oldest
    process owning one is taken: a server's workers are forked from it.
    """
    host, port = url_port(url)
    if not is_this_host(host):
        return None
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    owners = {
        c.pid
        for c in connections
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }
    alive = []
    for pid in owners:
        with contextlib.suppress(psutil.Error):
            alive.append((psutil.Process(pid).create_time(), pid))
    if not alive:
        return None
    pid = min(alive)[1]
    return Found(pid=pid, container=container_of(pid))


def container_of(pid: int) -> str | None:
    """The id of the Docker container ``pid`` runs in, read from its cgroup paths; else None."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    found = _CONTAINER_ID.search(text)
    return found.group(1) if found else None


def container_processes(pid: int, container: str) -> list[psutil.Process]:
    """Every process of ``container`` (whose cgroup names it), the listener ``pid`` first.

    Read from the container's own cgroup (``cgroup.procs``, a few pids) where it can be: the
    monitor asks four times a second, and scanning every process's cgroup file on the host
    costs far more (see ``tests/benchmarks/bench_container_tree.py``). Else that scan.
    """
    pids = _cgroup_members(pid, container)
    if pids is None:
        pids = [p for p in psutil.pids() if p == pid or container_of(p) == container]
    members = []
    for member in sorted(pids, key=lambda p: p != pid):  # the listener first: its affinity names the cores
        with contextlib.suppress(psutil.Error):
            members.append(psutil.Process(member))
    return members


def _cgroup_members(pid: int, container: str) -> list[int] | None:
    """The pids in the container's ``pids`` cgroup (Docker puts all of them in one), or None when
    the cgroup cannot be read or is not the container's (the caller then scans)."""
    try:
        directory = _container_cgroup(pid, container)
    except (KtInterfError, OSError, ValueError, LookupError):
        return None
    return cgroups.pids_in(directory) or None


@functools.lru_cache(maxsize=64)
def _container_cgroup(pid: int, container: str) -> Path:
    """The container's ``pids`` cgroup directory, found once (it does not move while the container
    runs; finding it reads /proc/PID/cgroup and /proc/mounts, 40% of a look). A failure raises,
    so it is not cached: LookupError when the directory is not the container's."""
    _, directory = cgroups.locate(pid, "pids")
    if container not in directory.name:
        raise LookupError(f"cgroup {directory} is not container {container[:12]}'s")
    return directory


def container_tree(container: Any) -> Callable[[], list[psutil.Process]]:
    """A started container's processes as the host sees them (local engine only; a docker SDK
    container): read from its cgroup at each monitor sample, its main pid asked of the engine
    once (an API call a sample cost more than the rest of the sample, see the benchmark)."""
    main: list[int] = []

    def tree() -> list[psutil.Process]:
        if not main:
            with contextlib.suppress(Exception):
                container.reload()
                pid = int(container.attrs["State"]["Pid"])  # 0 once the container has stopped
                if pid:
                    main.append(pid)
        return container_processes(main[0], container.id) if main else []

    return tree


def cores_of(processes: list[psutil.Process]) -> list[int] | None:
    """The cores the server's main process (the first: the listener, the launcher) is pinned to,
    or None if unreadable.

    Its pinning is the intent (``taskset``, ``--cpuset-cpus``, ``--kt-server-cpus``): a worker
    that spreads beyond it onto the neighbours' cores is what the CPU rows and the sensitivity
    gate are there to catch, so "spare" cores must not follow it.
    """
    if not processes:
        return None
    with contextlib.suppress(psutil.Error):
        return sorted(processes[0].cpu_affinity() or []) or None
    return None


def autogroup(pid: int | str) -> str:
    """The scheduling autogroup of ``pid`` ("/autogroup-N"), or "/" for the root one.

    The kernel prints nothing for the root autogroup: init's session and every process below it
    that never called setsid, as a CI runner started by init may be. Empty text is a group too,
    and two processes in it share it. Raises OSError when the process cannot be read.
    """
    words = Path(f"/proc/{pid}/autogroup").read_text().split()
    return words[0] if words else "/"


def shares_our_autogroup(pid: int) -> bool:
    """Whether ``pid`` is in this process's scheduling autogroup (started from pytest's own shell).

    With autogroups on, the kernel shares CPU between sessions first: a server started from the
    shell that runs pytest competes with CPU stress differently from one in a session of its own
    (a service, a container, ``setsid``). Measured on this project's VM: decode -0 to +1% under
    stress on its core, against -50% for the same server started with ``setsid``.
    """
    try:
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
            return False
        same = autogroup(pid) == autogroup("self")
        return same and in_root_cpu_group(pid) and in_root_cpu_group("self")
    except OSError:
        return False


def in_root_cpu_group(pid: int | str) -> bool:
    """Whether ``pid`` is in the root CPU task group, the only place autogroups apply.

    The kernel puts a task in its autogroup only when no CPU cgroup holds it (``task_wants_
    autogroup``): a process in a v1 ``cpu`` cgroup other than "/", or in a v2 cgroup below a
    root that enables ``cpu`` for its children (systemd hosts often do), is shared out by its
    cgroup instead, and then the autogroup it reads says nothing. Raises OSError if unreadable.
    """
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path == "/"
    unified = next((line[3:] for line in lines if line.startswith("0::")), "/")
    if unified == "/":
        return True
    roots = [mount for mount, fstype, _ in cgroups.mounts() if fstype == "cgroup2"]
    return not any("cpu" in Path(root, "cgroup.subtree_control").read_text().split() for root in roots)
