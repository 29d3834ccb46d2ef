"""The ``embedded`` backend: llama.cpp's llama-server with SmolLM2-135M, so a laptop needs nothing else.

It is a real server with a real model, pinned to chosen cores with a chosen thread count and
parallel slots (one slot per concurrent stream), which is all the spine needs to reproduce the
report's experiments in miniature.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

from pytest_ktinterf.server.base import Say, ServerHandle, free_port
from pytest_ktinterf.server.process import run_command
from pytest_ktinterf.system.assets import EmbeddedAssets


def llama_server_argv(
    assets: EmbeddedAssets,
    *,
    port: int,
    threads: int,
    parallel: int,
    context_per_slot: int,
) -> list[str]:
    """The llama-server command line; the context is split evenly across ``parallel`` slots, and
    ``/metrics`` is on so the report shows the server's own rates beside the probe's."""
    return [
        str(assets.llama_server),
        "--model", str(assets.model),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--threads", str(threads),
        "--threads-batch", str(threads),
        "--parallel", str(parallel),
        "--ctx-size", str(context_per_slot * parallel),
        "--no-webui",
        "--metrics",  # its own counters, scraped per round beside the probe's (measure/server_view.py)
    ]  # fmt: skip


@contextlib.contextmanager
def embedded_server(
    assets: EmbeddedAssets,
    *,
    cpus: list[int],
    threads: int | None,
    parallel: int,
    context_per_slot: int,
    log_dir: Path,
    ready_timeout: float,
    say: Say | None = None,
    cpu_quota: float | None = None,
) -> Iterator[ServerHandle]:
    """Start llama-server pinned to ``cpus`` and yield it once it answers ``/health``.

    ``cpu_quota``: capped at that fraction of the cores' time (see ``server.process.run_command``).
    """
    port = free_port()
    threads = threads or len(cpus)
    # A private copy of the weights: pages are charged to the cgroup that first reads them, and
    # the shared file may be mapped by a co-runner or another session, whose pages no limit on
    # this server's cgroup could evict (contained RAM overflow would then see nothing to do).
    private = log_dir / f"weights-{port}-{assets.model.name}"
    shutil.copyfile(assets.model, private)
    served = dataclasses.replace(assets, model=private)
    argv = llama_server_argv(
        served, port=port, threads=threads, parallel=parallel, context_per_slot=context_per_slot
    )
    try:
        with run_command(
            argv,
            url=f"http://127.0.0.1:{port}",
            cpus=cpus,
            log_path=log_dir / "server-embedded.log",
            ready_timeout=ready_timeout,
            backend="embedded",
            description=f"embedded llama-server ({assets.model.name})",
            say=say,
            weights=private,
            cpu_quota=cpu_quota,
        ) as handle:
            handle.meta.update(
                {"threads": threads, "parallel": parallel, "model": assets.model.name, "argv": argv}
            )
            yield handle
    finally:
        private.unlink(missing_ok=True)
