"""The memory-bandwidth actor with real stress-ng --stream: pinned, measured, gone afterwards."""

from __future__ import annotations

import os

import psutil
import pytest

from pytest_ktinterf.actors.bandwidth import MemoryBandwidth, parse_stream_rates
from pytest_ktinterf.measure.monitor import ResourceMonitor
from pytest_ktinterf.system.lock import measuring
from tests.monitoring import wait_for_samples

CORE = min(os.sched_getaffinity(0))

# stress-ng 0.15's own lines after a 12 s run, as this machine printed them.
LOG = "\n".join(
    [
        "stress-ng: info:  [5831] dispatching hogs: 2 stream",
        "stress-ng: info:  [5833] stream: memory rate: 3488.44 MB read/sec, 2325.63 MB write/sec, "
        "304.82 Mflop/sec (instance 0)",
        "stress-ng: info:  [5834] stream: memory rate: 3000.00 MB read/sec, 2000.00 MB write/sec, "
        "300.00 Mflop/sec (instance 1)",
        "stress-ng: metrc: [5831] stream  3488.44 memory read rate (MB per sec) (geometic mean of 1)",
    ]
)


def test_stream_rates_are_summed_over_the_last_run_only():
    assert parse_stream_rates("old run\n" + LOG) == pytest.approx((6488.44, 4325.63))
    assert parse_stream_rates(LOG + "stress-ng: info: [1] dispatching hogs: 1 stream\n") is None


def test_stream_workers_load_their_core_and_leave(tmp_path):
    with measuring():
        with MemoryBandwidth(cores=[CORE], log_dir=tmp_path) as actor:
            with ResourceMonitor(interval_s=0.1) as monitor:
                wait_for_samples(monitor)
            actor.check()
            workers = actor.child.tree()[1:]
            assert all(set(w.cpu_affinity()) == {CORE} for w in workers)
    assert monitor.per_core_cpu()[CORE] >= 90.0
    evidence = actor.evidence()
    assert evidence["kind"] == "memory-bandwidth" and evidence["achieved"] >= 0.9
    assert "read_mb_per_s" in evidence
    assert not any(p.info["name"] == "stress-ng" for p in psutil.process_iter(["name"]))
