"""CPU and RAM actors as containers on a real Docker engine: pinned, proven through the engine's
accounting, cross-checked from the host, and removed afterwards.

The engine here is local, so the host can see the containers' processes: each test checks the
engine's figures (what the actor trusts, also on a remote engine) against psutil's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_ktinterf.actors.container import ContainerCpuStress, ContainerMemoryBandwidth, ContainerRamFiller
from pytest_ktinterf.actors.memory import GIB, MIB
from pytest_ktinterf.actors.placement import resolve_placement
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system import docker_engine
from pytest_ktinterf.system.engine_host import ActorContainer, engine_meminfo
from pytest_ktinterf.system.image import default_tag
from pytest_ktinterf.system.lock import measuring

CORE = min(os.sched_getaffinity(0))


@pytest.fixture
def machine():
    """These tests load a core and take RAM: no measurement may run beside them."""
    with measuring():
        yield


def actor_containers(client: Any) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": "pytest-ktinterf=actor"})]


def host_processes(container: ActorContainer) -> list[psutil.Process]:
    """The container's processes as this host sees them (possible because the engine is local)."""
    container.container.reload()
    root = psutil.Process(int(container.container.attrs["State"]["Pid"]))
    return [root, *root.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def test_cpu_stress_container_is_pinned_proven_by_the_engine_and_removed(engine, machine, tmp_path):
    actor = ContainerCpuStress(cores=[CORE], client=engine, log_dir=tmp_path, name=f"cpu-stress[{CORE}]")
    with actor:
        assert actor.container is not None
        procs = host_processes(actor.container)
        assert all(set(p.cpu_affinity()) == {CORE} for p in procs)
        used0, t0 = cpu_seconds(procs), time.monotonic()
        engine0, clock0 = actor.container.cpu_clock()
        time.sleep(1.0)  # the window being measured
        host_share = (cpu_seconds(procs) - used0) / (time.monotonic() - t0)
        engine1, clock1 = actor.container.cpu_clock()
        engine_share = (engine1 - engine0) / (clock1 - clock0)
        actor.check()
        name = actor.container.name
        assert name in actor_containers(engine)
    # The engine's accounting (what the actor trusts) agrees with the host's view.
    assert host_share >= 0.9 and abs(engine_share - host_share) < 0.1, (engine_share, host_share)
    evidence = actor.evidence()
    assert evidence["placement"] == "docker" and evidence["container"] == name
    assert evidence["achieved_core_share"] >= 0.9
    assert name not in actor_containers(engine)
    assert "successful run completed" in (tmp_path / f"actor-cpu-stress[{CORE}].log").read_text()


def test_pinning_is_measured_not_taken_from_the_configuration(engine, machine, tmp_path):
    """A container whose CPU time lands on other cores than asked is refused at start."""
    other = [c for c in sorted(os.sched_getaffinity(0)) if c != CORE]
    if not other:
        pytest.skip("needs two cores")

    class Misplaced(ContainerCpuStress):
        def _launch(self, argv: list[str]) -> None:  # pinned to the wrong core on purpose
            self.container = ActorContainer.start(
                self.client, image=self.image, argv=argv[:3] + argv[5:], name=self.name,
                cpus=other, log_path=self.log_path,
            )  # fmt: skip

    actor = Misplaced(cores=[CORE], client=engine, log_dir=tmp_path, name="misplaced")
    with pytest.raises(KtInterfError, match=rf"ran outside cores {CORE}"), actor:
        pass
    assert actor.container is not None and actor.container.removed
    assert not [n for n in actor_containers(engine) if "misplaced" in n]


def test_stream_container_reports_the_bandwidth_it_took(engine, machine, tmp_path):
    actor = ContainerMemoryBandwidth(cores=[CORE], client=engine, log_dir=tmp_path, name="bandwidth")
    with actor:
        time.sleep(1.0)
        actor.check()
    evidence = actor.evidence()
    assert evidence["kind"] == "memory-bandwidth" and evidence["placement"] == "docker"
    assert evidence["read_mb_per_s"] and evidence["read_mb_per_s"] > 100
    assert not [n for n in actor_containers(engine) if "bandwidth" in n]


def test_idle_ram_filler_container_holds_its_target(engine, machine, tmp_path):
    actor = ContainerRamFiller(gib=1.0, client=engine, log_dir=tmp_path, name="ram-filler-idle")
    with actor:
        assert actor.container is not None
        resident = sum(p.memory_info().rss for p in host_processes(actor.container))
        engine_anon = actor.container.anon_bytes()
        idle0, clock0 = actor.container.cpu_clock()
        time.sleep(1.0)
        idle1, clock1 = actor.container.cpu_clock()
        idle_share = (idle1 - idle0) / (clock1 - clock0)
        actor.check()
    assert 0.9 * GIB <= resident <= 1.2 * GIB, resident / GIB
    assert 0.9 * GIB <= engine_anon <= 1.1 * GIB, engine_anon / GIB
    assert idle_share < 0.05  # idle: it holds, it does not rewrite
    evidence = actor.evidence()
    assert evidence["kind"] == "ram-filler-idle" and evidence["target"] == 1024
    assert 0.9 * 1024 <= evidence["achieved"] <= 1.1 * 1024
    assert not [n for n in actor_containers(engine) if "ram-filler" in n]


def test_active_ram_filler_container_keeps_rewriting(engine, machine, tmp_path):
    with ContainerRamFiller(gib=0.5, active=True, cpus=[CORE], client=engine, log_dir=tmp_path) as actor:
        time.sleep(1.0)
        actor.check()
    evidence = actor.evidence()
    assert evidence["kind"] == "ram-filler-active"
    assert evidence["core_share"] >= 0.9
    assert 0.9 * 512 <= evidence["achieved"] <= 1.1 * 512


def test_ram_filler_container_refuses_to_eat_the_reserve(engine, tmp_path):
    total = engine_meminfo(engine, default_tag())["MemTotal"]
    before = actor_containers(engine)
    actor = ContainerRamFiller(gib=total / GIB, client=engine, log_dir=tmp_path)
    with pytest.raises(KtInterfError, match=r"--kt-memory-reserve"), actor:
        pass
    assert actor.container is None and actor_containers(engine) == before


def test_engine_meminfo_is_the_hosts(engine):
    info = engine_meminfo(engine, default_tag())
    assert abs(info["MemTotal"] - psutil.virtual_memory().total) < 64 * MIB


def test_missing_tool_or_image_names_the_command_that_builds_it(engine, tmp_path):
    missing = "pytest-ktinterf/tools:nope"
    actor = ContainerCpuStress(cores=[CORE], client=engine, image=missing, log_dir=tmp_path)
    with pytest.raises(KtInterfError, match="python -m pytest_ktinterf docker"), actor:
        pass


def test_placement_auto_follows_the_engine(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert resolve_placement("auto", "docker") == "host"  # a local engine: the host is the box
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert resolve_placement("auto", "docker") == "host"
    monkeypatch.setenv("DOCKER_HOST", "ssh://ci@gpu-box")
    assert not docker_engine.engine_is_local()
    assert resolve_placement("auto", "docker") == "docker"
    assert resolve_placement("auto", "embedded") == "host"
    assert resolve_placement("host", "docker") == "host"
    assert resolve_placement("docker", "embedded") == "docker"


ACTORS_IN_DOCKER = """
import pytest

def test_actors(kt_cpu_stress, kt_ram_filler):
    with kt_cpu_stress([CORE]) as cpu, kt_ram_filler(gib=0.25) as ram:
        cpu.check()
        ram.check()
    assert type(cpu).__name__ == "ContainerCpuStress"
    assert type(ram).__name__ == "ContainerRamFiller"

def test_host_only_actor_refuses(kt_ram_overflow):
    with pytest.raises(Exception, match="--kt-actors-in host"):
        kt_ram_overflow(mode="host")
"""


def test_fixtures_place_actors_in_containers_when_asked(engine, pytester, tmp_path):
    pytester.makepyfile(test_in=ACTORS_IN_DOCKER.replace("CORE", str(CORE)))
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "--kt-actors-in", "docker", "test_in.py"
    )
    result.assert_outcomes(passed=2)
    assert actor_containers(engine) == []


def test_actor_container_is_labelled_for_the_reaper(engine, tmp_path):
    started = ActorContainer.start(
        engine, image=default_tag(), argv=["/usr/bin/stress-ng", "--cpu", "1", "--timeout", "60s"],
        name="label-check", cpus=[CORE], log_path=Path(tmp_path, "label.log"),
    )  # fmt: skip
    try:
        labels = started.container.labels
        assert labels[docker_engine.LABEL] == "actor"
        assert labels[docker_engine.OWNER_PID] == str(os.getpid())
        assert labels[f"{docker_engine.LABEL}.actor"] == "label-check"
        assert docker_engine.reap_containers(engine) == []  # its owner (us) is alive
    finally:
        started.remove()
    assert started.removed and "label-check" not in " ".join(actor_containers(engine))


def test_ram_filler_container_refuses_mlock_before_starting_anything(engine, tmp_path):
    before = actor_containers(engine)
    actor = ContainerRamFiller(gib=0.1, mlock=True, client=engine, log_dir=tmp_path)
    with pytest.raises(KtInterfError, match=r"mlock cannot be used in a container.*actors-in host"), actor:
        pass
    assert actor.container is None and actor_containers(engine) == before
