"""The RAM filler with real memory: it holds what it was asked (within 10%, measured by the
plugin's own monitor), idle or streaming, refuses unsafe fills, and leaves nothing behind."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_ktinterf.actors.memory import GIB, RamFiller, plan_fill, proc_status_bytes
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.monitor import ResourceMonitor
from pytest_ktinterf.system.lock import measuring
from tests.monitoring import wait_for_samples

CORE = min(os.sched_getaffinity(0))


@pytest.fixture
def machine():
    """These tests take GiBs of RAM and a core: hold the machine so no measurement runs beside."""
    with measuring():
        yield


def fillers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "pytest_ktinterf.actors.filler_child" in cmdline:
            found.append(proc)
    return found


def test_idle_filler_holds_its_target_as_the_monitor_sees_it(machine, tmp_path):
    before = fillers()
    with ResourceMonitor(interval_s=0.1) as monitor:
        baseline = monitor.sample().ram_used_mib
        with RamFiller(gib=2.0, log_dir=tmp_path) as actor:
            during = monitor.sample().ram_used_mib
            actor.check()
            evidence = actor.evidence()
    grown_gib = (during - baseline) / 1024
    assert 1.8 <= grown_gib <= 2.2, f"host RAM used grew by {grown_gib:.2f} GiB for a 2 GiB filler"
    assert 0.9 * 2048 <= evidence["achieved"] <= 1.1 * 2048
    assert evidence["kind"] == "ram-filler-idle" and evidence["target"] == 2048
    assert fillers() == before
    assert actor.child is not None and actor.child.record_path is not None
    assert not actor.child.record_path.exists()


def test_leave_available_fills_until_that_much_is_left(machine, tmp_path):
    leave = psutil.virtual_memory().available / 2 / GIB
    with RamFiller(leave_available_gib=leave, log_dir=tmp_path) as actor:
        left = psutil.virtual_memory().available / GIB
        actor.check()
    assert abs(left - leave) <= 0.1 * leave, f"asked to leave {leave:.1f} GiB, {left:.1f} GiB left"


def test_active_filler_streams_through_its_memory_on_its_core(machine, tmp_path):
    with RamFiller(gib=0.5, active=True, cpus=[CORE], log_dir=tmp_path) as actor:
        with ResourceMonitor(interval_s=0.1) as monitor:
            wait_for_samples(monitor)
        actor.check()
    evidence = actor.evidence()
    assert monitor.per_core_cpu()[CORE] >= 90.0, "streaming should keep its core busy"
    assert evidence["kind"] == "ram-filler-active"
    assert evidence["stream_gb_per_s"] and evidence["stream_gb_per_s"] > 0.5


def test_mlock_locks_every_page(machine, tmp_path):
    with RamFiller(gib=0.5, mlock=True, log_dir=tmp_path) as actor:
        assert actor.child is not None
        locked = proc_status_bytes(actor.child.pid, "VmLck")
    assert locked >= 0.9 * 0.5 * GIB


def test_check_refuses_when_the_filler_dies(machine, tmp_path):
    with RamFiller(gib=0.25, log_dir=tmp_path) as actor:
        assert actor.child is not None
        os.killpg(actor.child.pid, signal.SIGKILL)
        actor.child.popen.wait(timeout=10)
        with pytest.raises(KtInterfError, match="died during the measurement window"):
            actor.check()


def test_unsafe_fill_is_refused_before_anything_starts(tmp_path):
    available = psutil.virtual_memory().available
    with pytest.raises(KtInterfError, match=r"--kt-memory-reserve") as err:
        RamFiller(gib=available / GIB + 1, log_dir=tmp_path).start()
    assert "ask for at most" in str(err.value)
    assert fillers() == []


@given(
    available=st.integers(0, 2**40),
    reserve=st.integers(0, 2**36),
    hold=st.one_of(st.none(), st.integers(-(2**30), 2**40)),
    leave=st.integers(0, 2**40),
)
def test_plan_never_goes_below_the_reserve(available, reserve, hold, leave):
    kwargs = {"hold": hold} if hold is not None else {"leave_available": leave}
    try:
        size = plan_fill(available=available, reserve=reserve, **kwargs)
    except KtInterfError as exc:
        assert exc.fix  # every refusal says what to do
        return
    assert size > 0
    assert available - size >= reserve
    if hold is not None:
        assert size == hold
    else:
        assert size == available - leave
