"""Baseline files: a few sessions recorded on one set-up, as plain JSON named by the fingerprint.

One file per fingerprint (``<slug>.json``), holding the newest few sessions (``DEFAULT_KEEP``):
several sessions, because the figures of a server move between sessions by more than one
session's own interval says (a page cache warmed differently, a different placement of memory),
and a gate that ignored that spread would call every such move a regression.

The files are meant to be committed next to the tests and read in review, so they are JSON with
sorted keys and one-space indents (a new session is a readable diff), written atomically (a
temporary file in the same folder, then ``os.replace``: a reader or a crash never leaves half a
file), and never pickled. Anything unexpected on reading -- not JSON, another format, a newer
schema, a missing key -- is a :class:`KtInterfError` naming the file and what to do.

A session stores, per comparison and metric, the paired effect (``point``, ``lo``, ``hi``,
``pairs`` and the pairs' ``log_ratios``, so a later version can re-derive anything), and, per
stream count, the uncontended throughput of each trial.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_ktinterf.baseline.fingerprint import Fingerprint
from pytest_ktinterf.datafile import read_text, write_atomic
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.judge.stats import Interval, paired_ratio_ci

FORMAT = "pytest-ktinterf baseline"
SCHEMA_VERSION = 1
DEFAULT_KEEP = 3
MIN_PAIRS = 6  # the fewest pairs with an exact 95% interval (judge.stats.signed_rank_depth)
EFFECT_METRICS = ("prefill", "decode", "prefill_per_stream", "decode_per_stream")
_ROUND_FIELDS = {
    "prefill": "prefill_aggregate_tps",
    "decode": "decode_aggregate_tps",
    "prefill_per_stream": "prefill_per_stream_tps",
    "decode_per_stream": "decode_per_stream_tps",
}


def is_finite(value: Any) -> bool:
    """A number that can be compared: records may carry NaN, None or strings where nothing was measured.

    (``report.record`` has the same helper; not imported from there, so the report may one day
    import the baseline without an import circle.)
    """
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _round_value(round_: dict[str, Any], metric: str) -> float:
    """One round's figure as the live ``RoundSample.metric`` computes it; NaN when not measured."""
    value = round_.get(_ROUND_FIELDS[metric])
    if metric.endswith("_per_stream"):
        rates = [x for x in value or [] if is_finite(x)]
        return float(statistics.median(rates)) if rates else math.nan
    return float(value) if is_finite(value) else math.nan


def trial_value(trial: dict[str, Any], metric: str) -> float:
    """A recorded trial's figure: the median over its round and its ``more_rounds`` (as ``Trial.metric``)."""
    values = [_round_value(r, metric) for r in (trial, *(trial.get("more_rounds") or []))]
    if not all(math.isfinite(v) for v in values):
        return math.nan
    return values[0] if len(values) == 1 else float(statistics.median(values))


def _effect(comparison: dict[str, Any], metric: str) -> dict[str, Any] | None:
    arms: dict[str, dict[int, float]] = {"baseline": {}, "condition": {}}
    for trial in comparison.get("trials") or []:
        if trial.get("arm") in arms and isinstance(trial.get("index"), int):
            arms[trial["arm"]][trial["index"]] = trial_value(trial, metric)
    values = [v for arm in arms.values() for v in arm.values()]
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        return None  # not measured in every trial (or not at all): no effect to keep
    indexes = sorted(set(arms["baseline"]) & set(arms["condition"]))
    if len(indexes) < MIN_PAIRS:
        return None
    base = [arms["baseline"][i] for i in indexes]
    cond = [arms["condition"][i] for i in indexes]
    ratio = paired_ratio_ci(cond, base)
    return {
        "point": ratio.point,
        "lo": ratio.lo,
        "hi": ratio.hi,
        "pairs": len(indexes),
        "log_ratios": [math.log(c / b) for c, b in zip(cond, base, strict=True)],
    }


def figure_key(experiment: str | None, condition: str, max_tokens: int | None = None) -> str:
    """A condition's name in a baseline, ``<experiment>::<id>``; ``[16 tokens]`` after it when the
    condition sets its own output length, so that figures of another length are never compared."""
    return f"{experiment or 'code'}::{condition}" + (f"[{max_tokens} tokens]" if max_tokens else "")


def effects_of(record: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"<experiment>::<id>": {metric: effect}}`` for every complete comparison with an id."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for comparison in record.get("comparisons") or []:
        status = comparison.get("status") or "complete"  # older records: only complete ones were kept
        if str(status).lower() != "complete" or not comparison.get("id"):
            continue
        key = figure_key(comparison.get("experiment"), comparison["id"], comparison.get("max_tokens"))
        metrics = {m: e for m in EFFECT_METRICS if (e := _effect(comparison, m)) is not None}
        if metrics:
            found[key] = metrics
    return found


def uncontended_of(record: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """``{"<streams>": {metric: [per-trial tok/s]}}`` from the record's ``uncontended`` trials."""
    found: dict[str, dict[str, list[float]]] = {}
    for streams, trials in sorted((record.get("uncontended") or {}).items()):
        per_metric: dict[str, list[float]] = {}
        for trial in trials or []:
            for metric, value in (trial or {}).items():
                if is_finite(value) and value > 0:
                    per_metric.setdefault(str(metric), []).append(float(value))
        if per_metric:
            found[str(streams)] = per_metric
    return found


def session_from_record(
    record: dict[str, Any], *, server: dict[str, Any] | None = None, unstable: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A baseline session from a session's JSON report record.

    ``server`` (the identity being gated) defaults to the record's ``server``; ``unstable`` to the
    record's own ``unstable`` readings, else the host name and kernel of its ``machine``.
    Comparisons that were aborted or have no id, and metrics not measured in every trial or
    with fewer than 6 pairs, are left out: an effect the baseline cannot judge is not stored.
    """
    machine = record.get("machine") or {}
    readings = unstable if unstable is not None else record.get("unstable")
    if readings is None:
        readings = {k: machine[k] for k in ("hostname", "kernel") if k in machine}
    return {
        "recorded_at": record.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "server": dict(server if server is not None else record.get("server") or {}),
        "unstable": dict(readings),
        "effects": effects_of(record),
        "uncontended": uncontended_of(record),
    }


def stored_interval(entry: Any) -> Interval | None:
    """A stored effect ``{point, lo, hi, ...}`` as an interval; None when it is not a usable one."""
    if not isinstance(entry, dict):
        return None
    point, lo, hi = (entry.get(k) for k in ("point", "lo", "hi"))
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and v == v for v in (point, lo, hi))
    if not numbers or not (0 < point < math.inf and 0 <= lo <= hi):
        return None
    return Interval(float(point), float(lo), float(hi), 0.95)


def _bad(path: Path, problem: str, fix: str) -> KtInterfError:
    return KtInterfError(f"baseline file {path}: {problem}", fix)


def parse(data: Any, path: Path) -> tuple[Fingerprint, list[dict[str, Any]]]:
    """The fingerprint and sessions of a baseline file's parsed JSON, or the error naming ``path``."""
    rerecord = f"delete {path.name} and record the baseline again, or restore it from version control"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _bad(
            path, f"not a {FORMAT} file (format {found!r})", "give a file the baseline recording wrote"
        )
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _bad(path, f"schema_version {version!r} is not a positive whole number", rerecord)
    if version > SCHEMA_VERSION:
        raise _bad(
            path,
            f"schema_version {version} is newer than this pytest-ktinterf reads ({SCHEMA_VERSION})",
            "upgrade pytest-ktinterf to the version that wrote it",
        )
    missing = [k for k in ("fingerprint", "sessions") if k not in data]
    if missing:
        raise _bad(path, f"missing key(s) {', '.join(missing)}", rerecord)
    if not isinstance(data["fingerprint"], dict):
        raise _bad(path, "fingerprint is not an object", rerecord)
    sessions = data["sessions"]
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        raise _bad(path, "sessions is not a list of objects", rerecord)
    for number, session in enumerate(sessions, 1):
        for key in ("effects", "uncontended", "server"):
            if not isinstance(session.setdefault(key, {}), dict):
                raise _bad(path, f"session {number}: {key} is not an object", rerecord)
        _check_nesting(path, number, session, rerecord)
    return Fingerprint(data["fingerprint"]), sessions


def _check_nesting(path: Path, number: int, session: dict[str, Any], rerecord: str) -> None:
    """The shapes the gate walks without asking: ``effects.<figure>.<metric>`` objects and
    ``uncontended.<streams>.<metric>`` lists. Their numbers may be anything: the gate skips
    an entry it cannot use (``stored_interval``, ``is_finite``), but a wrong shape would crash it."""
    for section, leaf, leaf_name in (("effects", dict, "an object"), ("uncontended", list, "a list")):
        for figure, metrics in session[section].items():
            if not isinstance(metrics, dict):
                raise _bad(path, f"session {number}: {section}.{figure} is not an object", rerecord)
            for metric, value in metrics.items():
                if not isinstance(value, leaf):
                    problem = f"session {number}: {section}.{figure}.{metric} is not {leaf_name}"
                    raise _bad(path, problem, rerecord)
    if not isinstance(session["server"].get("identity", {}), dict):
        raise _bad(path, f"session {number}: server.identity is not an object", rerecord)


def read_json(path: Path) -> Any:
    """The parsed file, or a one-line error naming it (unreadable, not UTF-8, not JSON)."""
    text = read_text(path)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _bad(path, f"not JSON ({exc})", "give a file written by pytest-ktinterf") from None


@dataclass
class BaselineFile:
    """One baseline file: its fingerprint and its sessions, oldest first."""

    path: Path
    fingerprint: Fingerprint
    sessions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> BaselineFile:
        path = Path(path)
        fingerprint, sessions = parse(read_json(path), path)
        return cls(path, fingerprint, sessions)

    @classmethod
    def new(cls, directory: Path, fingerprint: Fingerprint) -> BaselineFile:
        """An empty baseline for ``fingerprint``, at the path :func:`find` looks for it (not yet saved)."""
        return cls(Path(directory) / f"{fingerprint.slug}.json", fingerprint, [])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "fingerprint": self.fingerprint.keyed,
            "sessions": self.sessions,
        }

    def save(self) -> None:
        """Write atomically (same-folder temporary file, then ``os.replace``), sorted and indented."""
        text = json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, text)

    def append(self, session: dict[str, Any], keep: int | None = None) -> None:
        """Add the newest session; with ``keep``, drop the oldest beyond that many."""
        if keep is not None and keep < 1:
            raise ValueError(f"keep={keep}: a baseline keeps at least 1 session")
        self.sessions.append(session)
        if keep is not None:
            del self.sessions[:-keep]

    def server_identities(self) -> list[dict[str, Any]]:
        """Each session's server identity, oldest first."""
        return [dict(s.get("server") or {}) for s in self.sessions]


def find(directory: Path, fingerprint: Fingerprint) -> BaselineFile | None:
    """The baseline for ``fingerprint`` in ``directory``, or None when there is none yet."""
    path = Path(directory) / f"{fingerprint.slug}.json"
    if not path.is_file():
        return None
    found = BaselineFile.load(path)
    if found.fingerprint != fingerprint:
        differing = "; ".join(found.fingerprint.differences(fingerprint))
        raise _bad(
            path,
            f"its stored fingerprint differs from this session's ({differing})",
            "the file was renamed or edited by hand: rename it back or delete it",
        )
    return found


def closest(directory: Path, fingerprint: Fingerprint) -> tuple[Path, list[str]] | None:
    """The readable baseline file whose fingerprint differs from ``fingerprint`` in the fewest fields.

    For the "no baseline for <slug>" message: the nearest file and what differs tell the user
    whether they changed the set-up on purpose or by accident. Unreadable files are skipped.
    """
    best: tuple[Path, list[str]] | None = None
    for path in sorted(Path(directory).glob("*.json")):
        try:
            stored = BaselineFile.load(path).fingerprint
        except KtInterfError:
            continue
        differences = stored.differences(fingerprint)
        if best is None or len(differences) < len(best[1]):
            best = (path, differences)
    return best
