"""The docker backend against a real Docker engine: up, measured, overflowed, gone.

These tests need a running engine and the tools image (``python -m pytest_ktinterf docker``).
Without an engine they skip and say how to get one -- except where ``KTINTERF_REQUIRE_DOCKER=1``
(CI), where a missing engine is an error, so the suite cannot go green by skipping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf.system import docker_engine
from pytest_ktinterf.system.assets import cache_dir
from tests.child_sessions import wait_for

CACHE = str(cache_dir())  # resolved now: pytester points HOME at a temporary directory


def session_env(state_dir: Path) -> dict[str, str]:
    """A child session with its own machine lock (ours is held shared) and the real cache."""
    return {**os.environ, "KTINTERF_STATE_DIR": str(state_dir), "KTINTERF_CACHE": CACHE}


def container_ids(client: Any) -> set[str]:
    return {c.id for c in client.containers.list(all=True)}


UP_MEASURE_OVERFLOW = """
import json
from pathlib import Path

def test_up_measure_overflow(kt_server, kt_measure, kt_ram_overflow):
    assert kt_server.backend == "docker"
    container = kt_server.meta["container"]
    Path("container").write_text(container)
    base = kt_measure(streams=1, rounds=2)
    with kt_ram_overflow(mode="contained") as overflow:
        squeezed = kt_measure(streams=1, rounds=2)
    Path("result.json").write_text(json.dumps({
        "base": [r.decode_aggregate for r in base],
        "squeezed": [r.decode_aggregate for r in squeezed],
        "evidence": overflow.evidence(),
        "rss": [r.resources.get("server_rss_peak_mib") for r in base],
    }))
"""


def test_server_container_is_measured_overflowed_through_mem_limit_and_removed(
    engine: Any, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    before = container_ids(engine)
    pytester.makepyfile(test_up=UP_MEASURE_OVERFLOW)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--kt-backend",
            "docker",
            "test_up.py",
        ],
        cwd=pytester.path,
        env=session_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    import json

    result = json.loads((pytester.path / "result.json").read_text())
    evidence = result["evidence"]
    # The limit was set through the engine and reached; the weights were re-read from disk.
    assert evidence["cgroup_version"] == "docker"
    assert evidence["usage_mib"] <= evidence["limit_mib"] * 1.001
    assert evidence["usage_mib"] >= 0.9 * evidence["limit_mib"]
    assert evidence["major_faults"] > 0
    # The container's processes were visible to the monitor (a local engine).
    assert all(rss and rss > 50 for rss in result["rss"])
    # Overflow collapses decode (the report's worst row), far beyond round-to-round noise.
    assert max(result["squeezed"]) < 0.5 * min(result["base"]), result
    # Nothing is left: not the container, not any other labelled one of that session.
    assert container_ids(engine) - before == set()
    assert docker_engine.ours(engine, all_owners=True) == []
    assert "ktinterf report" in proc.stdout and "llama-server container" in proc.stdout


HOLD = """
import time
from pathlib import Path

def test_hold(kt_server, kt_cpu_stress):
    stress = kt_cpu_stress("spare")
    stress.start()
    Path("actor").write_text(stress.container.name)
    Path("container").write_text(kt_server.meta["container"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not Path("never").exists():
        time.sleep(0.1)
"""


# The next session uses the plugin (a kt_* fixture): a session that does not use it reaps nothing.
NEXT_SESSION = "def test_nothing(kt_log_dir):\n    pass\n"


def test_killed_session_leaves_a_container_that_the_next_session_reaps(
    engine: Any, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    before = container_ids(engine)
    pytester.makepyfile(test_hold=HOLD, test_trivial=NEXT_SESSION)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--kt-backend",
            "docker",
            "--kt-actors-in",
            "docker",
            "test_hold.py",
        ],
        cwd=pytester.path,
        env=session_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        marker = pytester.path / "container"
        wait_for(lambda: marker.exists() or proc.poll() is not None, 180, "the server container")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    name, actor = marker.read_text(), (pytester.path / "actor").read_text()
    left = {c.name: c.labels[docker_engine.LABEL] for c in engine.containers.list(all=True)}
    assert left.get(name) == "server" and left.get(actor) == "actor", left

    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "test_trivial.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*reaped leftover container {name} (server*"])
    result.stdout.fnmatch_lines([f"*reaped leftover container {actor} (actor*"])
    assert container_ids(engine) - before == set()  # docker ps -a: as before the session
    assert docker_engine.ours(engine, all_owners=True) == []


def test_a_container_that_exits_fails_fast_with_its_log_and_is_removed(
    engine: Any, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    before = container_ids(engine)
    pytester.makepyfile(test_up="def test_up(kt_server):\n    pass\n")
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--kt-docker-cmd", "/usr/local/bin/llama-server --model /models/missing.gguf --port {port}",
            "test_up.py",
        ],
        cwd=pytester.path,
        env=session_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert time.monotonic() - started < 120  # not the 180 s readiness deadline
    assert "container exited with code" in proc.stdout, proc.stdout[-3000:]
    assert "missing.gguf" in proc.stdout  # the log tail names the cause
    assert container_ids(engine) - before == set()


def test_missing_image_is_named_with_the_command_that_builds_it(
    engine: Any, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(test_up="def test_up(kt_server):\n    pass\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--kt-docker-image",
         "pytest-ktinterf/tools:does-not-exist", "test_up.py"],
        cwd=pytester.path, env=session_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "image 'pytest-ktinterf/tools:does-not-exist' is not on the Docker engine" in proc.stdout
    assert "python -m pytest_ktinterf docker" in proc.stdout


def test_an_illegal_instruction_is_explained_with_the_isa_fix():
    from pytest_ktinterf.server.docker import exit_reason

    reason = exit_reason(132, "loading model\n")
    assert "illegal instruction" in reason and "-AVX2" in reason and "#484" in reason
    assert "AVX2" in exit_reason(1, "Illegal instruction (core dumped)")
    assert exit_reason(1, "model not found") == "container exited with code 1"


def test_asking_for_docker_without_an_engine_is_an_error_naming_the_fix(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """No engine is a skip for the Docker tests, but an error for a user who asked for docker."""
    pytester.makepyfile(test_up="def test_up(kt_server):\n    pass\n")
    nowhere = f"unix://{tmp_path}/no-engine.sock"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--kt-backend=docker", "test_up.py"],
        cwd=pytester.path, env={**session_env(tmp_path), "DOCKER_HOST": nowhere},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"no Docker engine answers at {nowhere}" in proc.stdout, proc.stdout[-2000:]
    assert "dockerd --bridge=none --iptables=false" in proc.stdout
    assert "1 error" in proc.stdout
