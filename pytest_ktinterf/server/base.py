"""What every server backend hands out, and how we decide that a server is ready.

A backend is a context manager that yields a :class:`ServerHandle`; the rest of the plugin only
sees the handle's URL, the processes to watch (none for an external server) and a log tail for
error messages. The docker backend hands out the same shape: its "processes" are the
container's (seen from the host when the engine is local) and its memory limit is set through
the engine's API rather than a cgroup file.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import psutil

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.progress import Say
from pytest_ktinterf.server.discover import cores_of
from pytest_ktinterf.system.cgroups import MemoryCgroup
from pytest_ktinterf.system.processes import Child


class LimitableMemory(Protocol):
    """What the contained-overflow actor needs of the memory around a server.

    A :class:`MemoryCgroup` (servers we start as processes) or a container's memory seen through
    the engine's API (``server/docker.py``), so the actor works on a remote engine too.
    """

    version: int | str

    @property
    def path(self) -> object: ...
    def pids(self) -> list[int]: ...
    def usage(self) -> int: ...
    def anon(self) -> int: ...
    def file_pages(self) -> int: ...
    def major_faults(self) -> int: ...
    def set_limit(self, limit: int) -> None: ...
    def unlimit(self) -> None: ...


@dataclass
class ServerHandle:
    """A reachable OpenAI-compatible server."""

    url: str
    backend: str
    description: str
    child: Child | None = None
    cgroup: MemoryCgroup | LimitableMemory | None = None
    meta: dict[str, object] = field(default_factory=dict)
    tree: Callable[[], list[psutil.Process]] | None = None  # for servers that are not our child
    tail: Callable[[int], str] | None = None
    pinned: list[int] | None = None  # cores it was pinned to, where its processes cannot be seen
    log: Path | None = None  # its log file, when not our child's (a container's pump, a file named)

    def processes(self) -> list[psutil.Process]:
        """The server's process tree (empty when we cannot see it: external, remote engine)."""
        if self.tree is not None:
            return self.tree()
        return self.child.tree() if self.child else []

    def cpus(self) -> list[int] | None:
        """The cores the server is pinned to, read from the OS (its main process's affinity); else
        as pinned or declared (``--kt-server-cpus`` for a server we cannot see), or None."""
        procs = self.processes()
        if not procs:
            return self.pinned
        return cores_of(procs)

    def log_path(self) -> Path | None:
        """The file its output goes to (read for KT's own figures), or None where we have none."""
        if self.log is not None:
            return self.log
        return self.child.log_path if self.child is not None else None

    def log_tail(self, lines: int = 30) -> str:
        if self.tail is not None:
            return self.tail(lines)
        return self.child.log_tail(lines) if self.child else "(server not started by pytest-ktinterf)"

    def exit_status(self) -> str | None:
        """How the server's process ended (``killed by SIGKILL``, ``exited with code 1``).

        None while it runs, and where we cannot tell (servers that are not our child).
        """
        if self.child is None:
            return None
        code = self.child.popen.poll()
        if code is None:
            return None
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def error_detail(self, lines: int = 30) -> str:
        """Evidence for an error the server caused: whether it is gone, then its log tail.

        Never raises: it is called while another error is on its way to the user.
        """
        try:
            head = self.description
            if self.child is not None:  # only our own child's fate is known for sure
                head += f": {self.exit_status() or 'still running'}; full log: {self.child.log_path}"
            return f"{head}\nserver log tail:\n{self.log_tail(lines)}"
        except Exception as exc:  # the evidence must not hide the error it explains
            return f"(the server's log tail could not be read: {type(exc).__name__}: {exc})"


def free_port() -> int:
    """A currently free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready_once(client: httpx.Client, url: str) -> tuple[bool, str]:
    """One readiness check: ``/health`` 200, or no ``/health`` and ``/v1/models`` 200.

    llama.cpp and SGLang answer ``/health`` (503 while loading); KT v0.2.x has none and opens
    its port only after loading, so ``/v1/models`` answering is its readiness signal.
    """
    health = client.get(f"{url}/health")
    if health.status_code == 200:
        return True, "health 200"
    if health.status_code not in (404, 405):
        return False, f"/health answered {health.status_code}"
    models = client.get(f"{url}/v1/models")
    return models.status_code == 200, f"/v1/models answered {models.status_code}"


def wait_ready(
    url: str,
    timeout_s: float,
    *,
    child: Child | None = None,
    say: Say | None = None,
    what: str = "server",
    died: Callable[[], str | None] | None = None,
    tail: Callable[[], str] | None = None,
) -> None:
    """Poll until ready; fail fast if the child exits; report progress every 10 s.

    ``died`` (for servers that are not our child, e.g. a container) returns why the server is
    gone, or None while it runs; ``tail`` gives its log tail for the error.
    """
    if tail is None:
        tail = child.log_tail if child is not None else (lambda: "")
    started = time.monotonic()
    deadline = started + timeout_s
    last_state = "no answer yet"
    next_note = started + 10.0
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0), trust_env=False) as client:
        while True:
            if child is not None and not child.alive():
                code = child.popen.returncode
                raise KtInterfError(
                    f"{what} exited with code {code} before it became ready (log: {child.log_path})",
                    "check the server command, model path and port in the log tail below",
                    detail=tail(),
                )
            gone = died() if died is not None else None
            if gone is not None:
                raise KtInterfError(
                    f"{what} {gone} before it became ready",
                    "check the image, command, model path and port in the log tail below",
                    detail=tail(),
                )
            try:
                ready, last_state = _ready_once(client, url)
                if ready:
                    return
            except httpx.HTTPError as exc:
                last_state = type(exc).__name__
            now = time.monotonic()
            if now >= deadline:
                raise KtInterfError(
                    f"{what} at {url} not ready after {timeout_s:.0f} s (last: {last_state})",
                    "raise --kt-ready-timeout if the model is large, or check the log tail below",
                    detail=tail(),
                )
            if say is not None and now >= next_note:
                say(f"waiting for {what} at {url}: {now - started:.0f} s / {timeout_s:.0f} s ({last_state})")
                next_note = now + 10.0
            time.sleep(0.2)
