"""The seed report's experiments that the spine can already run, on whatever server is configured.

* Concurrency: prefill and decode at 1 and N streams, shown as the report shows them
  ("30+17+27+17 ≈ 91") beside the true aggregate (total tokens over the union of windows).
* CPU stress on the server's own cores: the report's row "KT's own CPU cores" -> prefill and
  decode both affected. Asserted with the interval: degraded by at least 25% on both.
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


def test_cpu_stress_on_server_cores_degrades_prefill_and_decode(kt_server, kt_cpu_stress, kt_compare):
    cores = kt_server.cpus()
    if not cores:
        pytest.skip(
            "the server's cores are unknown (external server): start it through the plugin "
            "(--kt-server-cmd) with --kt-server-cpus to run this experiment"
        )
    comparison = kt_compare(lambda: kt_cpu_stress(cores), label=f"CPU stress on the server's cores {cores}")
    verdicts = [comparison.expect_degraded(metric, at_least=0.25) for metric in ("prefill", "decode")]
    for verdict in verdicts:
        print(verdict.line())
    assert all(v.passed for v in verdicts), "\n".join(v.line() for v in verdicts)
