"""The probe against the real embedded llama-server: its figures agree with the server's own.

Client-side decode must be within 5% of llama.cpp's ``predicted_per_second`` and prefill within
10% of ``prompt_per_second`` (TTFT also contains HTTP and tokenisation overhead, which the
server's own timer does not).
"""

from __future__ import annotations

import statistics

import pytest

import pytest_ktinterf.measure.probe as probe_module
from pytest_ktinterf.errors import InvalidMeasurement
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.system.lock import measuring

pytestmark = pytest.mark.interference


@pytest.fixture
def embedded(kt_server):
    if kt_server.backend != "embedded":
        pytest.skip("accuracy is checked against the embedded llama-server's own timings")
    return kt_server


def test_client_figures_match_the_servers_own(embedded, kt_probe):
    with measuring():
        requests = [kt_probe.measure(1).requests[0] for _ in range(6)]
    decode = statistics.median(r.decode_tps / r.server_decode_tps for r in requests)
    prefill = statistics.median(r.prefill_tps / r.server_prefill_tps for r in requests)
    overhead_ms = statistics.median(
        1000 * (r.ttft - r.processed_tokens / r.server_prefill_tps) for r in requests
    )
    print(f"client/server decode {decode:.4f}, prefill {prefill:.4f}, TTFT overhead {overhead_ms:.1f} ms")
    assert abs(decode - 1) <= 0.05
    assert abs(prefill - 1) <= 0.10


def test_prompt_length_is_calibrated(embedded, kt_probe, kt_options):
    """The median prompt is on target; single prompts vary by the nonce's own tokenization
    (16 random hex characters are a few tokens more or less), which the probe's validity check
    bounds at 10% of the target."""
    with measuring():
        requests = [kt_probe.measure(1).requests[0] for _ in range(5)]
    lengths = [r.prompt_tokens for r in requests]
    assert abs(statistics.median(lengths) - kt_options.prompt_tokens) <= 4, lengths
    assert all(r.completion_tokens == kt_options.max_tokens for r in requests)


def test_without_the_nonce_the_prefix_cache_is_caught(embedded, kt_probe, monkeypatch):
    """Measurement note 1: a repeated prompt is served from cache; the probe must refuse it."""
    monkeypatch.setattr(probe_module, "nonce", lambda: "same-prefix-every-time")
    with measuring():
        kt_probe.measure(1)
        with pytest.raises(InvalidMeasurement, match="prefix cache served"):
            kt_probe.measure(1)


def test_completions_api_is_measured_too(embedded):
    probe = Probe(embedded.url, api="completions", prompt_tokens=64, max_tokens=16)
    with measuring():
        request = probe.measure(1).requests[0]
    assert request.tokens_from_usage and request.completion_tokens == 16
    assert abs(request.decode_tps / request.server_decode_tps - 1) <= 0.05
