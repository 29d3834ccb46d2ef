"""Where a comparison's time goes: each phase is recorded and the report shows it per condition.

A scripted probe and a condition that take known minimum times stand in for the server and the
actor (what is tested is the bookkeeping, not a machine's speed): only lower bounds are asserted,
and that the phases add up to no more than the wall time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from pytest_ktinterf.measure.compare import Design, compare
from pytest_ktinterf.measure.comparison import PHASES
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.report.text import MARKDOWN, TEXT, render_lines
from tests.scripted import trial_of_call

ROUND_S, START_S, STOP_S = 0.02, 0.05, 0.03


class SlowProbe:
    """Every round takes at least ``ROUND_S``; the condition decodes at half speed."""

    server_view = None  # no server behind it: nothing of its own to watch

    def __init__(self, rounds: int = 1) -> None:
        self.calls = 0
        self.rounds = rounds

    def measure(self, streams: int = 1) -> RoundSample:
        self.calls += 1
        time.sleep(ROUND_S)
        _, condition = trial_of_call(self.calls, self.rounds)
        decode_s = 0.5 + (1.0 if condition else 0.5)
        request = RequestSample(0, 0.0, 0.5, decode_s, [0.5, decode_s], 128, 2)
        now = time.perf_counter()
        return RoundSample(1, [request], now, now)

    def warm(self, streams: int = 1) -> RoundSample:
        """The settling round before each trial: it takes ``ROUND_S`` too, counted as warm-up."""
        time.sleep(ROUND_S)
        request = RequestSample(0, 0.0, 0.1, 0.2, [0.1, 0.2], 8, 2)
        now = time.perf_counter()
        return RoundSample(1, [request], now, now)


@contextlib.contextmanager
def slow_actor() -> Iterator[None]:
    time.sleep(START_S)  # an actor starting until its pressure is proven
    yield None
    time.sleep(STOP_S)  # its stop and settling


def test_the_time_each_phase_took_is_recorded_and_shown() -> None:
    started = time.monotonic()
    result = compare(SlowProbe(2), slow_actor, label="timed", trials=6, design=Design(rounds=2))  # type: ignore[arg-type]
    wall = time.monotonic() - started
    split = result.time_split
    assert set(split) <= set(PHASES)
    # the one-off round, then one before each trial that follows the other arm's: B C | C B | B C ...
    # has 7 of those in 12 trials (the first, and every switch of arm)
    assert split["warm_up"] >= (1 + 7) * ROUND_S
    assert split["baseline"] >= 6 * 2 * ROUND_S  # 6 pairs of 2 rounds
    assert split["condition"] >= 6 * 2 * ROUND_S
    assert split["actor_start"] >= 3 * START_S  # one actor for each two adjacent condition trials
    assert split["actor_stop"] >= 3 * STOP_S
    assert sum(split.values()) <= wall
    record = result.to_record()
    assert record["time_split"].keys() == split.keys()

    for style in (TEXT, MARKDOWN):
        lines = render_lines({"comparisons": [record]}, style)
        title = next(i for i, line in enumerate(lines) if "Where the time went" in line)
        table = "\n".join(lines[title:])
        assert "actor start" in table and "actor stop" in table
        assert "server switch" not in table  # no server took turns: the column would be all zeros
        assert "all conditions" in table


class UnsettledProbe(SlowProbe):
    """Its settling rounds are wild (a server just after a switch): a tenth of the speed."""

    def warm(self, streams: int = 1) -> RoundSample:
        request = RequestSample(0, 0.0, 5.0, 50.0, [5.0, 50.0], 128, 2)
        now = time.perf_counter()
        return RoundSample(1, [request], now, now)


def test_each_trial_after_a_switch_of_arm_begins_with_a_settling_round_recorded_and_never_counted() -> None:
    steady = compare(SlowProbe(), slow_actor, label="steady", trials=6)  # type: ignore[arg-type]
    unsettled = compare(UnsettledProbe(), slow_actor, label="unsettled", trials=6)  # type: ignore[arg-type]
    for metric in ("prefill", "decode"):
        assert unsettled.ratio(metric) == steady.ratio(metric)
    trials = unsettled.to_record()["trials"]
    assert [(t["arm"][0], t["index"], "settling_round" in t) for t in trials] == [
        ("b", 0, True),  # the first trial
        ("c", 0, True),  # the actor has just started
        ("c", 1, False),  # the same actor, right after a condition trial: nothing changed
        ("b", 1, True),  # the actor has just stopped
        ("b", 2, False),
        ("c", 2, True),
        ("c", 3, False),
        ("b", 3, True),
        ("b", 4, False),
        ("c", 4, True),
        ("c", 5, False),
        ("b", 5, True),
    ]
    assert all(t["settling_round"]["decode_aggregate_tps"] < 0.1 for t in trials if "settling_round" in t)
