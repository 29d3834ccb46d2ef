"""The RAM filler with real memory: it holds what it was asked (within 10%, measured by the
plugin's own monitor), idle or streaming, refuses unsafe fills, and leaves nothing behind."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_ktinterf.actors.memory import GIB, MIB, RamFiller, plan_fill, proc_status_bytes
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.monitor import ResourceMonitor
from pytest_ktinterf.system.lock import measuring
from tests.monitoring import meminfo_mib, wait_for_samples

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
    """The monitor, watching the filler, sees its 2 GiB; the kernel's own count of it agrees.

    Judged on the filler's own memory, not on host-wide figures: ``MemTotal - MemAvailable``
    falls short of what was written on some VMs (virtio-mem, balloons), and any host-wide count
    (``AnonPages`` too) moves by hundreds of MiB within a second when anything else on the
    machine allocates (a compiler, another session), which no lock of ours keeps away.
    """
    before = fillers()
    watched: list[psutil.Process] = []
    with ResourceMonitor(processes=lambda: list(watched), interval_s=0.1) as monitor:
        with RamFiller(gib=2.0, log_dir=tmp_path) as actor:
            assert actor.child is not None
            watched.append(psutil.Process(actor.child.pid))
            # Every sample from index `first + 1` on began after the filler was being watched.
            first = len(monitor.snapshots)
            wait_for_samples(monitor, count=first + 6)
            window = [s.server_rss_mib for s in monitor.snapshots[first + 1 :]]
            during = monitor.sample().server_rss_mib
            anon_mib = proc_status_bytes(actor.child.pid, "RssAnon") / MIB
            host = meminfo_mib()
            actor.check()
            evidence = actor.evidence()
    seen = [during, *window]
    assert all(mib is not None and 1.8 * 1024 <= mib <= 2.2 * 1024 for mib in seen), (
        f"the monitor saw the 2 GiB filler's RSS as {seen} MiB"
    )
    peak = monitor.summary()["server_rss_peak_mib"]
    assert 1.8 * 1024 <= peak <= 2.2 * 1024, f"the memory table's peak is {peak:.0f} MiB"
    # The kernel's count of the filler's private anonymous pages: real memory only it holds,
    # not page cache or shared pages that RSS would also count. The host counts them too.
    assert 1.8 * 1024 <= anon_mib <= 2.2 * 1024, f"the 2 GiB filler has {anon_mib:.0f} MiB RssAnon"
    assert host["AnonPages"] >= anon_mib, f"host AnonPages {host['AnonPages']:.0f} MiB < the filler's"
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
