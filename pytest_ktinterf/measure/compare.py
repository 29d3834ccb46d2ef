"""The trial design: baseline and condition measured in counterbalanced pairs (B C | C B | B C ...),
then compared.

Interleaving spreads slow drift (thermal state, page cache, background jobs) over both arms
instead of letting it masquerade as an effect, and each pair (baseline i, condition i) is
compared as a pair. Alternating each pair's order cancels a linear drift over every two pairs,
and puts two condition trials side by side so that one actor serves both
(``measure/pressure.py``): half the actor starts, the dearest part of a pair for actors that
hold memory. Each condition trial runs inside the actor's established-pressure window,
and the actor must still be at full strength when the trial ends; otherwise the trial is
refused rather than silently diluting the result.

The design is sequential: after ``min_pairs`` pairs the expectations are judged; any that is
still undecided (its interval straddles a boundary) earns ``step`` more pairs, up to
``max_pairs``, after which it is *inconclusive*. An interference test therefore costs little
when the effect is clear and more only when it has to.

Nothing measured is lost: a comparison stopped part-way (the server died, an actor refused, a
request failed) is marked ``aborted`` with the error's line and the server's log tail, keeps its
finished pairs, and rides on the error (``partial_comparison``) so the report records it while
the error still fails the test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_ktinterf.errors import KtInterfError, ServerError
from pytest_ktinterf.judge.verdict import Check, decided
from pytest_ktinterf.measure.comparison import (
    ABORTED,
    ARMS,
    CANDIDATE,
    COMPLETE,
    METRICS,
    Comparison,
    Trial,
    error_line,
    partial_comparison,
)
from pytest_ktinterf.measure.design import Design, look_level
from pytest_ktinterf.measure.monitor import ProcessSource, ResourceMonitor
from pytest_ktinterf.measure.pressure import Condition, Pressure
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import RoundSample

__all__ = [
    "ABORTED",
    "ARMS",
    "CANDIDATE",
    "COMPLETE",
    "METRICS",
    "Arm",
    "Comparison",
    "Condition",
    "Design",
    "Trial",
    "compare",
    "error_line",
    "partial_comparison",
]


def carry_partial(exc: BaseException, result: Comparison, log_tail: Callable[[], str] | None) -> None:
    """Mark ``result`` aborted by ``exc`` and hang it (and, for server errors, the log tail) on ``exc``."""
    tail = None
    if log_tail is not None:
        try:
            tail = log_tail()
        except Exception as read_error:  # evidence must never replace the error it explains
            tail = f"(the server's log tail could not be read: {error_line(read_error)})"
    result.abort(exc, tail)
    if isinstance(exc, ServerError) and tail and tail not in exc.detail:
        exc.add_detail(tail)
    with contextlib.suppress(AttributeError, TypeError):  # a few built-in exceptions take no attributes
        exc.comparison = result  # type: ignore[attr-defined]


def measure_monitored(probe: Probe, streams: int, processes: ProcessSource) -> RoundSample:
    """One round with the resource monitor running and, where the probe knows how, the server's
    own view of it (``measure/server_view.py``); both ride on the sample."""
    view = probe.server_view
    with ResourceMonitor(processes=processes) as monitor:
        if view is None:
            sample = probe.measure(streams)
        else:
            with view.watching() as watch:
                sample = probe.measure(streams)
            sample.server = watch.figures(sample)
    sample.resources = monitor.summary()
    return sample


def _rounds(probe: Probe, streams: int, processes: ProcessSource, rounds: int) -> list[RoundSample]:
    return [measure_monitored(probe, streams, processes) for _ in range(rounds)]


class Turns(Protocol):
    """Servers that take turns being resident (``server.alternating.Alternating``)."""

    def holds(self, name: str) -> bool: ...

    def take(self, name: str, streams: int) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Arm:
    """The server an arm measures: its probe, its processes (for the resource monitor) and,
    when it shares the machine by taking turns (``turns``), its name among them."""

    probe: Probe
    processes: ProcessSource = lambda: []
    turns: Turns | None = None
    name: str = ""

    def resident(self) -> bool:
        return self.turns is None or self.turns.holds(self.name)

    def take_turn(self, result: Comparison, streams: int, index: int) -> None:
        """Make this arm's server resident for pair ``index``, recording what a switch cost."""
        if self.turns is not None:
            start = self.turns.take(self.name, streams)
            if start is not None:
                result.server_starts.append({**start, "before_pair": index})


def _trial_rounds(
    result: Comparison, arm: Arm, streams: int, rounds: int, phase: str, settle: bool
) -> tuple[RoundSample | None, list[RoundSample]]:
    """A trial's settling round (``Probe.warm``, timed as warm-up) when ``settle``, then its counted
    rounds (``phase``)."""
    settling = None
    if settle:
        with result.timed("warm_up"):
            settling = arm.probe.warm(streams)
    with result.timed(phase):
        return settling, _rounds(arm.probe, streams, arm.processes, rounds)


def measure_pair(
    result: Comparison,
    baseline: Arm,
    pressure: Pressure,
    other: Arm,
    index: int,
    rounds: int,
    names: tuple[str, str] = ARMS,
    counterbalanced: bool = False,
) -> None:
    """One pair of trials, recorded under ``names`` (the arms' names in ``result.trials``).

    ``counterbalanced``: pairs alternate their order (B C, then C B, ...), so the condition
    trials of pairs 2k and 2k+1 are adjacent and share one actor (``measure/pressure.py``), and
    the baseline trials of pairs 2k+1 and 2k+2 are adjacent too. A trial right after one of its
    own arm needs no settling round: nothing changed on the machine between them. Otherwise each
    pair is B C with an actor of its own, and servers taking turns begin with the one resident
    (see ``Turns``).
    """
    condition_first = counterbalanced and index % 2 == 1

    def baseline_trial() -> None:
        streams = result.baseline_streams or result.streams
        with result.timed("server_switch"):
            baseline.take_turn(result, streams, index)
        settle = not counterbalanced or index == 0 or condition_first
        settling, (first, *more) = _trial_rounds(result, baseline, streams, rounds, "baseline", settle)
        result.trials.append(Trial(names[0], index, first, more=more, settling=settling))

    def condition_trial() -> None:
        with result.timed("server_switch"):
            other.take_turn(result, result.streams, index)
        actor = pressure.start()
        try:
            settle = not condition_first  # a kept actor: the previous trial was this arm's too
            settling, samples = _trial_rounds(result, other, result.streams, rounds, "condition", settle)
            if actor is not None:
                actor.check()
                if not actor.window.covers(samples[0].t_start, samples[-1].t_end):
                    raise KtInterfError(
                        f"{result.label}: trial {index} ran outside the actor's pressure window",
                        "this is a plugin bug; the actor must be started before measuring",
                    )
        except BaseException:
            pressure.stop()  # nothing left running; trials it served still get its evidence
            raise
        trial = Trial(names[1], index, samples[0], more=samples[1:], settling=settling)
        result.trials.append(trial)
        pressure.served(trial)
        if not counterbalanced or condition_first:
            pressure.stop()  # the next trial is a baseline (or another pair's own actor)

    swapped = other.turns is not None and other.resident() and not baseline.resident()
    order = (
        (condition_trial, baseline_trial) if condition_first or swapped else (baseline_trial, condition_trial)
    )
    for trial in order:
        trial()


def compare(
    probe: Probe,
    condition: Condition,
    *,
    label: str,
    trials: int | None = None,
    design: Design | None = None,
    expectations: Sequence[Check] = (),
    streams: int = 1,
    baseline_streams: int | None = None,
    processes: ProcessSource = lambda: [],
    progress: Callable[[str], None] | None = None,
    log_tail: Callable[[], str] | None = None,
    candidate: Arm | None = None,
    current: Arm | None = None,
    max_tokens: int | None = None,
) -> Comparison:
    """Interleaved baseline/condition pairs after one warm-up round, judged sequentially.

    ``trials`` runs exactly that many pairs (no expectations judged here); a ``design`` runs
    pairs until every expectation is decided or ``max_pairs`` is reached, then judges them.
    ``baseline_streams`` lets the baseline arm run at another concurrency (1 vs N streams).
    ``candidate``: the condition arm measures another server (same-session A/B,
    ``experiment/candidate.py``); by default both arms measure ``probe``'s server. ``current``
    replaces ``probe``/``processes`` as the baseline arm when its server takes turns with the
    candidate's (``server/alternating.py``): each pair then begins with the resident server.
    ``max_tokens``: both arms' output length here (``Probe.generating``; None: the probes' own).

    An error part-way re-raises as it came, carrying the comparison marked aborted with its
    finished pairs (:func:`partial_comparison`); ``log_tail`` (the server's, e.g.
    ``ServerHandle.error_detail``) is read then, recorded, and attached to server errors.
    """
    result = Comparison(
        label=label,
        streams=streams,
        baseline_streams=baseline_streams,
        expectations=list(expectations),
        max_tokens=max_tokens,
    )
    baseline = current or Arm(probe, processes)
    other = candidate or baseline
    rounds = (design or Design()).rounds
    pressure = Pressure(result, condition)
    counterbalanced = baseline.turns is None and other.turns is None
    try:
        with contextlib.ExitStack() as stack:
            if max_tokens is not None:
                for arm in {id(a): a for a in (baseline, other)}.values():
                    stack.enter_context(arm.probe.generating(max_tokens))
            stack.callback(pressure.stop)  # a design may stop between two trials sharing an actor
            with result.timed("warm_up"):
                warm_up([baseline, other], streams)
            run_design(
                result,
                lambda index: measure_pair(
                    result, baseline, pressure, other, index, rounds, counterbalanced=counterbalanced
                ),
                trials,
                design,
                progress,
            )
    except (Exception, KeyboardInterrupt) as exc:
        carry_partial(exc, result, log_tail)
        raise
    return result


def warm_up(arms: Sequence[Arm], streams: int) -> None:
    """One unrecorded round per server: the first requests after a start pay one-off costs.

    A server taking turns (``Arm.turns``) warms up at each start it makes for a trial; the one
    already resident when the pairs begin (started, or switched to, before them) warms up here.
    """
    for arm in {id(a): a for a in arms}.values():
        if arm.resident():
            arm.probe.measure(streams)


def run_design(
    result: Comparison,
    step: Callable[[int], None],
    trials: int | None,
    design: Design | None,
    progress: Callable[[str], None] | None,
) -> None:
    """Pairs (``step(index)`` measures one) until the design's looks decide every check, then judge."""
    label = result.label
    chosen = design or Design()
    looks = [trials] if trials is not None else chosen.looks()
    result.confidence = look_level(len(looks))
    started, first = time.monotonic(), result.pairs
    for look, target in enumerate(looks):
        for index in range(result.pairs, target):
            step(index)
            if progress is not None:
                per_pair = (time.monotonic() - started) / max(1, result.pairs - first)
                progress(
                    f"{label}: pair {index + 1}/{target}: {result.progress_figures()}; "
                    f"{time_left(per_pair, target - result.pairs, looks[-1] - result.pairs)}"
                )
        if not result.expectations or result.decided():
            break
        if progress is not None and look + 1 < len(looks):
            undecided = [
                e.metric
                for e in result.expectations
                if e.kind != "report" and result.measured(e.metric) and not decided(e, result.ratio(e.metric))
            ]
            progress(f"{label}: undecided after {result.pairs} pairs ({', '.join(undecided)}): adding more")
    if result.expectations:
        result.judge()


def time_left(per_pair: float, to_look: int, to_max: int) -> str:
    """How long the rest should take, from the pairs so far: to the next look, and at most."""
    if to_look <= 0:
        return f"{per_pair:.0f} s a pair, judging"
    more = f"{_duration(per_pair * to_look)} to the next look"
    if to_max > to_look:
        more += f", {_duration(per_pair * to_max)} at most"
    return f"{per_pair:.0f} s a pair, {more}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
