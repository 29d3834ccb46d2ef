"""Per-set-up baselines and a regression gate that knows how much sessions vary.

``fingerprint`` says which sessions are comparable (same machine, cores, backend, workload),
``store`` keeps a few sessions per fingerprint in a reviewable JSON file, ``gate`` judges a new
session against them (regressed only when past the threshold *and* beyond the sessions'
spread), and ``cli`` does that offline (``python -m pytest_ktinterf compare``).
"""

from pytest_ktinterf.baseline.fingerprint import Fingerprint, hardware, make, unstable
from pytest_ktinterf.baseline.gate import (
    GateCheck,
    GateResult,
    compare_sessions,
    effect_check,
    location_interval,
    same_session_check,
    throughput_check,
)
from pytest_ktinterf.baseline.store import DEFAULT_KEEP, BaselineFile, closest, find, session_from_record
from pytest_ktinterf.baseline.thresholds import parse_thresholds, threshold_for

__all__ = [
    "DEFAULT_KEEP",
    "BaselineFile",
    "Fingerprint",
    "GateCheck",
    "GateResult",
    "closest",
    "compare_sessions",
    "effect_check",
    "find",
    "hardware",
    "location_interval",
    "make",
    "parse_thresholds",
    "same_session_check",
    "session_from_record",
    "threshold_for",
    "throughput_check",
    "unstable",
]
