"""The ``embedded`` backend: llama.cpp's llama-server with SmolLM2-135M, so a laptop needs nothing else.

It is a real server with a real model, pinned to chosen cores with a chosen thread count and
parallel slots (one slot per concurrent stream), which is all the spine needs to reproduce the
report's experiments in miniature.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pytest_ktinterf.assets import EmbeddedAssets
from pytest_ktinterf.server.base import Say, ServerHandle, free_port
from pytest_ktinterf.server.process import run_command


def llama_server_argv(
    assets: EmbeddedAssets,
    *,
    port: int,
    threads: int,
    parallel: int,
    context_per_slot: int,
) -> list[str]:
    """The llama-server command line; the context is split evenly across ``parallel`` slots."""
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
) -> Iterator[ServerHandle]:
    """Start llama-server pinned to ``cpus`` and yield it once it answers ``/health``."""
    port = free_port()
    threads = threads or len(cpus)
    argv = llama_server_argv(
        assets, port=port, threads=threads, parallel=parallel, context_per_slot=context_per_slot
    )
    with run_command(
        argv,
        url=f"http://127.0.0.1:{port}",
        cpus=cpus,
        log_path=log_dir / "server-embedded.log",
        ready_timeout=ready_timeout,
        backend="embedded",
        description=f"embedded llama-server ({assets.model.name})",
        say=say,
        weights=assets.model,
    ) as handle:
        handle.meta.update(
            {"threads": threads, "parallel": parallel, "model": assets.model.name, "argv": argv}
        )
        yield handle
