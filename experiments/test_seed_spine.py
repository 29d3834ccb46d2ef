"""The report's first tables, measured on whatever server is configured.

Prefill and decode at 1 and N streams, shown as the report shows them ("30+17+27+17 ≈ 91")
beside the true aggregate (total tokens over the union of windows), and the memory table. The
concurrency *claim* (4 streams raise aggregate throughput by 30-50%) is judged in
``seed_report.toml::concurrency``; the association matrix is the rest of that file.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.interference

ROUNDS = 3


@pytest.mark.parametrize("streams", ["1", "max"])
def test_throughput_at_1_and_n_streams(kt_measure, kt_options, streams):
    n = 1 if streams == "1" else kt_options.streams
    rounds = kt_measure(streams=n, rounds=ROUNDS)
    for sample in rounds:
        assert len(sample.requests) == n
        assert sample.prefill_aggregate > 0 and sample.decode_aggregate > 0
        # The true aggregate never exceeds what the streams could deliver side by side.
        assert sample.decode_aggregate <= sum(sample.per_stream("decode")) * 1.001
    print(
        f"{n} stream(s): prefill {rounds[-1].summation('prefill')}; decode {rounds[-1].summation('decode')}"
    )
