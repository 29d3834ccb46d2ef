"""Fixtures shared by the tests that need a real Docker engine."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_ktinterf.system import docker_engine, image
from pytest_ktinterf.system.assets import llama_server_path


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
