"""pytest-ktinterf: resource-interference experiments on LLM inference servers, as pytest tests.

Public API (the fixtures in :mod:`pytest_ktinterf.plugin` are the usual entry point)::

    server -> probe -> samples -> statistics -> verdict -> report
"""

from pytest_ktinterf.actors import Actor, CpuStress
from pytest_ktinterf.errors import InvalidMeasurement, KtInterfError
from pytest_ktinterf.judge.stats import Interval, median_ratio_ci
from pytest_ktinterf.judge.verdict import Verdict, expect_degraded
from pytest_ktinterf.measure.compare import Comparison, compare
from pytest_ktinterf.measure.monitor import ResourceMonitor
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import RequestSample, RoundSample

__all__ = [
    "Actor",
    "Comparison",
    "CpuStress",
    "Interval",
    "InvalidMeasurement",
    "KtInterfError",
    "Probe",
    "RequestSample",
    "ResourceMonitor",
    "RoundSample",
    "Verdict",
    "compare",
    "expect_degraded",
    "median_ratio_ci",
]
