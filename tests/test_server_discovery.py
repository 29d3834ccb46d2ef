"""A server started outside the plugin, found through its URL's port only (issue 15).

A real llama-server is started here the way a user starts theirs by hand: pinned to the last core
with ``--metrics``, not through any backend of the plugin. The external backend must find its
process from the port alone, and so its cores (for the CPU rows), its memory and its identity.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pytest_ktinterf.actors.cpu import core_set
from pytest_ktinterf.baseline.session import server_cores
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import container_lookup, open_server
from pytest_ktinterf.server.discover import (
    Found,
    autogroup,
    container_of,
    container_processes,
    in_root_cpu_group,
    is_this_host,
    listener,
    shares_our_autogroup,
)
from pytest_ktinterf.server.external import external_server
from pytest_ktinterf.system.cgroups import Cgroup
from pytest_ktinterf.system.processes import Child
from tests.hand_server import LAST_CORE, hand_started


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Child]]:
    with hand_started(tmp_path_factory.mktemp("hand"), "--metrics") as started:
        yield started


def test_the_port_owner_is_found_with_its_cores_memory_and_name(server, tmp_path):
    url, child = server
    handle = external_server(url, log_dir=tmp_path)
    assert handle.meta["discovered"] == {"pid": child.pid}
    assert [p.pid for p in handle.processes()] == [child.pid]
    assert handle.cpus() == [LAST_CORE]
    assert handle.processes()[0].memory_info().rss > 50 * 2**20  # the model is in it
    assert f"pid {child.pid} llama-server" in handle.description
    # the CPU rows' core sets now resolve instead of skipping
    assert core_set("server", handle.cpus()) == [LAST_CORE]
    assert core_set("spare", handle.cpus(), available=[0, 1, 2, LAST_CORE]) == sorted({0, 1, 2} - {LAST_CORE})


def test_declared_cores_that_contradict_the_process_are_refused(server, tmp_path):
    url, _ = server
    other = 0 if LAST_CORE != 0 else 1
    with pytest.raises(KtInterfError) as caught:
        external_server(url, log_dir=tmp_path, declared_cpus=[other])
    line = caught.value.line()
    assert f"--kt-server-cpus={other}" in line and f"cores {LAST_CORE}" in line
    assert "drop --kt-server-cpus" in line


def test_declared_cores_that_agree_are_accepted(server, tmp_path):
    url, _ = server
    assert external_server(url, log_dir=tmp_path, declared_cpus=[LAST_CORE]).cpus() == [LAST_CORE]


def test_a_named_log_file_must_exist(server, tmp_path):
    url, _ = server
    with pytest.raises(KtInterfError, match=r"--kt-server-log=.*is not a readable file"):
        external_server(url, log_dir=tmp_path, log_file=tmp_path / "missing.log")


def test_a_named_log_file_is_the_servers_log(server, tmp_path):
    url, child = server
    handle = external_server(url, log_dir=tmp_path, log_file=child.log_path)
    assert handle.log_path() == child.log_path
    assert "llama" in handle.log_tail(200).lower()


def test_a_server_on_another_host_is_not_looked_for():
    assert listener("http://192.0.2.7:8080") is None  # TEST-NET-1: never this host
    assert not is_this_host("192.0.2.7")
    assert all(is_this_host(h) for h in ("127.0.0.1", "localhost", "::1", "0.0.0.0"))


def test_unknown_cores_name_every_way_to_give_them():
    with pytest.raises(KtInterfError) as caught:
        core_set("server", None)
    line = caught.value.line()
    assert "--kt-server-cpus" in line and "root" in line and "--kt-server-cmd" in line


def test_declared_cores_stand_in_where_nothing_is_found(tmp_path, server, monkeypatch):
    """A server whose process cannot be seen (another host, no rights): the declared cores are used."""
    url, _ = server
    monkeypatch.setattr("pytest_ktinterf.server.external.listener", lambda _url: None)
    handle = external_server(url, log_dir=tmp_path, declared_cpus=[LAST_CORE])
    assert handle.processes() == [] and handle.cpus() == [LAST_CORE]
    assert "as declared" in handle.description


def test_a_container_on_host_networking_is_found_by_its_port_with_its_log(engine, tmp_path):
    """A server container on the local engine (started here through the docker backend, then
    forgotten): found from its port alone, with its container, cores and log stream."""
    options = Options(backend="docker", server_cpus=[LAST_CORE], server_cpus_given=True)
    with open_server(options, tmp_path / "started") as started:
        handle = external_server(started.url, log_dir=tmp_path / "found")
        container = engine.containers.get(started.meta["container"])
        assert handle.meta["discovered"]["container"] == container.id
        assert handle.cpus() == [LAST_CORE]
        members = handle.processes()
        assert members and all(container_of(p.pid) == container.id for p in members)
        top = container.top()  # the engine's own list of the container's processes (host pids)
        column = top["Titles"].index("PID")
        assert {p.pid for p in members} == {int(row[column]) for row in top["Processes"]}
        assert {p.pid for p in started.processes()} == {p.pid for p in members}  # the backend's own view
        log = handle.log_path()
        assert log is not None and log.parent == tmp_path / "found"
        deadline = time.monotonic() + 30
        while "listening" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.1)  # the pump copies the container's past output as it streams it
        assert "listening" in log.read_text(errors="replace")
        # named instead (a published port, a remote engine): the same container, the same cores
        named = external_server(started.url, log_dir=tmp_path / "named", container=container.name)
        assert named.meta["discovered"]["container"] == container.id and named.cpus() == [LAST_CORE]
    with pytest.raises(KtInterfError, match="--kt-server-container=gone: no such container"):
        container_lookup.by_name("gone")


def test_a_port_owned_by_dockers_proxy_is_not_taken_for_the_server(tmp_path):
    """Behind a published port the owner is docker-proxy (this VM's engine runs without a bridge,
    so no real one): a process of that name whose container is unknown is refused, naming the fix."""
    proxy = tmp_path / "docker-proxy"
    shutil.copy("/bin/sh", proxy)
    argv = [str(proxy), "-c", "sleep 30; true", "-container-ip", "192.0.2.9", "-container-port", "80"]
    process = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(process.pid).name() != "docker-proxy" and time.monotonic() < deadline:
            time.sleep(0.01)  # until the exec has happened
        with pytest.raises(KtInterfError) as caught:
            container_lookup.behind_proxy(Found(process.pid), "http://127.0.0.1:10002")
        assert "--kt-server-container NAME" in caught.value.line()
        # any other owner is the server itself
        assert container_lookup.behind_proxy(Found(os.getpid()), "http://127.0.0.1:10002") is None
    finally:
        process.kill()
        process.wait()


def test_a_server_in_pytests_own_scheduling_group_is_named(server):
    """A server started from pytest's shell shares its autogroup (measured: CPU stress then hits it
    unlike a service); the hand-started one here has a session of its own, as a service does."""
    _, child = server
    enabled = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if not enabled.exists() or enabled.read_text().strip() != "1":
        pytest.skip("this kernel schedules without autogroups: nothing to share")
    assert shares_our_autogroup(os.getpid())
    assert not shares_our_autogroup(child.pid)


def test_a_cgroup_that_is_not_the_containers_is_never_read_as_its_processes():
    """The container's cgroup is read only when its directory names the container: pytest's own
    cgroup (the host's root here) would list every process on the host as the server's."""
    assert [p.pid for p in container_processes(os.getpid(), "f" * 64)] == [os.getpid()]


def test_the_root_autogroup_is_a_group_too():
    """The kernel prints nothing for the root autogroup, where a CI runner started by init runs
    pytest (CI failed here when empty text meant "unknown"): kthreadd never calls setsid."""
    kthreadd = [p for p in psutil.process_iter(["name", "ppid"]) if p.info["name"] == "kthreadd"]
    if not kthreadd or not Path("/proc/sys/kernel/sched_autogroup_enabled").exists():
        pytest.skip("no kernel thread or no autogroups visible here")
    assert Path(f"/proc/{kthreadd[0].pid}/autogroup").read_text() == ""
    assert autogroup(kthreadd[0].pid) == "/"
    assert autogroup("self").startswith("/autogroup-") or autogroup("self") == "/"
    in_ours = autogroup("self") == "/" and in_root_cpu_group("self")  # where autogroups apply
    assert shares_our_autogroup(kthreadd[0].pid) == in_ours


def test_a_process_in_a_cpu_cgroup_is_shared_out_by_it_not_by_its_autogroup():
    """Autogroups apply only in the root CPU task group (the kernel's task_wants_autogroup): a
    process of pytest's own autogroup moved into a cpu cgroup reads the same autogroup, which
    then says nothing (on systemd hosts with cgroup v2 every session may be such a process)."""
    if os.geteuid() != 0 or Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
        pytest.skip("needs root and autogroups")
    if not in_root_cpu_group("self"):
        pytest.skip("this pytest runs in a CPU cgroup: autogroups do not apply to it")
    child = subprocess.Popen(["sleep", "60"])  # the same session: the same autogroup
    group = None
    try:
        assert shares_our_autogroup(child.pid)
        try:
            group = Cgroup.make("cpu", os.getpid(), "autogroup-test")
        except KtInterfError as exc:
            pytest.skip(f"no cpu cgroup can be made here: {exc.line()}")
        group.add([child.pid])
        assert autogroup(child.pid) == autogroup("self") and not in_root_cpu_group(child.pid)
        assert not shares_our_autogroup(child.pid)
    finally:
        child.kill()
        child.wait()
        if group is not None:
            group.remove()


def test_the_baseline_fingerprint_has_the_running_servers_cores(server):
    """A baseline of a running server is keyed by the cores it was found on, never a default."""
    url, _ = server
    assert server_cores(Options(backend="external", url=url)) == [LAST_CORE]
    assert server_cores(Options(backend="external", url="http://192.0.2.7:8080")) == []
    elsewhere = "http://192.0.2.7:8080"
    declared = Options(backend="external", url=elsewhere, server_cpus=[3], server_cpus_given=True)
    assert server_cores(declared) == [3]
