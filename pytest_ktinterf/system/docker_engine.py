"""The Docker engine we talk to: connecting, labelling what we create, and reaping leftovers.

Everything the plugin creates on an engine (server containers, actor containers) carries the
labels of :func:`labels`: who owns it (host name, pid and start time of the pytest process) and
what it is. A container cannot die with its parent the way a child process can, so cleanup has
two layers, as for processes (see ``processes.py``):

1. the context managers that start containers always stop and remove them, Ctrl-C included;
2. a new session calls :func:`reap_containers`, which removes every labelled container whose
   owning pytest process on this host is gone (a SIGKILLed session, a crashed CI job).

Containers owned by a pytest on *another* host (a shared remote engine) are never touched: we
cannot tell whether their owner is alive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.processes import tail_of

LABEL = "pytest-ktinterf"  # present on everything we create; the value is the role
OWNER_HOST = "pytest-ktinterf.owner-host"
OWNER_PID = "pytest-ktinterf.owner-pid"
OWNER_START = "pytest-ktinterf.owner-start"

REQUIRE_ENV = "KTINTERF_REQUIRE_DOCKER"  # "1": no reachable engine is an error, never a skip
START_HINT = (
    "start an engine (as root: dockerd --bridge=none --iptables=false &, or "
    "python -m pytest_ktinterf docker) or point DOCKER_HOST at one"
)


def docker_required() -> bool:
    """True where a missing engine must fail the run (CI sets KTINTERF_REQUIRE_DOCKER=1)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "yes", "true")


def engine_address() -> str:
    """Where the SDK will connect: DOCKER_HOST or the default local socket."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def engine_is_local() -> bool:
    """True when the engine runs on this host (a unix socket, or TCP to loopback).

    Only then can host-side tools see the containers' processes and files (psutil, cgroup
    files, dropping the page cache); a remote engine is reached through its API alone.
    """
    address = engine_address()
    if address.startswith(("unix://", "npipe://")):
        return True
    host = address.split("://", 1)[-1].rsplit("@", 1)[-1].split(":", 1)[0].strip("[]")
    return host in ("localhost", "127.0.0.1", "::1")


def connect(timeout_s: float = 5.0) -> Any:
    """A docker SDK client whose engine answered a ping; raises :class:`KtInterfError` otherwise."""
    try:
        import docker
        import docker.errors
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise KtInterfError("the docker Python package is not installed", "pip install docker") from exc
    try:
        client = docker.from_env(timeout=int(max(timeout_s, 1)))
        client.ping()
    except Exception as exc:  # docker raises DockerException, requests errors, OSError...
        raise KtInterfError(
            f"no Docker engine answers at {engine_address()} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})",
            START_HINT,
        ) from exc
    client.api.timeout = 120  # pulls, imports and stops take longer than a ping
    return client


def try_connect(timeout_s: float = 3.0) -> tuple[Any | None, str]:
    """(client, "") or (None, why): for skips and the session-start reaper."""
    try:
        return connect(timeout_s), ""
    except KtInterfError as exc:
        return None, exc.line()


def _owner() -> dict[str, str]:
    me = psutil.Process()
    return {
        OWNER_HOST: socket.gethostname(),
        OWNER_PID: str(me.pid),
        OWNER_START: f"{me.create_time():.2f}",
    }


def labels(role: str, **extra: str) -> dict[str, str]:
    """The labels every container we create carries (``role``: server, actor name...)."""
    return {LABEL: role, **_owner(), **{f"{LABEL}.{key}": value for key, value in extra.items()}}


def _owner_gone(container_labels: dict[str, str]) -> bool:
    """True when the labelled owner was a pytest on this host that no longer runs."""
    if container_labels.get(OWNER_HOST) != socket.gethostname():
        return False
    try:
        pid = int(container_labels.get(OWNER_PID, ""))
        started = float(container_labels.get(OWNER_START, ""))
    except ValueError:
        return True
    try:
        return abs(psutil.Process(pid).create_time() - started) > 1.0  # pid reused by another
    except psutil.Error:
        return True


def ours(client: Any, *, all_owners: bool = False) -> list[Any]:
    """Labelled containers (running or not); by default only those of this process."""
    found = client.containers.list(all=True, filters={"label": LABEL})
    if all_owners:
        return list(found)
    me = _owner()
    return [c for c in found if all(c.labels.get(k) == v for k, v in me.items())]


def remove(container: Any, grace_s: int = 5) -> None:
    """Stop (SIGTERM, then SIGKILL after ``grace_s``) and remove; already gone is fine."""
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        container.stop(timeout=grace_s)
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True, v=True)


def orphaned_containers(client: Any | None = None) -> list[Any]:
    """Labelled containers whose owning pytest on this host is gone (none without an engine)."""
    if client is None:
        if not docker_configured():
            return []
        client, _ = try_connect()
        if client is None:
            return []
    return [container for container in ours(client, all_owners=True) if _owner_gone(container.labels)]


def describe(container: Any) -> str:
    """A leftover container in one line: its name, role and owner."""
    return (
        f"container {container.name} ({container.labels.get(LABEL)}, owner pid "
        f"{container.labels.get(OWNER_PID)})"
    )


def reap_containers(client: Any | None = None) -> list[str]:
    """Remove labelled containers whose owning pytest on this host is gone; lines for the log."""
    reaped = []
    for container in orphaned_containers(client):
        remove(container, grace_s=2)
        reaped.append(describe(container))
    return reaped


def docker_configured() -> bool:
    """Cheap check, no connection: is there any engine we could be using?"""
    return bool(os.environ.get("DOCKER_HOST")) or os.path.exists("/var/run/docker.sock")


@contextlib.contextmanager
def removing(container: Any) -> Iterator[Any]:
    """Yield ``container``; stop and remove it on exit, whatever happened."""
    try:
        yield container
    finally:
        remove(container)


class LogPump:
    """Copies a started container's output into a log file as it comes, for tails and post-mortems.

    Create it after ``container.start()``: a follow stream opened on a container that is not
    running yet ends at once, empty. The stream ends when the container does, so a caller that
    knows the container has exited asks for ``tail(drain=True)`` to get its last words.
    """

    def __init__(self, container: Any, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, args=(container,), daemon=True)
        self._thread.start()

    def _run(self, container: Any) -> None:
        with contextlib.suppress(Exception), open(self.path, "ab") as out:
            for chunk in container.logs(stream=True, follow=True):
                out.write(chunk)
                out.flush()

    def tail(self, lines: int = 30, *, drain: bool = False) -> str:
        if drain:
            self.join()
        return tail_of(self.path, lines)

    def join(self, timeout_s: float = 5.0) -> None:
        self._thread.join(timeout_s)


def start_local_daemon(log_path: Path, timeout_s: float = 60.0, say: Any = print) -> Any:
    """Connect, starting ``dockerd --bridge=none --iptables=false`` first if none answers.

    For machines without an init system (CI containers, this project's VMs): no bridge and no
    iptables, so it needs no network privileges beyond the host's; containers use host
    networking. The daemon is meant to outlive this command (a machine service), so it gets its
    own session and a log file.
    """
    client, why = try_connect()
    if client is not None:
        say(f"Docker engine at {engine_address()} answers")
        return client
    if os.environ.get("DOCKER_HOST"):
        raise KtInterfError(f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer ({why})", START_HINT)
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        missing = "dockerd is not installed" if dockerd is None else "we are not root"
        raise KtInterfError(
            f"no Docker engine answers and {missing}",
            "apt-get install docker.io, then run this as root (or start dockerd yourself)",
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"starting {dockerd} --bridge=none --iptables=false (log: {log_path})")
    with open(log_path, "ab") as log:
        daemon = subprocess.Popen(
            [dockerd, "--bridge=none", "--iptables=false"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise KtInterfError(
                f"dockerd exited with code {daemon.returncode} at start",
                "see its log tail below (another dockerd running? a stale /var/run/docker.pid?)",
                detail="\n".join(tail),
            )
        client, why = try_connect(timeout_s=2.0)
        if client is not None:
            say(f"dockerd (pid {daemon.pid}) answers")
            return client
        time.sleep(0.5)
    raise KtInterfError(
        f"dockerd started but did not answer within {timeout_s:.0f} s ({why})", f"see {log_path}"
    )
