"""Definitions of per-request and aggregate throughput."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pytest_ktinterf.measure.samples import RequestSample, RoundSample, union_length


def request(stream: int, send: float, first: float, last: float, prompt: int = 100, completion: int = 11):
    times = [first + (last - first) * i / (completion - 1) for i in range(completion)]
    return RequestSample(stream, send, first, last, times, prompt, completion)


def test_request_rates():
    r = request(0, 0.0, 0.5, 1.5, prompt=100, completion=11)
    assert r.prefill_tps == 200.0
    assert r.decode_tps == 10.0  # (11 - 1) tokens over 1 s
    assert len(r.inter_token_latencies) == 10


def test_streams_taking_turns_do_not_add_up():
    """Measurement note 2: four streams served one after another on one core.

    Each stream's own rate looks like the single-stream rate, so their sum is 4x; the true
    aggregate over the union of windows is the single-stream rate.
    """
    rounds = [request(i, 0.0, i * 1.0 + 0.5, i * 1.0 + 1.0) for i in range(4)]
    sample = RoundSample(4, rounds, 0.0, 4.0)
    assert sum(sample.per_stream("decode")) == 4 * 20.0
    assert sample.decode_aggregate == 20.0
    assert "≈ 80 (sum of streams); true aggregate 20" in sample.summation("decode")


intervals = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 50)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=12,
)


@given(intervals)
def test_union_length_matches_brute_force(spans):
    covered = {x for lo, hi in spans for x in range(lo, hi)}
    assert union_length([(float(lo), float(hi)) for lo, hi in spans]) == len(covered)
