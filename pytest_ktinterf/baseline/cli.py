"""``python -m pytest_ktinterf compare BASELINE.json NOW.json``: the regression gate, offline.

For a CI job that measured on one machine and judges elsewhere, or a person asking after the
fact whether last night's run regressed: no server, no pytest, only the two files. NOW.json is
a baseline file (its newest session is "now"; the same file as BASELINE compares its newest
session with the ones before it) or a session's ``--kt-report-json`` record.

Exit status: 0 when nothing regressed, 1 when something did (or was inconclusive, with
``--strict``), 2 when the files cannot be compared (unreadable, or from different set-ups:
comparing those would report the set-up's difference as a regression).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pytest_ktinterf.baseline.fingerprint import Fingerprint
from pytest_ktinterf.baseline.gate import (
    INCONCLUSIVE,
    NOT_IN_BASELINE,
    NOT_MEASURED_NOW,
    PASS,
    REGRESSED,
    GateResult,
    compare_sessions,
)
from pytest_ktinterf.baseline.store import FORMAT, BaselineFile, parse, read_json, session_from_record
from pytest_ktinterf.baseline.thresholds import parse_thresholds
from pytest_ktinterf.errors import KtInterfError, one_line
from pytest_ktinterf.report.record import RECORD_FORMAT

COLUMNS = ("figure", "baseline (band)", "now [interval]", "change", "verdict")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's arguments (shared by ``__main__`` and :func:`main`)."""
    parser.add_argument("baseline", type=Path, metavar="BASELINE.json", help="a baseline file")
    parser.add_argument(
        "now",
        type=Path,
        metavar="NOW.json",
        help="another baseline file (its newest session is compared) or a --kt-report-json record",
    )
    parser.add_argument(
        "--fail",
        default=None,
        metavar="SPEC",
        help="regression thresholds: 10%% (every metric, the default) or decode:10%%,prefill:15%%",
    )
    parser.add_argument("--strict", action="store_true", help="an inconclusive figure fails too (exit 1)")


def load_now(path: Path, baseline: BaselineFile) -> tuple[Fingerprint, dict[str, Any], BaselineFile]:
    """The session to judge, its fingerprint, and the baseline to judge it against.

    Comparing a baseline file with itself judges its newest session against the older ones.
    """
    if path.resolve() == baseline.path.resolve():
        if len(baseline.sessions) < 2:
            raise KtInterfError(
                f"{path} holds {len(baseline.sessions)} session(s): none is left to compare its newest with",
                "record more sessions, or give the new session's report record as NOW.json",
            )
        older = dataclasses.replace(baseline, sessions=baseline.sessions[:-1])
        return baseline.fingerprint, baseline.sessions[-1], older
    data = read_json(path)
    found = data.get("format") if isinstance(data, dict) else None
    if found == FORMAT:
        fingerprint, sessions = parse(data, path)
        if not sessions:
            raise KtInterfError(f"{path} holds no sessions", "record a session into it first")
        return fingerprint, sessions[-1], baseline
    if found == RECORD_FORMAT:
        keyed = data.get("fingerprint")
        if not isinstance(keyed, dict):
            raise KtInterfError(
                f"{path} is a report record without a fingerprint (it predates them), so it cannot be "
                "matched to a baseline",
                "run the session again with --kt-report-json on a newer pytest-ktinterf",
            )
        return Fingerprint(keyed), session_from_record(data), baseline
    raise KtInterfError(
        f"{path} is neither a baseline file nor a report record (format {found!r})",
        f'give a "{FORMAT}" file or a --kt-report-json record',
    )


def _server_text(identity: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}={identity.get(k, '-')}" for k in keys) or "-"


def server_change(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """``server: version=b1 -> version=b2``, naming only what changed; None when nothing did."""
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if not keys:
        return None
    return f"server: {_server_text(before, keys)} -> {_server_text(after, keys)}"


def _row(result: GateResult) -> tuple[str, ...]:
    check, now = result.check, result.interval
    if check is None or now is None:
        return (result.figure, "-", "-", "", result.status)
    show = check.format_value
    return (
        result.figure,
        f"{show(check.center)} ({check.band_text()})",
        f"{show(now.point)} [{show(now.lo)}, {show(now.hi)}]",
        f"{100 * (now.point / check.center - 1):+.0f}%",
        result.status.upper() if result.failed else result.status,
    )


def table(results: list[GateResult]) -> list[str]:
    """The results as aligned rows under a header."""
    rows = [COLUMNS, *(_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _thresholds_text(thresholds: dict[str, float]) -> str:
    named = [f"{m} {t:.0%}" for m, t in sorted(thresholds.items()) if m != "*"]
    default = f"{thresholds.get('*', 0.10):.0%}"
    return ", ".join([*named, f"others {default}"]) if named else default


def summary(results: list[GateResult], sessions: int, thresholds: dict[str, float], strict: bool) -> str:
    """One line: what was compared, the counts per status, and the outcome."""
    counts = {s: sum(r.status == s for r in results) for s in (REGRESSED, INCONCLUSIVE, PASS)}
    judged = sum(counts.values())
    sides = {s: sum(r.status == s for r in results) for s in (NOT_IN_BASELINE, NOT_MEASURED_NOW)}
    parts = [f"{counts[s]} {s}" for s in (REGRESSED, INCONCLUSIVE, PASS)]
    parts += [f"{n} {s}" for s, n in sides.items() if n]
    outcome = "FAILED" if any(r.failed for r in results) else "ok"
    mode = ", strict" if strict else ""
    return (
        f"{outcome}: {judged} figure(s) against {sessions} baseline session(s) "
        f"(threshold {_thresholds_text(thresholds)}{mode}): {', '.join(parts)}"
    )


def run(args: argparse.Namespace) -> int:
    """Compare, print, and return the exit status (errors: one line on stderr, status 2)."""
    try:
        thresholds = parse_thresholds(args.fail, option="--fail")
        baseline = BaselineFile.load(args.baseline)
        if not baseline.sessions:
            raise KtInterfError(f"{args.baseline} holds no sessions", "record a session into it first")
        fingerprint, now, baseline = load_now(args.now, baseline)
        differences = baseline.fingerprint.differences(fingerprint)
        if differences:
            raise KtInterfError(
                f"{args.now} was measured on another set-up than {args.baseline} "
                f"({'; '.join(differences)}; 'here' is NOW.json)",
                "compare sessions of one machine, cores, backend and workload: each set-up has its "
                "own baseline file",
            )
    except KtInterfError as exc:
        print(one_line(f"error: {exc.cause}; {exc.fix}"), file=sys.stderr)  # a key may hold "\n"
        return 2
    results = compare_sessions(baseline, now, thresholds, args.strict)
    recorded = [str(s.get("recorded_at", "?")) for s in baseline.sessions]
    print(f"baseline: {args.baseline} ({len(recorded)} session(s), {recorded[0]} .. {recorded[-1]})")
    print(f"now:      {args.now} (recorded {now.get('recorded_at', '?')})")
    change = server_change(baseline.sessions[-1].get("server") or {}, now.get("server") or {})
    print(change or "server: unchanged")
    identities = {repr(sorted(s.items())) for s in baseline.server_identities()}
    if len(identities) > 1:
        print(f"note: the baseline's sessions ran {len(identities)} different server identities")
    if not results:
        print("nothing to compare: neither file holds effects or uncontended throughput")
    else:
        print()
        print("\n".join(table(results)))
        notes = [r for r in results if r.check is not None and r.status != PASS]
        if notes:
            print()
            for result in notes:
                print(f"{result.status}: {result.figure}: {result.reason}")
    print()
    print(summary(results, len(baseline.sessions), thresholds, args.strict))
    return 1 if any(r.failed for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """The command on its own (``python -m pytest_ktinterf compare`` calls :func:`run` the same way)."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_ktinterf compare",
        description="Judge a session against a baseline file: regressed, inconclusive or pass per figure.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
