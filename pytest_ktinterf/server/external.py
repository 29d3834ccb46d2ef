"""The ``external`` backend: a server someone else runs (``--kt-url``), found on this host if it is here.

We start nothing and stop nothing. What we can learn without owning it (``server/discover.py``):
its process tree from the URL's port (RSS, CPU, identity), the cores it may run on (so the CPU
rows can run), and its log (a file the user names with ``--kt-server-log``, else a container's
log stream copied into the session's log folder), read for KT's own figures. ``declared_cpus``
(``--kt-server-cpus``) stands in for the cores where the process cannot be seen (another host).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.progress import Say
from pytest_ktinterf.server import container_lookup
from pytest_ktinterf.server.base import ServerHandle
from pytest_ktinterf.server.discover import Found, cores_of, listener, shares_our_autogroup
from pytest_ktinterf.system.cpus import format_cpu_list
from pytest_ktinterf.system.processes import tail_of

SHARED_AUTOGROUP = (
    "shares this pytest's scheduling group (it was started from the same shell session): CPU "
    "stress then hits it unlike a service; start it with setsid, as a service or in a container"
)


def _check_answers(url: str, timeout_s: float) -> None:
    """One ``GET /v1/models`` proves it is an OpenAI-style server that has loaded."""
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=3.0), trust_env=False) as client:
            response = client.get(f"{url}/v1/models")
    except httpx.ConnectError as exc:
        raise KtInterfError(
            f"server at --kt-url {url} is unreachable ({exc or 'connection refused'})",
            "start the server first or correct --kt-url (scheme, host and port)",
        ) from exc
    except httpx.HTTPError as exc:
        raise KtInterfError(
            f"server at --kt-url {url} did not answer GET /v1/models ({type(exc).__name__})",
            "check that it is an OpenAI-compatible server and that it has finished loading",
        ) from exc
    if response.status_code != 200:
        raise KtInterfError(
            f"server at --kt-url {url} answered GET /v1/models with HTTP {response.status_code}",
            "point --kt-url at the server's base URL (without /v1) and wait until it has loaded",
        )


def _container_log(container: str, log_dir: Path) -> Path | None:
    """The container's log stream copied into ``log_dir`` as it comes; None without an engine."""
    from pytest_ktinterf.system import docker_engine

    client, _ = docker_engine.try_connect()
    if client is None:
        return None
    try:
        found = client.containers.get(container)
    except Exception:  # docker.errors.NotFound, APIError: the log is then simply not read
        return None
    return docker_engine.LogPump(found, log_dir / f"server-container-{found.name}.log").path


def _description(
    url: str, found: Found | None, processes: list[psutil.Process], cores: list[int] | None
) -> str:
    if found is None:
        where = f"cores {format_cpu_list(cores)} as declared" if cores else "its process not visible"
        return f"external server {url} ({where})"
    name = "?"
    if processes:
        try:
            name = processes[0].name()
        except Exception:
            name = "?"
    inside = f" in container {found.container[:12]}" if found.container else ""
    return f"external server {url} (pid {found.pid} {name}{inside}, cores {format_cpu_list(cores or [])})"


def external_server(
    url: str,
    *,
    log_dir: Path,
    declared_cpus: list[int] | None = None,
    log_file: Path | None = None,
    container: str | None = None,
    timeout_s: float = 10.0,
    say: Say | None = None,
) -> ServerHandle:
    """A handle for the server at ``url``, with its processes, cores and log where they can be found.

    ``container`` (``--kt-server-container``): the server's container by name or id, for a
    server behind a published port or on a remote engine (its cpuset then stands for its cores).
    """
    _check_answers(url, timeout_s)
    found = listener(url)
    named = container_lookup.by_name(container) if container else None
    if named is None and found is not None:
        named = container_lookup.behind_proxy(found, url)
    if named is not None:
        found = named.found
        declared_cpus = declared_cpus or (named.cpuset if found is None else None)
    processes = found.tree() if found is not None else []
    seen = cores_of(processes)
    if seen and declared_cpus and sorted(declared_cpus) != seen:
        raise KtInterfError(
            f"--kt-server-cpus={format_cpu_list(declared_cpus)} but the server at --kt-url {url} "
            f"(pid {found.pid if found else '?'}) may run on cores {format_cpu_list(seen)}",
            "drop --kt-server-cpus (its cores are read from the process), or pin the server "
            "by hand to the cores you mean (taskset -c LIST, docker --cpuset-cpus)",
        )
    if log_file is not None and not log_file.is_file():
        raise KtInterfError(
            f"--kt-server-log={log_file} is not a readable file",
            "name the file the server writes its log to (e.g. its stdout redirected), or drop the option",
        )
    container_id = named.id if named is not None else (found.container if found is not None else None)
    log = log_file or (_container_log(container_id, log_dir) if container_id else None)
    handle = ServerHandle(
        url=url,
        backend="external",
        description=_description(url, found, processes, seen or declared_cpus),
        tree=found.tree if found is not None else None,
        pinned=declared_cpus or None,
        log=log,
        tail=(lambda lines: tail_of(log, lines)) if log is not None else None,
    )
    if found is not None and shares_our_autogroup(found.pid):
        handle.meta["scheduling"] = SHARED_AUTOGROUP
        if say is not None:
            say(f"warning: {handle.description} {SHARED_AUTOGROUP}")
    handle.meta["discovered"] = (
        {"pid": found.pid, **({"container": found.container} if found.container else {})}
        if found is not None
        else {"container": named.id, "cpuset": named.cpuset}
        if named is not None
        else "not on this host, or not visible (no root)"
    )
    return handle
