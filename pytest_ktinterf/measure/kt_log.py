"""KT v0.2's own figures: the ``Performance(T/s)`` line it logs after each request.

KT (ktransformers/server/backend, ``report_last_time_performance``) logs, through Python's
logging with its default format ``%(asctime)s %(levelname)s %(pathname)s[%(lineno)d]: %(message)s``::

    2025-02-21 11:57:02,966 INFO /opt/.../ktransformers/server/backend/base.py[64]: Performance(T/s):
      prefill 11.48, decode 5.33. Time(s): tokenize 0.011, prefill 1.479, decode 233.2

(one line in the log; folded here).

The seed report's numbers are these lines. A line is matched to a round by its time stamp: it
is written when the request's generation ends, before its last chunk is sent, so it falls inside
the round's wall-clock window [first request sent, last response ended]. That is exact to the
millisecond of ``asctime`` when the server's clock and time zone are this host's (a process, or a
container on the same kernel with the same TZ); at N streams a round has N lines, matched to the
round, not to a request. A line without a time stamp (another log format) belongs to the round
in which it reached the log file. Lines outside the window are counted, never silently used.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_LINE = re.compile(
    r"^(?:(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?:[,.](\d{1,6}))?)?.*?"
    rf"Performance\(T/s\): prefill {_NUMBER}, decode {_NUMBER}\. "
    rf"Time\(s\): tokenize {_NUMBER}, prefill {_NUMBER}, decode {_NUMBER}"
)
SLACK_S = 0.002  # asctime truncates to the millisecond


@dataclass(frozen=True)
class PerformanceLine:
    """One request as KT timed it: its rates and the seconds each phase took."""

    t: float | None  # seconds since the epoch (the line's local time stamp), None without one
    prefill_tps: float
    decode_tps: float
    tokenize_s: float
    prefill_s: float
    decode_s: float


def parse_line(line: str) -> PerformanceLine | None:
    """The figures of a ``Performance(T/s)`` line, or None for any other line."""
    found = _LINE.match(line.strip())
    if found is None:
        return None
    stamp, fraction, *numbers = found.groups()
    t = None
    if stamp is not None:
        moment = datetime.datetime.fromisoformat(stamp.replace(" ", "T"))  # naive: local time
        t = moment.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
    prefill_tps, decode_tps, tokenize_s, prefill_s, decode_s = (float(x) for x in numbers)
    return PerformanceLine(t, prefill_tps, decode_tps, tokenize_s, prefill_s, decode_s)


def parse(text: str) -> list[PerformanceLine]:
    return [found for line in text.splitlines() if (found := parse_line(line)) is not None]


def figures(lines: list[PerformanceLine]) -> dict[str, Any]:
    """A round's KT figures: its requests' tokens over their seconds, per phase (None: no line)."""

    def rate(tps: list[float], seconds: list[float]) -> float | None:
        total = sum(seconds)
        return sum(r * s for r, s in zip(tps, seconds, strict=True)) / total if total > 0 else None

    return {
        "lines": len(lines),
        "prefill_tps": rate([x.prefill_tps for x in lines], [x.prefill_s for x in lines]),
        "decode_tps": rate([x.decode_tps for x in lines], [x.decode_s for x in lines]),
    }


class LogWindow:
    """The log lines a round produced: where the file ended when it started, and its wall-clock window."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = _size(path)

    def read(self, start: float, end: float) -> dict[str, Any]:
        """KT's figures from the lines written since the round began, matched to [start, end]."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                text = handle.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return {"error": f"{self.path}: {exc.strerror or exc}"}
        lines = parse(text)
        inside = [x for x in lines if x.t is None or start - SLACK_S <= x.t <= end + SLACK_S]
        return {**figures(inside), "outside_window": len(lines) - len(inside)}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
