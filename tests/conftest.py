"""Fixtures shared by several test files: a real Docker engine, child pytest sessions."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf.system import docker_engine, image
from pytest_ktinterf.system.assets import cache_dir, llama_server_path
from pytest_ktinterf.system.reap import reap_leftovers
from tests.child_sessions import Child, child_process

# Resolved now: pytester points HOME at a temporary directory for the sessions it starts.
CACHE = str(cache_dir())


@pytest.fixture(scope="session")
def engine() -> Any:
    """A client for a live engine holding the tools image; skip (or fail in CI) without one.

    ``KTINTERF_REQUIRE_DOCKER=1`` (CI) turns the skip into a failure, so the suite cannot go
    green by skipping every Docker test.
    """
    client, why = docker_engine.try_connect()
    if client is None:
        if docker_engine.docker_required():
            pytest.fail(f"{docker_engine.REQUIRE_ENV}=1 but {why}")
        pytest.skip(f"no Docker engine: {why}")
    image.build(client, llama_server_path(), image.which_stress_ng(), say=lambda _: None)
    return client


@pytest.fixture
def sessions(pytester: pytest.Pytester, tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Starts child pytest sessions that leave nothing behind, whatever the test does.

    Each child runs in a session of its own with SIGINT at its default (see
    :mod:`tests.child_sessions`), with ``tmp_path`` as its registry (``KTINTERF_STATE_DIR``). At
    teardown every child's process tree is killed and reaped, then the reaper clears what their
    registry still lists: grandchildren orphaned before they were seen, and the server's cgroup.
    ``start(test_file, *args)`` passes ``args`` to pytest.
    """
    env = {**os.environ, "KTINTERF_STATE_DIR": str(tmp_path), "KTINTERF_CACHE": CACHE}
    numbers = itertools.count()
    stack = contextlib.ExitStack()

    def start(test_file: str, *args: str) -> Child:
        log_path = tmp_path / f"session-{next(numbers)}.log"
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, test_file]
        return stack.enter_context(child_process(argv, cwd=pytester.path, env=env, log_path=log_path))

    try:
        yield start
    finally:
        try:
            stack.close()
        finally:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
                reap_leftovers()
                with contextlib.suppress(Exception):  # containers: only where an engine answers
                    docker_engine.reap_containers()
