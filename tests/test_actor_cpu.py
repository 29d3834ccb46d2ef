"""The CPU stress actor with real stress-ng: its pressure is real, measured, and gone afterwards."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from pytest_ktinterf.actors.cpu import CpuStress, core_set
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.monitor import ResourceMonitor
from pytest_ktinterf.system.lock import measuring

CORE = min(os.sched_getaffinity(0))


def stress_ng_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "stress-ng"}


@pytest.fixture
def machine():
    """These tests load a core: hold the machine so no measurement runs beside them."""
    with measuring():
        yield


def test_pressure_is_measured_on_the_chosen_core_and_gone_after(machine, tmp_path):
    before = stress_ng_pids()
    actor = CpuStress(cores=[CORE], log_dir=tmp_path)
    with actor, ResourceMonitor(interval_s=0.1) as monitor:
        time.sleep(1.0)  # the window being measured, not a wait for a condition
        actor.check()
        workers = actor.child.tree()[1:]
        assert len(workers) == 1
        assert all(set(w.cpu_affinity()) == {CORE} for w in workers)
    assert monitor.per_core_cpu()[CORE] >= 90.0
    assert actor.evidence()["achieved_core_share"] >= 0.9
    assert stress_ng_pids() - before == set()
    assert actor.child.record_path is not None and not actor.child.record_path.exists()


def test_cpu_load_cap_is_honoured(machine, tmp_path):
    with CpuStress(cores=[CORE], load_percent=50, log_dir=tmp_path) as actor:
        time.sleep(2.0)
        share = actor.achieved_share()
    assert 0.4 <= share <= 0.6


def test_check_refuses_when_a_worker_dies(machine, tmp_path):
    with CpuStress(cores=[CORE], log_dir=tmp_path) as actor:
        worker = actor.child.tree()[1]
        worker.send_signal(signal.SIGKILL)
        psutil.wait_procs([worker], timeout=5)
        with pytest.raises(KtInterfError, match=r"weakened|died"):
            actor.check()
    assert not actor.child.alive()


def test_impossible_request_names_the_cores(tmp_path):
    with pytest.raises(KtInterfError, match="asked for no cores"):
        CpuStress(cores=[], log_dir=tmp_path).start()


def test_core_sets_come_from_the_server_affinity():
    assert core_set("server", [1], available=[0, 1]) == [1]
    assert core_set("spare", [1], available=[0, 1, 2, 3]) == [0, 2, 3]
    with pytest.raises(KtInterfError, match="no spare cores"):
        core_set("spare", [0, 1], available=[0, 1])
    with pytest.raises(KtInterfError, match="unknown"):
        core_set("spare", None)
    with pytest.raises(KtInterfError, match="'server', 'spare'"):
        core_set("busy", [0])
