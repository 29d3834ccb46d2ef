"""The regression gate: is this session worse than the baseline's sessions, by more than they vary?

All figures are positive (a throughput in tok/s, or an effect ratio condition/baseline) and are
compared on the log scale, where a change is a ratio and noise is roughly symmetric. For every
gated figure lower is worse: slower, or more degraded by a neighbour.

**What an unchanged server produces.** The baseline holds S sessions recorded on the same set-up.
Session i gives a point p_i and its own 95% interval [lo_i, hi_i], read as a standard error
se_i = (log hi_i - log lo_i) / (2 * 1.96) (an unbounded or zero-width interval gives none).
Sessions differ by more than their own intervals suggest -- a page cache warmed differently,
memory placed on another node, a neighbour on the host -- so the spread that counts is the one
*between* sessions: m = mean(p_i), s_between = the sample standard deviation of the p_i. A few
sessions can agree by chance, so the spread is never taken as smaller than one session's own
noise: s = max(s_between, s_within), s_within = sqrt(mean(se_i^2)). With df = max(S - 1, 1)
and t the Student t quantile at 0.95, the *unchanged band* m +- t * s * sqrt(1 + 1/S) bounds the
next session's point of an unchanged server from below with 95% confidence (one-sided: only a
loss can regress; the band's upper end, symmetric, only marks improvements). With S = 1 the
between-session spread is unknown (s = s_within, df = 1, the widest t) and the reason says so.

**When a session regressed.** The new session has a point x and a 95% interval [a, b] (logs); the
user's threshold T (a fraction, 10% by default) gives limit = log(1 - T). Two questions:

- *beyond the threshold*: x - m < limit -- the change is as large as the user cares about;
- *beyond the spread*: b < the band's lower end -- the whole interval lies below what an
  unchanged server produces, so the change is not session-to-session noise.

A session is **regressed** only when both hold. Past the threshold but within the spread is
**inconclusive** (asv's "~"): the change is large, but sessions of an unchanged server vary by as
much; more pairs narrow [a, b], more baseline sessions narrow the band. Everything else
**passes**, with a note when the session is beyond the spread yet within the threshold (a real
but small change, e.g. "slower by 6%, beyond the sessions' spread, within the 10% threshold")
or when its whole interval lies above the band ("improved").

Requiring both conditions is what keeps the false-alarm rate at or below the nominal 5% for an
unchanged server: beyond the spread alone is a one-sided 95% prediction test (the interval's
upper end b lies above the point x, which only makes it stricter), and the threshold keeps real
but negligible changes -- which a precise enough measurement will always find -- from failing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pytest_ktinterf.baseline.store import EFFECT_METRICS, BaselineFile, is_finite, stored_interval
from pytest_ktinterf.baseline.student_t import Z_975, t_95
from pytest_ktinterf.baseline.thresholds import threshold_for
from pytest_ktinterf.judge.expectations import Decision
from pytest_ktinterf.judge.stats import Interval, walsh_interval

REGRESSED, INCONCLUSIVE, PASS = "regressed", "inconclusive", "pass"
NOT_IN_BASELINE, NOT_MEASURED_NOW = "not in the baseline", "not measured now"


def location_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """One session's throughput from its trials: Hodges-Lehmann on the logs, exact signed-rank interval.

    The same estimator as the paired effects (``judge.stats.walsh_interval``), so a throughput
    and an effect are located alike; in tok/s. Fewer than 6 trials give an unbounded interval.
    """
    logs = [math.log(v) for v in values if is_finite(v) and v > 0]
    if not logs:
        raise ValueError("need at least 1 positive finite value")
    on_logs = walsh_interval(logs, confidence)
    return Interval(math.exp(on_logs.point), math.exp(on_logs.lo), math.exp(on_logs.hi), confidence)


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf


def _pct(ratio: float) -> str:
    return f"{100 * (ratio - 1):+.0f}%"


def _tps(value: float) -> str:
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


@dataclass(frozen=True)
class GateCheck:
    """One figure's gate: the baseline's sessions, their unchanged band, and the threshold.

    ``sessions``, ``band`` and ``center`` are ratios or tok/s (``unit``), not logs. ``strict``
    makes an inconclusive look fail (see :meth:`failing`); ``kind`` tells a report this is a
    baseline gate, not an expectation.
    """

    metric: str
    figure: str
    threshold: float
    sessions: tuple[float, ...]
    band: tuple[float, float]
    center: float
    strict: bool = False
    kind: str = "gate"
    unit: str = "ratio"
    versus: str | None = None  # same-session A/B: what the ratio is taken against (see same_session_check)
    statuses: ClassVar[dict[str, str]] = {"pass": PASS, "fail": REGRESSED, "undecided": INCONCLUSIVE}

    def format_value(self, value: float) -> str:
        """A ratio as a percent change (``-4%``), a throughput as tok/s without the unit."""
        return _tps(value) if self.unit == "tok/s" else _pct(value)

    def band_text(self) -> str:
        """``-9%..+1%`` or ``29.8..32.6 tok/s``; ``unknown`` when one session gives no spread."""
        lo, hi = self.band
        if self.versus is not None:
            return "no change"
        if lo <= 0 or math.isinf(hi):
            return "unknown"
        suffix = " tok/s" if self.unit == "tok/s" else ""
        return f"{self.format_value(lo)}..{self.format_value(hi)}{suffix}"

    def _sessions_text(self) -> str:
        count = len(self.sessions)
        return "1 session: between-session spread unknown" if count == 1 else f"{count} sessions"

    def describe(self) -> str:
        """``at most 10% below the baseline's -4% (3 sessions, unchanged band -9%..+1%)``."""
        if self.versus is not None:
            return f"at most {self.threshold:.0%} below {self.versus} (interleaved pairs, this session)"
        center = self.format_value(self.center) + (" tok/s" if self.unit == "tok/s" else "")
        return (
            f"at most {self.threshold:.0%} below the baseline's {center} "
            f"({self._sessions_text()}; unchanged band {self.band_text()})"
        )

    def _numbers(self, interval: Interval) -> str:
        if self.versus is not None:
            return f"{_pct(interval.point)} [{_pct(interval.lo)}, {_pct(interval.hi)}] against {self.versus}"
        sessions = ", ".join(self.format_value(v) for v in self.sessions)
        change = _pct(interval.point / self.center)
        if self.unit == "tok/s":
            return (
                f"then {_tps(self.center)} tok/s (sessions {sessions}) -> now {_tps(interval.point)} tok/s "
                f"[{_tps(interval.lo)}, {_tps(interval.hi)}], {change}"
            )
        return (
            f"then {_pct(self.center)} (sessions {sessions}) -> now {_pct(interval.point)} "
            f"[{_pct(interval.lo)}, {_pct(interval.hi)}]"
        )

    def decide(self, interval: Interval) -> tuple[Decision, str]:
        """Regressed (FAIL), inconclusive (UNDECIDED) or PASS, with the numbers (module docstring)."""
        change = _log(interval.point) - _log(self.center)
        band_lo, band_hi = _log(self.band[0]), _log(self.band[1])
        limit = math.log(1 - self.threshold)
        beyond_threshold = change < limit
        beyond_spread = _log(interval.hi) < band_lo
        lower, higher = ("slower", "faster") if self.unit == "tok/s" else ("lower", "higher")
        size, threshold = f"{abs(math.expm1(change)):.0%}", f"{self.threshold:.0%}"
        band = "no change" if self.versus is not None else f"unchanged band {self.band_text()}"
        noise, spread = (
            ("the pairs' noise", "the pairs' noise")
            if self.versus is not None
            else ("what the sessions vary by", "the sessions' spread")
        )
        if beyond_threshold and beyond_spread:
            decision = Decision.FAIL
            why = f"{lower} by {size}: past the {threshold} threshold and below the {band}"
        elif beyond_threshold:
            decision = Decision.UNDECIDED
            why = (
                f"{lower} by {size}, past the {threshold} threshold but within {noise} ({band}): "
                f"more pairs{'' if self.versus else ' or baseline sessions'} can decide it"
            )
        elif self.versus is not None and _log(interval.lo) - _log(self.center) <= limit:
            # Same session: the interval is all the uncertainty there is, so "pass" must show it:
            # the whole interval above the threshold's loss (an equivalence test), else more pairs.
            decision = Decision.UNDECIDED
            why = (
                f"change {_pct(math.exp(change))} so far, but the interval reaches past the {threshold} "
                "threshold: more pairs can decide it"
            )
        else:
            decision = Decision.PASS
            if beyond_spread:
                why = f"{lower} by {size}, beyond {spread}, within the {threshold} threshold"
            elif _log(interval.lo) > (0.0 if self.versus else band_hi):
                why = f"improved: {higher} by {size}, the whole interval above the {band}"
            else:
                why = f"change {_pct(math.exp(change))}, within the {threshold} threshold"
        if len(self.sessions) == 1 and self.versus is None:
            why += "; 1 session: between-session spread unknown"
        return decision, f"{self._numbers(interval)}; {why}"

    def failing(self, decision: Decision) -> bool:
        """Whether a decision fails the run: regressed always, inconclusive only when ``strict``."""
        return decision is Decision.FAIL or (decision is Decision.UNDECIDED and self.strict)


def band(points: Sequence[float], errors: Sequence[float]) -> tuple[float, float, float]:
    """``(m, lo, hi)`` on the log scale: the sessions' mean and the unchanged band around it.

    ``points`` are the sessions' log points, ``errors`` the standard errors that could be read
    from their intervals. One session without an error gives an unbounded band: nothing is known
    about how far an unchanged server moves.
    """
    if not points:
        raise ValueError("need at least 1 session")
    count = len(points)
    m = statistics.fmean(points)
    s_between = statistics.stdev(points) if count >= 2 else 0.0
    if errors:
        s_within = math.sqrt(statistics.fmean([e * e for e in errors]))
    else:
        s_within = 0.0 if count >= 2 else math.inf
    half = t_95(max(count - 1, 1)) * max(s_between, s_within) * math.sqrt(1 + 1 / count)
    return m, m - half, m + half


def _from_intervals(
    figure: str, metric: str, found: list[Interval], threshold: float, strict: bool, unit: str
) -> GateCheck:
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold={threshold}: a fraction in [0, 1)")
    if not found:
        raise ValueError(f"{figure}: no usable baseline session")
    points = [math.log(i.point) for i in found]
    errors = [(math.log(i.hi) - math.log(i.lo)) / (2 * Z_975) for i in found if i.bounded and i.lo < i.hi]
    m, lo, hi = band(points, errors)
    return GateCheck(
        metric=metric,
        figure=figure,
        threshold=threshold,
        sessions=tuple(i.point for i in found),
        band=(math.exp(lo), math.exp(hi)),
        center=math.exp(m),
        strict=strict,
        unit=unit,
    )


def same_session_check(
    figure: str, metric: str, threshold: float, versus: str, strict: bool = False
) -> GateCheck:
    """The gate for a ratio measured against ``versus`` in the same session (candidate/current).

    Interleaved pairs in one session share the machine's drift, so there is no between-session
    spread to allow for: the band is "no change" itself. Regressed when the change is past the
    threshold and the whole interval lies below no change; past the threshold with an interval
    that reaches no change is inconclusive (more pairs can decide it). Pass needs the whole
    interval above the threshold's loss: a point within the threshold with an interval reaching
    past it is inconclusive too (with 6 noisy pairs a 10% loss can show a point of +3%).
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold={threshold}: a fraction in [0, 1)")
    return GateCheck(
        metric=metric,
        figure=figure,
        threshold=threshold,
        sessions=(),
        band=(1.0, math.inf),
        center=1.0,
        strict=strict,
        versus=versus,
    )


def effect_check(
    figure: str, metric: str, stored: list[dict[str, Any]], threshold: float, strict: bool = False
) -> GateCheck:
    """The gate for a paired effect ratio, from the baseline sessions' stored effects."""
    found = [i for e in stored if (i := stored_interval(e)) is not None]
    return _from_intervals(figure, metric, found, threshold, strict, "ratio")


def throughput_check(
    figure: str, metric: str, per_session_values: list[list[float]], threshold: float, strict: bool = False
) -> GateCheck:
    """The gate for an uncontended throughput, each session located by :func:`location_interval`."""
    found = [
        location_interval(values)
        for values in per_session_values
        if any(is_finite(v) and v > 0 for v in values)
    ]
    return _from_intervals(figure, metric, found, threshold, strict, "tok/s")


@dataclass(frozen=True)
class GateResult:
    """One figure compared: its check and the interval now (None for a figure on one side only)."""

    figure: str
    metric: str
    check: GateCheck | None
    interval: Interval | None
    status: str
    reason: str

    @property
    def failed(self) -> bool:
        """Regressed, or inconclusive under ``strict``."""
        if self.check is None:
            return False
        return self.status == REGRESSED or (self.status == INCONCLUSIVE and self.check.strict)


def _metric_order(metric: str) -> tuple[int, str]:
    return (EFFECT_METRICS.index(metric) if metric in EFFECT_METRICS else len(EFFECT_METRICS), metric)


def _judge(check: GateCheck, interval: Interval) -> GateResult:
    decision, reason = check.decide(interval)
    return GateResult(check.figure, check.metric, check, interval, check.statuses[decision.value], reason)


def _one_side(figure: str, metric: str, in_baseline: bool) -> GateResult:
    status = NOT_MEASURED_NOW if in_baseline else NOT_IN_BASELINE
    return GateResult(figure, metric, None, None, status, f"{figure}: {status}, no verdict")


def compare_sessions(
    baseline: BaselineFile, now: dict[str, Any], thresholds: dict[str, float], strict: bool = False
) -> list[GateResult]:
    """Every effect and uncontended figure of ``now`` against ``baseline``'s sessions.

    Figures on one side only are listed without a verdict ("not in the baseline", "not measured
    now"); effects first (by comparison, then metric), then uncontended throughput by streams.
    """
    results: list[GateResult] = []
    sessions = baseline.sessions
    now_effects = now.get("effects") or {}
    keys = sorted({k for s in [*sessions, now] for k in (s.get("effects") or {})})
    for key in keys:
        stored: dict[str, list[dict[str, Any]]] = {}
        for session in sessions:
            for metric, entry in ((session.get("effects") or {}).get(key) or {}).items():
                if stored_interval(entry) is not None:
                    stored.setdefault(metric, []).append(entry)
        current = {
            m: i for m, e in (now_effects.get(key) or {}).items() if (i := stored_interval(e)) is not None
        }
        for metric in sorted(set(stored) | set(current), key=_metric_order):
            figure = f"{key.removeprefix('code::')} {metric}"
            if metric not in stored or metric not in current:
                results.append(_one_side(figure, metric, metric in stored))
                continue
            check = effect_check(figure, metric, stored[metric], threshold_for(thresholds, metric), strict)
            results.append(_judge(check, current[metric]))
    now_uncontended = now.get("uncontended") or {}
    all_streams = {k for s in [*sessions, now] for k in (s.get("uncontended") or {})}
    for streams in sorted(all_streams, key=lambda s: (int(s) if str(s).isdigit() else math.inf, str(s))):
        per_session: dict[str, list[list[float]]] = {}
        for session in sessions:
            for metric, values in ((session.get("uncontended") or {}).get(streams) or {}).items():
                if any(is_finite(v) and v > 0 for v in values or []):
                    per_session.setdefault(metric, []).append(list(values))
        current_values = {
            m: list(v)
            for m, v in (now_uncontended.get(streams) or {}).items()
            if any(is_finite(x) and x > 0 for x in v or [])
        }
        for metric in sorted(set(per_session) | set(current_values), key=_metric_order):
            figure = f"uncontended {metric} at {streams} stream{'' if str(streams) == '1' else 's'}"
            if metric not in per_session or metric not in current_values:
                results.append(_one_side(figure, metric, metric in per_session))
                continue
            threshold = threshold_for(thresholds, metric)
            check = throughput_check(figure, metric, per_session[metric], threshold, strict)
            results.append(_judge(check, location_interval(current_values[metric])))
    return results
