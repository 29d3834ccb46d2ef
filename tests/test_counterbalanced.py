"""Counterbalanced pairs (B C | C B | B C ...): one actor serves two adjacent condition trials, and
no baseline trial is ever measured while an actor runs.

A scripted probe records, at each round, whether an actor was running; the actors are stand-ins
with a real pressure window (``actors.base.Window``) and evidence that names which actor it was.
What is tested is the order and the actors' lifetimes, not a machine's speed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_ktinterf.actors.base import Window
from pytest_ktinterf.errors import ServerError
from pytest_ktinterf.measure.compare import compare, partial_comparison
from pytest_ktinterf.measure.samples import RequestSample, RoundSample


class StandIn:
    """An actor: running from start to stop, its window the same, its evidence its own number."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.window = Window(started=time.perf_counter())
        self.running = True

    def check(self) -> None:
        assert self.running, "checked after its stop"

    def evidence(self) -> dict[str, Any]:
        return {"actor": self.number, "stopped": not self.running}


class Machine:
    """The actors started so far, and a probe that notes at each round whether one was running."""

    server_view = None  # no server behind it: nothing of its own to watch

    def __init__(self, fail_at: int | None = None) -> None:
        self.actors: list[StandIn] = []
        self.pressed: list[bool] = []  # one per counted round, warm-up included
        self.fail_at = fail_at

    def running(self) -> bool:
        return any(a.running for a in self.actors)

    @contextlib.contextmanager
    def actor(self) -> Iterator[StandIn]:
        assert not self.running(), "two actors at once"
        actor = StandIn(len(self.actors))
        self.actors.append(actor)
        try:
            yield actor
        finally:
            actor.running = False
            actor.window.stopped = time.perf_counter()

    def measure(self, streams: int = 1) -> RoundSample:
        self.pressed.append(self.running())
        if len(self.pressed) == self.fail_at:
            raise ServerError("request failed: the scripted server went away", "none: a test")
        decode_s = 1.5 if self.running() else 1.0
        request = RequestSample(0, 0.0, 0.5, decode_s, [0.5, decode_s], 128, 2)
        now = time.perf_counter()
        return RoundSample(1, [request], now, now)

    def warm(self, streams: int = 1) -> RoundSample:
        """A settling round: not counted, so not noted."""
        request = RequestSample(0, 0.0, 0.1, 0.2, [0.1, 0.2], 8, 2)
        return RoundSample(1, [request], time.perf_counter(), time.perf_counter())


def run(machine: Machine, pairs: int) -> Any:
    return compare(machine, machine.actor, label="counterbalanced", trials=pairs)  # type: ignore[arg-type]


def test_each_actor_serves_two_adjacent_condition_trials_and_no_baseline_runs_under_one() -> None:
    machine = Machine()
    result = run(machine, 6)
    order = [(t.arm[0], t.index) for t in result.trials]
    assert order == [
        ("b", 0), ("c", 0), ("c", 1), ("b", 1), ("b", 2), ("c", 2),
        ("c", 3), ("b", 3), ("b", 4), ("c", 4), ("c", 5), ("b", 5),
    ]  # fmt: skip
    # the warm-up, then each trial's round: pressed exactly in the condition trials
    assert machine.pressed == [False] + [arm == "c" for arm, _ in order]
    assert len(machine.actors) == 3 and not machine.running()
    served = {t.index: t.actor for t in result.trials if t.arm == "condition"}
    assert served == {i: {"actor": i // 2, "stopped": True} for i in range(6)}  # frozen after its stop
    assert result.ratio("decode").point == pytest.approx(0.5)  # 1 token in 1 s against in 0.5 s


def test_a_design_that_stops_between_two_condition_trials_stops_their_actor() -> None:
    machine = Machine()
    result = run(machine, 7)  # pair 7 is B C: its actor would have served pair 8's condition trial
    assert result.pairs == 7
    assert len(machine.actors) == 4 and not machine.running()
    last = result.trials[-1]
    assert (last.arm, last.index) == ("condition", 6)
    assert last.actor == {"actor": 3, "stopped": True}


def test_an_error_in_the_second_trial_of_a_kept_actor_stops_it_and_keeps_the_first() -> None:
    machine = Machine(fail_at=4)  # warm-up, B0, C0, then C1 fails: the actor of C0 is still running
    with pytest.raises(ServerError) as info:
        run(machine, 6)
    assert not machine.running() and len(machine.actors) == 1
    partial = partial_comparison(info.value)
    assert partial is not None and partial.pairs == 1
    assert [(t.arm, t.index, t.actor) for t in partial.trials] == [
        ("baseline", 0, None),
        ("condition", 0, {"actor": 0, "stopped": True}),  # its evidence, given at the stop on the way out
    ]
