"""Server backends behind one entry point, :func:`open_server`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pytest_ktinterf import assets
from pytest_ktinterf.options import Options
from pytest_ktinterf.server.base import Say, ServerHandle
from pytest_ktinterf.server.embedded import embedded_server
from pytest_ktinterf.server.external import external_server
from pytest_ktinterf.server.process import process_server

__all__ = ["ServerHandle", "open_server"]


@contextlib.contextmanager
def open_server(options: Options, log_dir: Path, say: Say | None = None) -> Iterator[ServerHandle]:
    """Bring up (or connect to) the server the options describe; tear it down on exit."""
    if options.backend == "external":
        assert options.url is not None
        yield external_server(options.url)
    elif options.backend == "process":
        assert options.server_cmd is not None
        with process_server(
            options.server_cmd,
            port=options.server_port,
            cpus=options.server_cpus,
            log_dir=log_dir,
            ready_timeout=options.ready_timeout,
            say=say,
        ) as handle:
            yield handle
    else:
        found = assets.resolve(options.llama_server, options.model)
        with embedded_server(
            found,
            cpus=options.server_cpus,
            threads=options.server_threads,
            parallel=options.parallel,
            context_per_slot=options.prompt_tokens + options.max_tokens + 64,
            log_dir=log_dir,
            ready_timeout=options.ready_timeout,
            say=say,
        ) as handle:
            yield handle
