"""A running server's container: named by the user, or behind Docker's proxy on its published port.

With host networking (KT's documented ``docker run --network host``) the port's owner is the
server itself (``server/discover.py``). With a published port (``-p 10002:10002``) the owner is
Docker's userland proxy, whose RSS and cores say nothing of the server: the proxy's own command
line names the container's address, and the engine says which container has it. On a remote
engine (``DOCKER_HOST``) the container's processes are not ours to see, but its cpuset is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import psutil

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.server.discover import Found
from pytest_ktinterf.system import docker_engine
from pytest_ktinterf.system.cpus import parse_cpu_list

PROXY = "docker-proxy"


@dataclass(frozen=True)
class Container:
    """A server's container as the engine knows it."""

    id: str
    name: str
    found: Found | None  # its main process, when the engine is local
    cpuset: list[int] | None  # --cpuset-cpus, when it was pinned


def _describe(container: Any) -> Container:
    state = container.attrs.get("State") or {}
    if not state.get("Running"):
        raise KtInterfError(
            f"--kt-server-container={container.name} is not running ({state.get('Status', 'unknown')})",
            "start the server's container first, or name the one that serves --kt-url (docker ps)",
        )
    cpuset_text = (container.attrs.get("HostConfig") or {}).get("CpusetCpus") or ""
    cpuset = parse_cpu_list(cpuset_text, check_available=False) if cpuset_text else None
    pid = int(state.get("Pid") or 0)
    local = docker_engine.engine_is_local() and pid > 0
    return Container(container.id, container.name, Found(pid, container.id) if local else None, cpuset)


def by_name(name: str) -> Container:
    """The running container ``name`` (or id) on the engine, or an error naming the fix."""
    client = docker_engine.connect()
    try:
        container = client.containers.get(name)
    except Exception as exc:  # docker.errors.NotFound, APIError
        where = docker_engine.engine_address()
        raise KtInterfError(
            f"--kt-server-container={name}: no such container on the engine at {where}",
            "give the name or id that `docker ps` shows for the server's container",
        ) from exc
    return _describe(container)


def behind_proxy(found: Found, url: str) -> Container | None:
    """The container Docker's proxy forwards the port to; None when the owner is not the proxy."""
    try:
        process = psutil.Process(found.pid)
        if process.name() != PROXY:
            return None
        argv = process.cmdline()
    except psutil.Error:
        return None
    address = argv[argv.index("-container-ip") + 1] if "-container-ip" in argv[:-1] else None
    client, _ = docker_engine.try_connect()
    if address is not None and client is not None:
        for container in client.containers.list():
            networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
            with contextlib.suppress(AttributeError):
                if any(net.get("IPAddress") == address for net in networks.values()):
                    return _describe(container)
    raise KtInterfError(
        f"the port of --kt-url {url} belongs to Docker's proxy for a published port, and its "
        "container could not be found through the engine",
        "name the server's container with --kt-server-container NAME (docker ps), or run it "
        "with --network host",
    )
