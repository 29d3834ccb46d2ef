"""How the probe handles broken servers, against the FAKE broken server (see its docstring).

The co-runner's load sends the probe's requests: the same responses, counted as its errors.
"""

from __future__ import annotations

import threading
import time

import pytest

from pytest_ktinterf.actors.corunner_load import LoopCounts, RequestLoop
from pytest_ktinterf.errors import InvalidMeasurement, KtInterfError, ServerError
from pytest_ktinterf.measure.probe import Probe, ProbeWarning
from tests.fake_broken_server import fake_broken_server, sse, token_chunk, usage_chunk

GOOD_TOKENS = b"".join(token_chunk(f" t{i}") for i in range(8))


def probe(url: str, max_tokens: int = 8) -> Probe:
    p = Probe(url, prompt_tokens=32, max_tokens=max_tokens)
    p.filler_words = 10  # skip calibration: the fake server cannot count tokens
    return p


def test_well_formed_stream_is_accepted():
    body = sse({"choices": [{"delta": {"role": "assistant", "content": None}}]})
    body += GOOD_TOKENS + usage_chunk(32, 8) + b"data: [DONE]\n\n"
    with fake_broken_server(body=body) as url:
        sample = probe(url).measure(1)
    request = sample.requests[0]
    assert (request.prompt_tokens, request.completion_tokens) == (32, 8)
    assert len(request.token_times) == 8  # the role-only chunk is not a token


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_never_carries_the_probe(variable: str, monkeypatch: pytest.MonkeyPatch):
    """Corporate GPU boxes set http_proxy: the probe must still talk to the server it measures.

    The proxy named here listens nowhere (port 9, discard), so a probe that trusted the
    environment would fail to connect instead of measuring the (fake) server.
    """
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    body = GOOD_TOKENS + usage_chunk(32, 8) + b"data: [DONE]\n\n"
    with fake_broken_server(body=body) as url:
        sample = probe(url).measure(1)
    assert len(sample.requests[0].token_times) == 8


def test_http_error_names_the_status():
    with fake_broken_server(status=500, body=b"out of memory") as url:
        with pytest.raises(KtInterfError, match="HTTP 500: out of memory"):
            probe(url).measure(1)


def test_non_json_chunk_is_an_invalid_measurement():
    with fake_broken_server(body=token_chunk("a") + b"data: {not json\n\n") as url:
        with pytest.raises(InvalidMeasurement, match="not JSON"):
            probe(url).measure(1)


def test_error_object_mid_stream_is_reported():
    body = token_chunk("a") + sse({"error": {"message": "KV cache full"}})
    with fake_broken_server(body=body) as url:
        with pytest.raises(KtInterfError, match="KV cache full"):
            probe(url).measure(1)


def test_no_tokens_at_all():
    with fake_broken_server(body=usage_chunk(32, 0) + b"data: [DONE]\n\n") as url:
        with pytest.raises(InvalidMeasurement, match="streamed no tokens"):
            probe(url).measure(1)


def test_missing_usage_counts_chunks_with_a_warning():
    with fake_broken_server(body=GOOD_TOKENS + b"data: [DONE]\n\n") as url:
        p = probe(url)
        p.prompt_tokens = 0  # no usage: the prompt length is unknown, skip that check
        p._validate = lambda request: None  # type: ignore[method-assign]
        with pytest.warns(ProbeWarning, match="counting 8 chunks"):
            sample = p.measure(1)
    assert sample.requests[0].completion_tokens == 8
    assert not sample.requests[0].tokens_from_usage


def test_early_stop_is_an_invalid_measurement():
    body = GOOD_TOKENS[: len(GOOD_TOKENS) // 2] + usage_chunk(32, 4) + b"data: [DONE]\n\n"
    with fake_broken_server(body=body) as url:
        with pytest.raises(InvalidMeasurement, match="generated 4 tokens, expected exactly 8"):
            probe(url).measure(1)


def test_prefix_cache_hit_is_an_invalid_measurement():
    body = GOOD_TOKENS + usage_chunk(32, 8, cached=24) + b"data: [DONE]\n\n"
    with fake_broken_server(body=body) as url:
        with pytest.raises(InvalidMeasurement, match="prefix cache served 24 of 32"):
            probe(url).measure(1)


def test_template_opening_in_cache_is_subtracted_not_rejected():
    body = GOOD_TOKENS + usage_chunk(32, 8, cached=5) + b"data: [DONE]\n\n"
    with fake_broken_server(body=body) as url:
        request = probe(url).measure(1).requests[0]
    assert request.processed_tokens == 27
    assert request.prefill_tps == pytest.approx(27 / request.ttft)


# --- the co-runner's load sends the probe's requests: the same handling, counted instead of raised ----


def run_load(url: str, seconds: float = 0.5) -> LoopCounts:
    load = RequestLoop(url, api="chat", model=None, max_tokens=8, streams=2, timeout_s=5.0, name="load")
    load.start()
    try:
        time.sleep(seconds)
    finally:
        load.request_stop()
        assert load.join(5.0)
    return load.snapshot()


def test_corunner_load_counts_completed_requests_and_the_servers_tokens():
    with fake_broken_server(body=GOOD_TOKENS + usage_chunk(32, 8) + b"data: [DONE]\n\n") as url:
        counts = run_load(url)
    assert counts.errors == 0
    assert counts.completed >= 1
    assert counts.tokens >= counts.completed * 8


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b"out of memory", "HTTP 500: out of memory"),
        (200, token_chunk("a") + sse({"error": {"message": "KV cache full"}}), "KV cache full"),
        (200, token_chunk("a") + b"data: {not json\n\n", "not JSON"),
        (200, usage_chunk(32, 0) + b"data: [DONE]\n\n", "streamed no tokens"),
    ],
)
def test_corunner_load_counts_a_broken_response_as_an_error_not_a_completion(status, body, message):
    with fake_broken_server(status=status, body=body) as url:
        counts = run_load(url)
    assert counts.completed == 0
    assert counts.errors >= 1
    assert message in counts.last_error


# --- a server that hangs: one clear error within a deadline, never a hang -------------------------

TIMEOUT_S = 1.0  # the probe's request timeout in these tests (the plugin's default is 300 s)
DEADLINE_S = 10.0  # the error must come by then; a probe that waits for the server would not


def measure_in_thread(url: str) -> tuple[BaseException | None, float]:
    """Measure once with a short request timeout, in a thread joined with a deadline.

    Returns the error raised and how long it took. A probe that hangs fails the test at the
    deadline instead of hanging the suite; the fake server's exit then closes its connection,
    which releases the thread.
    """
    p = Probe(url, prompt_tokens=32, max_tokens=8, request_timeout_s=TIMEOUT_S)
    p.filler_words = 10
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            p.measure(1)
            outcome.append(None)
        except BaseException as exc:  # handed to the test as it came
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    elapsed = time.monotonic() - started
    if worker.is_alive():
        pytest.fail(f"the probe hung: no error {DEADLINE_S:.0f} s after the server stopped answering")
    return outcome[0], elapsed


@pytest.mark.parametrize(
    ("then", "body", "message"),
    [
        ("never", b"", f"timed out after {TIMEOUT_S} s"),  # accepts, reads, never answers
        ("stall", GOOD_TOKENS[: len(GOOD_TOKENS) // 2], f"timed out after {TIMEOUT_S} s"),
        ("trickle", GOOD_TOKENS[: len(GOOD_TOKENS) // 2], f"streamed no token for {TIMEOUT_S} s"),
    ],
    ids=["never-answers", "stalls-mid-stream", "stalls-behind-keep-alive-comments"],
)
def test_a_hung_server_is_one_clear_error_within_the_deadline(then, body, message):
    with fake_broken_server(body=body, then=then) as url:
        error, elapsed = measure_in_thread(url)
    assert isinstance(error, ServerError), repr(error)
    assert message in error.line() and url in error.line(), error.line()
    assert "\n" not in error.line() and " -- fix: " in error.line()
    assert "raise --kt-request-timeout" in error.fix  # a long prefill is the other cause
    assert elapsed < TIMEOUT_S + 5.0, f"the error took {elapsed:.1f} s"
