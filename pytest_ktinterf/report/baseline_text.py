"""The terminal report's baseline section: which file, how many sessions, then -> now per figure.

Drawn from the record like every other table (``text.py``): the record's ``baseline`` section
(file, sessions, the server's identity then) and its gate verdicts, which live on the
comparisons (kind ``gate``) and, for the server's own speed, in ``baseline.verdicts``.
"""

from __future__ import annotations

from typing import Any

from pytest_ktinterf.report.record import truncate
from pytest_ktinterf.server.identity import describe


def gate_verdicts(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every gate verdict of the record: uncontended figures first, then each condition's."""
    found = [dict(v) for v in (record.get("baseline") or {}).get("verdicts") or []]
    for comparison in record.get("comparisons") or []:
        for verdict in comparison.get("verdicts") or []:
            if verdict.get("kind") == "gate":
                name = comparison.get("id") or comparison.get("label") or "?"
                found.append({**verdict, "figure": f"{name} {verdict.get('metric', '')}"})
    return found


def gate_failed(record: dict[str, Any]) -> bool:
    """Whether any gate verdict of the record failed: regressed, or inconclusive when strict."""
    return any(v.get("status") == "fail" or v.get("fails") for v in gate_verdicts(record))


def _identity(record: dict[str, Any]) -> str:
    return describe((record.get("server") or {}).get("identity") or {})


def baseline_lines(record: dict[str, Any]) -> list[str]:
    """The section's lines; none when the session ran without a baseline flag."""
    section = record.get("baseline") or {}
    if not section:
        return []
    out = ["", f"baseline ({section.get('mode', '?')}), fingerprint {section.get('fingerprint', '?')}"]
    if section.get("file"):
        then = "; ".join(section.get("server_then") or []) or "?"
        out.append(f"  file: {section['file']} ({section.get('sessions', 0)} sessions; server then: {then})")
        out.append(f"  server now: {_identity(record)}")
    if section.get("missing"):
        out.append(f"  {section['missing']}")
    verdicts = gate_verdicts(record)
    if verdicts:
        width = max(len(str(v.get("figure", ""))) for v in verdicts)
        for v in verdicts:
            word = str(v.get("word") or v.get("status") or "?").upper()
            figure = str(v.get("figure", "")).ljust(width)
            out.append(f"  {figure}  {word:<12} {truncate(str(v.get('reason', '')), 110)}")
        counts: dict[str, int] = {}
        for v in verdicts:
            counts[str(v.get("word") or v.get("status"))] = (
                counts.get(str(v.get("word") or v.get("status")), 0) + 1
            )
        out.append("  gate: " + ", ".join(f"{n} {w}" for w, n in sorted(counts.items())))
    return out
