"""An actor that dies inside its pressure window: that trial is refused, never averaged in.

A stressor killed half-way leaves a condition trial measured with no pressure, which would look
like "no effect" and, averaged in, dilute the effect (measurement note 3). The unit tests of each
actor show ``check()`` notices; this shows the comparison acts on it, with real parts: the real
embedded llama-server (``kt_probe``) and real stress-ng, whose process group is SIGKILLed after
the actor's window opened, as the trial's round starts. The comparison must stop there: the
error names the actor, the finished pairs are kept, the refused trial appears nowhere, and its
pair's baseline trial is kept aside as unpaired.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_ktinterf.actors.cpu import CpuStress
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.compare import compare
from pytest_ktinterf.measure.comparison import partial_comparison
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.server.base import ServerHandle
from pytest_ktinterf.system.lock import measuring

CORE = min(os.sched_getaffinity(0))
KILL_AT = 2  # the second actor: pair 3's condition trial (pairs 1 and 2 share the first actor)


class KillingProbe:
    """The real probe; when armed with an actor, SIGKILLs its whole process group first.

    The kill lands inside the condition trial: after the actor's window opened (``start``
    returned), before the round that trial measures.
    """

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.server_view = probe.server_view  # the real probe's view of the server, watched as usual
        self.armed: CpuStress | None = None
        self.killed: list[int] = []

    def measure(self, streams: int = 1) -> Any:
        if self.armed is not None:
            actor, self.armed = self.armed, None
            assert actor.child is not None
            tree = actor.child.tree()
            os.killpg(actor.child.pid, signal.SIGKILL)
            _, alive = psutil.wait_procs(tree, timeout=10)
            assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
            self.killed = [p.pid for p in tree]
        return self.probe.measure(streams)

    def warm(self, streams: int = 1) -> Any:
        return self.probe.warm(streams)


def test_an_actor_killed_in_its_window_refuses_that_trial(
    kt_probe: Probe, kt_server: ServerHandle, tmp_path: Path
) -> None:
    probe = KillingProbe(kt_probe)
    entered: list[CpuStress] = []

    @contextlib.contextmanager
    def condition() -> Iterator[CpuStress]:
        with CpuStress(cores=[CORE], log_dir=tmp_path) as actor:
            entered.append(actor)
            if len(entered) == KILL_AT:
                probe.armed = actor
            yield actor

    with measuring(), pytest.raises(KtInterfError) as info:
        compare(probe, condition, label="stressor killed", trials=3, processes=kt_server.processes)  # type: ignore[arg-type]
    assert len(probe.killed) >= 2, "stress-ng and its worker were killed"
    assert "died during the measurement window" in info.value.line(), info.value.line()
    assert entered[-1].name in info.value.line()
    partial = partial_comparison(info.value)
    assert partial is not None and partial.status == "aborted"
    assert partial.pairs == 2  # B C | C B complete before it
    assert [(t.arm, t.index) for t in partial.trials] == [
        ("baseline", 0),
        ("condition", 0),
        ("condition", 1),
        ("baseline", 1),
    ]
    assert [(t.arm, t.index) for t in partial.unpaired] == [("baseline", 2)]  # refused: no condition 2
    record = partial.to_record()
    assert [t["index"] for t in record["trials"] if t["arm"] == "condition"] == [0, 1]
    assert record["verdicts"] == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in _procs(probe.killed))
    assert len(entered) == KILL_AT and not entered[-1].child.alive()  # type: ignore[union-attr]


def _procs(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.append(psutil.Process(pid))
    return found
