"""The main job's intervals and time against a kept reference run (issue 14: "no wider than today's").

    python -m tests.benchmarks.bench_widths REPORT.json [REFERENCE.json]
    python -m tests.benchmarks.bench_widths --keep REPORT.json REFERENCE.json

``REPORT.json`` is the JSON record of a main-job run (``pytest -m interference experiments/
--kt-report-json ...``). ``--keep`` writes the part that matters (per row: pairs, level, each
metric's interval, the time split) to ``REFERENCE.json``; the default reference is the one kept in
``tests/benchmarks/reference/``. The comparison prints, per row and metric, the interval's width
in percentage points now and in the reference, their ratio, and the sums; then the time per phase.
Widths of a single row move a lot between runs of the same code (a 2-core VM's noise), so read
the sum first. It also prints, per row, what the first round of each trial alone would have given
(for designs of 2 rounds or more): the price of measuring one round instead of several.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pytest_ktinterf.judge.stats import paired_ratio_ci
from pytest_ktinterf.measure.comparison import PHASES

REFERENCE = Path(__file__).parent / "reference" / "main_job_dd44ba1.json"
METRICS = ("prefill", "decode")


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """Per row: pairs, level, intervals and time split; plus the first-round-only intervals."""
    rows = {}
    for c in record["comparisons"]:
        if not c.get("ratios"):
            continue
        row: dict[str, Any] = {"pairs": c["pairs"], "time_split": c.get("time_split", {})}
        for metric in METRICS:
            ratio = c["ratios"].get(metric)
            if ratio is None:
                continue
            row[metric] = {k: ratio[k] for k in ("point", "lo", "hi", "confidence")}
            first = _first_round_only(c["trials"], metric, ratio["confidence"])
            if first is not None:
                row[f"{metric}_first_round"] = first
        rows[c["id"]] = row
    return {"rows": rows}


def _first_round_only(
    trials: list[dict[str, Any]], metric: str, confidence: float
) -> dict[str, float] | None:
    if not any(t.get("more_rounds") for t in trials):
        return None
    arms = {
        arm: [
            t[f"{metric}_aggregate_tps"] for t in sorted(trials, key=lambda t: t["index"]) if t["arm"] == arm
        ]
        for arm in ("baseline", "condition")
    }
    n = min(len(arms["baseline"]), len(arms["condition"]))
    ci = paired_ratio_ci(arms["condition"][:n], arms["baseline"][:n], confidence=confidence)
    return {"point": ci.point, "lo": ci.lo, "hi": ci.hi, "confidence": confidence}


def _width(interval: dict[str, float] | None) -> float:
    return 100 * (interval["hi"] - interval["lo"]) if interval else float("nan")


def compare(now: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    out = [
        f"{'row':<28} {'metric':<8} {'pairs':>9} {'now':>22} "
        f"{'width':>6} {'ref':>6} {'ratio':>6} {'1st rnd':>7}"
    ]
    sums = {"now": 0.0, "ref": 0.0, "first": 0.0}
    for rid, row in now["rows"].items():
        old = ref["rows"].get(rid)
        for metric in METRICS:
            iv = row.get(metric)
            if iv is None:
                continue
            width, before = _width(iv), _width(old.get(metric) if old else None)
            first = _width(row.get(f"{metric}_first_round"))
            shown = (
                f"{100 * (iv['point'] - 1):+.0f}% [{100 * (iv['lo'] - 1):+.0f}, {100 * (iv['hi'] - 1):+.0f}]"
            )
            pairs = f"{row['pairs']} / {old['pairs'] if old else '-'}"
            out.append(
                f"{rid[:28]:<28} {metric:<8} {pairs:>9} {shown:>22} {width:6.0f} {before:6.0f} "
                f"{width / before if before == before and before else float('nan'):6.2f} {first:7.0f}"
            )
            if before == before:
                sums["now"] += width
                sums["ref"] += before
                sums["first"] += first if first == first else width
    out.append(
        f"sum of widths over the rows in both: now {sums['now']:.0f}, reference {sums['ref']:.0f} "
        f"(ratio {sums['now'] / sums['ref']:.2f}); first round only, now: {sums['first']:.0f}"
    )
    for name, data in (("now", now), ("reference", ref)):
        phases: dict[str, float] = {}
        for row in data["rows"].values():
            for phase, seconds in row["time_split"].items():
                phases[phase] = phases.get(phase, 0.0) + seconds
        parts = ", ".join(f"{p} {phases[p]:.0f}" for p in PHASES if p in phases)
        out.append(f"time of the comparisons, {name}: {sum(phases.values()):.0f} s ({parts})")
    return out


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--keep":
        kept = summary(json.loads(Path(argv[1]).read_text()))
        Path(argv[2]).parent.mkdir(parents=True, exist_ok=True)
        Path(argv[2]).write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        print(f"kept {len(kept['rows'])} rows in {argv[2]}")
        return 0
    now = summary(json.loads(Path(argv[0]).read_text()))
    ref = json.loads(Path(argv[1] if len(argv) > 1 else REFERENCE).read_text())
    print("\n".join(compare(now, ref)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
