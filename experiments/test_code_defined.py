"""Code-defined interference tests: the same machinery as the experiment files, from Python.

The report's advice is that CPU-heavy jobs may run beside KT *if their CPU use is capped*. This
test measures what a cap buys when the job lands on KT's own cores: stress-ng at a 50% load cap
and uncapped. Each parameter is one line: ``kt_interfere`` runs interleaved pairs until the
expectations are decided, prints the verdicts, and fails the test on a failed or inconclusive one.
"""

from __future__ import annotations

import pytest


@pytest.mark.interference
@pytest.mark.parametrize(
    ("load_percent", "at_least"),
    [(50, 0.10), (100, 0.25)],
    ids=["capped-50", "uncapped"],
)
def test_cpu_stress_on_the_servers_cores(kt_interfere, load_percent, at_least):
    bound = {"outcome": "degraded", "at_least": at_least}
    comparison = kt_interfere(
        "cpu_stress",
        cores="server",
        load_percent=load_percent,
        expect={"prefill": bound, "decode": bound},
        label=f"CPU stress on the server's cores, load capped at {load_percent}%",
    )
    assert {v.metric for v in comparison.verdicts} == {"prefill", "decode"}
