"""The ``process`` backend: any command line (KT, vLLM, SGLang, llama.cpp) started and owned by us."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.server.base import Say, ServerHandle, free_port, wait_ready
from pytest_ktinterf.system.cgroups import MemoryCgroup, drop_file_cache
from pytest_ktinterf.system.cpu_quota import CpuCgroup
from pytest_ktinterf.system.processes import spawn, terminate


def expand_command(command: str, port: int) -> list[str]:
    """Split a command line and substitute ``{port}``."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise KtInterfError(f"--kt-server-cmd cannot be parsed ({exc})", "check its quoting") from exc
    if not argv:
        raise KtInterfError("--kt-server-cmd is empty", "give the command that starts the server")
    return [part.replace("{port}", str(port)) for part in argv]


@contextlib.contextmanager
def run_command(
    argv: Sequence[str],
    *,
    url: str,
    cpus: Sequence[int] | None,
    log_path: Path,
    ready_timeout: float,
    backend: str,
    description: str,
    say: Say | None = None,
    weights: Path | None = None,
    cpu_quota: float | None = None,
) -> Iterator[ServerHandle]:
    """Start ``argv`` pinned to ``cpus`` in a memory cgroup of its own, wait until ``url`` is ready.

    The cgroup (unlimited; root only) is what the contained RAM-overflow actor later limits.
    ``weights``, when known, is dropped from the page cache first so the server is charged for it.
    ``cpu_quota`` (``--kt-server-cpu-quota``) caps the server at that fraction of its cores' time
    in a CPU cgroup of its own (``system/cpu_quota.py``), removed with the server.
    """
    if shutil.which(argv[0]) is None:
        raise KtInterfError(
            f"server command '{argv[0]}' was not found",
            "give a full path or install it; see --kt-server-cmd / --kt-llama-server",
        )
    with contextlib.ExitStack() as cleanup:  # on the way out: the server, then its cgroups
        group, why = MemoryCgroup.try_create(f"server-{backend}")
        if group is not None:
            cleanup.callback(group.remove)
        if weights is not None and group is not None:
            drop_file_cache(weights)
        capped = None
        if cpu_quota is not None:
            cores = len(cpus) if cpus else len(os.sched_getaffinity(0))
            capped = CpuCgroup.create(f"server-{backend}", cpu_quota, cores)
            cleanup.callback(capped.remove)
        child = spawn(
            argv, name=f"server:{backend}", log_path=log_path, cpus=cpus, cgroup=group.path if group else None
        )
        cleanup.callback(terminate, child)
        if capped is not None:  # CPU time is charged where a thread runs now: uncapped only till here
            capped.add([child.pid])
        wait_ready(url, ready_timeout, child=child, say=say, what=description)
        handle = ServerHandle(url=url, backend=backend, description=description, child=child, cgroup=group)
        handle.meta["memory_cgroup"] = str(group.path) if group else f"none ({why})"
        if capped is not None:
            capped.add([proc.pid for proc in child.tree()])  # any it forked before it was moved in
            handle.meta.update(capped.meta())
            if say is not None:
                say(f"{description} started with its {capped.describe()}")
        yield handle


@contextlib.contextmanager
def process_server(
    command: str,
    *,
    port: int | None,
    cpus: Sequence[int] | None,
    log_dir: Path,
    ready_timeout: float,
    say: Say | None = None,
    cpu_quota: float | None = None,
) -> Iterator[ServerHandle]:
    """Run the user's server command; ``{port}`` in it gets a free port."""
    if "{port}" in command:
        port = free_port()
    elif port is None:
        raise KtInterfError(
            "--kt-server-cmd has no '{port}' and no --kt-server-port was given",
            "put '{port}' where the command takes its port, or pass --kt-server-port",
        )
    argv = expand_command(command, port)
    with run_command(
        argv,
        url=f"http://127.0.0.1:{port}",
        cpus=cpus,
        log_path=log_dir / "server-process.log",
        ready_timeout=ready_timeout,
        backend="process",
        description=f"server command '{Path(argv[0]).name}'",
        say=say,
        cpu_quota=cpu_quota,
    ) as handle:
        yield handle
