"""The probe runs its rounds off the server's cores when there are others: its own work (stamping
each token as it arrives) must not take time from the server it measures.

A real ``Probe`` whose round is scripted notes the thread's allowed cores while it runs; what is
tested is where the round ran and that everything else keeps its cores, not a server.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.system.cpus import off_cores

CORES = frozenset(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(
    len(CORES) < 2, reason="needs 2 allowed cores: one for the server, one for the probe"
)


class NotingProbe(Probe):
    """Its round notes the cores its thread may run on, and those of a thread started beside it."""

    def __init__(self, avoid: frozenset[int]) -> None:
        super().__init__("http://127.0.0.1:9", avoid_cores=avoid)  # never contacted
        self.filler_words = 100
        self.seen: list[frozenset[int]] = []

    async def _round(self, bodies: list[dict[str, Any]]) -> RoundSample:
        self.seen.append(frozenset(os.sched_getaffinity(0)))
        request = RequestSample(0, 0.0, 0.5, 1.0, [0.5, 1.0], 128, 64)
        return RoundSample(1, [request], time.perf_counter(), time.perf_counter())

    def _validate(self, request: RequestSample) -> None:
        """Scripted rounds: nothing to validate."""


@needs_two
def test_rounds_run_off_the_servers_cores_and_the_thread_gets_its_cores_back() -> None:
    server = frozenset({max(CORES)})
    probe = NotingProbe(server)
    probe.measure()
    probe.warm()
    assert probe.seen == [CORES - server, CORES - server]  # counted and settling rounds alike
    assert frozenset(os.sched_getaffinity(0)) == CORES


@needs_two
def test_only_the_probes_thread_moves() -> None:
    ready, done = threading.Event(), threading.Event()
    other = threading.Thread(target=lambda: (ready.set(), done.wait(30)))
    other.start()
    try:
        assert ready.wait(30)
        with off_cores({max(CORES)}) as allowed:
            assert allowed == CORES - {max(CORES)}
            assert frozenset(os.sched_getaffinity(0)) == allowed
            assert frozenset(os.sched_getaffinity(other.native_id)) == CORES  # the rest keeps its cores
    finally:
        done.set()
        other.join()


def test_a_server_on_every_core_leaves_the_probe_where_it_was() -> None:
    probe = NotingProbe(CORES)
    probe.measure()
    assert probe.seen == [CORES]


@needs_two
def test_an_error_in_the_round_gives_the_thread_its_cores_back() -> None:
    with pytest.raises(RuntimeError), off_cores({max(CORES)}):
        raise RuntimeError("the round failed")
    assert frozenset(os.sched_getaffinity(0)) == CORES
