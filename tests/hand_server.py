"""A llama-server started the way a user starts theirs by hand, outside every backend of the plugin."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from pytest_ktinterf.server.base import free_port, wait_ready
from pytest_ktinterf.system import assets
from pytest_ktinterf.system.processes import Child, spawn, terminate

LAST_CORE = max(os.sched_getaffinity(0))
# Resolved now: pytester points HOME (and so the default cache) at a temporary directory.
BINARY, MODEL = str(assets.llama_server_path()), str(assets.model_path())


@contextlib.contextmanager
def hand_started(tmp_path: Path, *extra: str, cores: list[int] | None = None) -> Iterator[tuple[str, Child]]:
    """llama-server on the embedded model, started as a user would (``taskset -c LAST llama-server ...``)."""
    found = assets.resolve(BINARY, MODEL)
    port = free_port()
    argv = [str(found.llama_server), "-m", str(found.model), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["-t", "1", "-np", "4", "-c", "2048", *extra]
    child = spawn(argv, name="test:hand-started", log_path=tmp_path / "hand.log", cpus=cores or [LAST_CORE])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 120, child=child, what="the hand-started llama-server")
        yield url, child
    finally:
        terminate(child)
