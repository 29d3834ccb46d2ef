"""Is the candidate more sensitive to a neighbour than the current server? Interleaved quads.

An upgrade can leave a server as fast alone and make it suffer more beside a co-located job (a
new thread pool that busy-waits, weights moved out of the page cache). The question is then
about a ratio of effects: the candidate's condition/baseline over the current server's, both
measured in the same session. Each index ``i`` is a quad: the current server without and with
the condition, then the candidate's two trials (the server already resident first, when they
take turns: ``server/alternating.py``). Within a server the two trials are a pair as in any
comparison; across servers the quads pair up the effects, so the interval is the same exact
paired interval (``stats.paired_ratio_ci``) over per-quad effects, and the sequential design,
the verdicts and the record are those of any comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from pytest_ktinterf.judge.stats import paired_ratio_ci
from pytest_ktinterf.judge.verdict import Check
from pytest_ktinterf.measure.compare import Arm, Condition, carry_partial, measure_pair, run_design, warm_up
from pytest_ktinterf.measure.comparison import ARMS, Comparison
from pytest_ktinterf.measure.design import Design
from pytest_ktinterf.measure.pressure import Pressure

SERVERS = ("current", "candidate")  # whose effect: the comparison's "baseline" and "condition" values


def _arm_names(server: str) -> tuple[str, str]:
    return (f"{server} {ARMS[0]}", f"{server} {ARMS[1]}")


class EffectComparison(Comparison):
    """The candidate's effect of a condition against the current server's, quad by quad.

    ``values("baseline", m)`` are the current server's per-quad effects (condition/baseline),
    ``values("condition", m)`` the candidate's: so :meth:`ratio` is candidate effect / current
    effect, below 1 when the candidate loses more to the neighbour. The trials keep all four
    arms, named ``current baseline`` ... ``candidate condition``.
    """

    def own(self, server: str, metric: str) -> tuple[list[float], list[float]]:
        """``server``'s own baseline and condition figures, in pair order."""
        base, cond = ([t.metric(metric) for t in self.trials if t.arm == a] for a in _arm_names(server))
        return base, cond

    def effects(self, server: str, metric: str) -> list[float]:
        """``server``'s condition/baseline per complete pair of its own trials."""
        base, cond = self.own(server, metric)
        return [c / b if b > 0 else math.nan for b, c in zip(base, cond, strict=False)]

    def values(self, arm: str, metric: str) -> list[float]:
        return self.effects(SERVERS[ARMS.index(arm)], metric)

    def progress_figures(self) -> str:
        figures = []
        for server in SERVERS:
            effect = self.effects(server, "decode")
            figures.append(f"{server} decode {100 * (effect[-1] - 1):+.0f}%" if effect else f"{server} -")
        return ", ".join(figures)

    def to_record(self) -> dict[str, Any]:
        """A comparison's record, plus each server's own effect with its interval (the readers' why)."""
        record = super().to_record()
        record["kind"] = "candidate_effect"
        own: dict[str, dict[str, Any]] = {}
        for server in SERVERS:
            for metric in record["ratios"]:
                base, cond = (
                    [t.metric(metric) for t in self.trials if t.arm == a] for a in _arm_names(server)
                )
                n = min(len(base), len(cond))
                if n < 2 or not all(math.isfinite(v) and v > 0 for v in (*base[:n], *cond[:n])):
                    continue  # an aborted comparison may hold too little: the trials say what there is
                r = paired_ratio_ci(cond[:n], base[:n], confidence=self.confidence)
                own.setdefault(server, {})[metric] = {"point": r.point, "lo": r.lo, "hi": r.hi}
        record["effects"] = own
        return record


def compare_effects(
    current: Arm,
    candidate: Arm,
    conditions: tuple[Condition, Condition],
    *,
    label: str,
    design: Design,
    expectations: Sequence[Check],
    streams: int = 1,
    baseline_streams: int | None = None,
    progress: Callable[[str], None] | None = None,
    log_tail: Callable[[], str] | None = None,
) -> EffectComparison:
    """Quads until the design decides every check; ``conditions``: the current's, the candidate's.

    Each server gets its own condition factory: an actor placed relative to "the server" (its
    cores, its memory cgroup) must be placed relative to the one it is measured with.
    """
    result = EffectComparison(
        label=label, streams=streams, baseline_streams=baseline_streams, expectations=list(expectations)
    )
    arms = dict(zip(SERVERS, (current, candidate), strict=True))
    own_condition = dict(zip(SERVERS, conditions, strict=True))

    def quad(index: int) -> None:
        order = SERVERS[::-1] if candidate.turns is not None and candidate.resident() else SERVERS
        for server in order:
            arm = arms[server]
            pressure = Pressure(result, own_condition[server])  # an actor per trial: servers take turns
            measure_pair(result, arm, pressure, arm, index, design.rounds, _arm_names(server))

    try:
        with result.timed("warm_up"):
            warm_up([current, candidate], streams)
        run_design(result, quad, None, design, progress)
    except (Exception, KeyboardInterrupt) as exc:
        carry_partial(exc, result, log_tail)
        raise
    return result
