"""The server's own figures beside the probe's: a real llama-server's ``/metrics``, per round (issue 15).

The server is started by hand (``tests/hand_server.py``) with ``--metrics`` and watched as the
plugin watches any server: scraped before, during and after each monitored round.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_ktinterf.measure import prometheus
from pytest_ktinterf.measure.compare import measure_monitored
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.server_view import AGREEMENT, ServerView
from pytest_ktinterf.system.lock import measuring
from pytest_ktinterf.system.processes import Child
from tests.hand_server import hand_started

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Child]]:
    with hand_started(tmp_path_factory.mktemp("metrics"), "--metrics") as started:
        yield started


@pytest.fixture(scope="module")
def probe(server) -> Probe:
    url, _ = server
    probe = Probe(url, prompt_tokens=64, max_tokens=32)
    probe.server_view = ServerView.find(url, None)
    with measuring():
        probe.calibrate()
    return probe


def test_llama_servers_metrics_are_recognised(probe):
    view = probe.server_view
    assert view is not None and view.names is not None and view.names.engine == "llama.cpp"
    assert view.describe()["metrics"] == "llama.cpp"


def test_the_servers_decode_agrees_with_the_probes_within_its_accuracy(probe, server):
    with measuring():
        samples = [measure_monitored(probe, 1, server[1].tree) for _ in range(3)]
    ratios = []
    for sample in samples:
        metrics = sample.server["metrics"]
        assert metrics["generated_tokens"] == 32 == sample.requests[0].completion_tokens
        assert metrics["prompt_tokens"] == sample.requests[0].processed_tokens
        assert metrics["failed_scrapes"] == 0 and metrics["scrapes"] >= 2
        ratios.append(metrics["decode_tps"] / sample.per_request("decode"))
    print(f"server/client decode per round: {[round(r, 4) for r in ratios]}")
    assert abs(statistics.median(ratios) - 1) <= AGREEMENT["decode"]
    record = samples[0].to_record()
    assert record["server"]["metrics"]["engine"] == "llama.cpp" and "client_per_request_tps" in record


def test_other_traffic_in_the_round_is_named_and_its_rates_not_used(probe, server):
    url, _ = server
    view = probe.server_view
    assert view is not None
    with measuring(), view.watching() as watch:
        sample = probe.measure(1)
        httpx.post(  # someone else's request, inside the round
            f"{url}/v1/completions",
            json={"prompt": "hello", "max_tokens": 5, "ignore_eos": True},
            timeout=60,
            trust_env=False,
        ).raise_for_status()
    metrics = watch.figures(sample)["metrics"]
    assert metrics["decode_tps"] is None and metrics["prefill_tps"] is None
    assert metrics["generated_tokens"] == 32 + 5
    assert "other traffic" in metrics["reason"]


def test_a_server_without_metrics_says_what_turns_them_on(tmp_path):
    with hand_started(tmp_path) as (url, _):
        view = ServerView.find(url, None)
    assert view.names is None
    assert "--metrics" in (view.no_metrics or "")
    assert view.describe()["metrics"].startswith("none: GET /metrics answered")


def test_sglang_metrics_are_read_with_their_own_definitions():
    """SGLang's (KT's current server's) exposition, from its documentation (tests/data/SOURCES.md)."""
    before = prometheus.parse((DATA / "sglang_metrics.txt").read_text())
    names = prometheus.engine_of(before)
    assert names is not None and names.engine == "sglang"
    after = dict(before)
    after["sglang:prompt_tokens_total"] += 256  # two requests of 128 prompt tokens
    after["sglang:generation_tokens_total"] += 128
    after["sglang:time_to_first_token_seconds_sum"] += 2.0  # 1 s each
    after["sglang:time_to_first_token_seconds_count"] += 2
    after["sglang:time_per_output_token_seconds_sum"] += 0.05  # 25 ms a token, each
    after["sglang:time_per_output_token_seconds_count"] += 2
    found = prometheus.rates(names, before, after, requests=2)
    assert found == {
        "prompt_tokens": 256,
        "generated_tokens": 128,
        "prefill_tps": pytest.approx(128.0),
        "decode_tps": pytest.approx(40.0),
    }


def test_the_text_format_is_read_as_prometheus_writes_it():
    text = (
        "# HELP x A counter\n# TYPE x counter\n"
        'x{model_name="a"} 1.5e+03\nx{model_name="b"} 2\n'
        'h_bucket{le="0.1"} 4\nh_sum 0.3\nh_count 4\n'
        "bad_value NaN\nnot a sample line\n"
    )
    assert prometheus.parse(text) == {"x": 1502.0, "h_sum": 0.3, "h_count": 4.0}
