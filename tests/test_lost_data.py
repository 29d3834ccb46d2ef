"""Nothing measured is lost: a comparison an error stops part-way is recorded with its finished
pairs (status ``aborted``, the error's line, the server's log tail), the error still fails the
test, server errors carry the server's log tail, and ``--tb=long`` shows the traceback too.

The tests drive ``compare`` with a scripted probe; ``test_server_killed_mid_comparison.py`` kills
the real embedded llama-server at pair 3 in a child pytest session and reads its JSON record.
"""

from __future__ import annotations

import contextlib
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf.errors import InvalidMeasurement, KtInterfError, ServerError
from pytest_ktinterf.judge.expectations import parse
from pytest_ktinterf.measure.compare import Design, compare, partial_comparison
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.report.plots import effects_svg, write_plots
from pytest_ktinterf.report.record import Report, json_safe
from pytest_ktinterf.report.text import render_lines
from pytest_ktinterf.server.base import ServerHandle
from pytest_ktinterf.system.processes import spawn, terminate
from tests.scripted import trial_of_call

TAIL = "srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 200\nsomething went wrong here"


def fake_round(streams: int, decode_s: float = 0.8) -> RoundSample:
    """A round whose requests decode 2 tokens in ``decode_s - 0.5`` seconds."""
    reqs = [RequestSample(s, 0.0, 0.5, decode_s, [0.5, decode_s], 128, 2) for s in range(streams)]
    return RoundSample(streams, reqs, time.perf_counter(), time.perf_counter())


class ScriptedProbe:
    """Answers ``measure`` with fake rounds; raises ``error`` at call number ``fail_at`` (1-based).

    Call 1 is the warm-up, then the trials in their counterbalanced order (``tests/scripted.py``).
    """

    server_view = None  # no server behind it: nothing of its own to watch

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at
        self.error = error

    def measure(self, streams: int = 1) -> RoundSample:
        self.calls += 1
        if self.calls == self.fail_at:
            assert self.error is not None
            raise self.error
        _, condition = trial_of_call(self.calls)
        return fake_round(streams, 0.9 if condition else 0.8)

    def warm(self, streams: int = 1) -> RoundSample:
        return fake_round(streams)  # the settling round before each trial: not counted


def server_error() -> ServerError:
    return ServerError(
        "request to http://127.0.0.1:1/v1/chat/completions failed: ConnectError: refused",
        "check that the server is still running (its log tail is below and in the report)",
    )


def run_compare(probe: ScriptedProbe, **kwargs: Any) -> Any:
    return compare(probe, contextlib.nullcontext, label="scripted", trials=6, **kwargs)  # type: ignore[arg-type]


# -- compare: the partial comparison rides on the error ------------------------------------------


def test_an_error_at_pair_3_keeps_pairs_1_and_2_and_reraises_the_same_error() -> None:
    error = server_error()
    probe = ScriptedProbe(fail_at=1 + 2 * 2 + 2, error=error)  # warm-up, 2 pairs, baseline 3, condition 3
    with pytest.raises(ServerError) as info:
        run_compare(probe, log_tail=lambda: TAIL)
    assert info.value is error
    partial = partial_comparison(info.value)
    assert partial is not None and partial is info.value.comparison
    assert partial.status == "aborted" and partial.aborted
    assert partial.pairs == 2
    assert [(t.arm, t.index) for t in partial.trials] == [  # in the order measured
        ("baseline", 0),
        ("condition", 0),
        ("condition", 1),
        ("baseline", 1),
    ]
    assert [(t.arm, t.index) for t in partial.unpaired] == [("baseline", 2)]
    assert partial.reason == error.line()
    assert partial.error == "ServerError"
    assert partial.log_tail == TAIL
    assert info.value.detail == TAIL  # the server's log tail rides on the server error
    assert TAIL.splitlines()[-1] in info.value.render()


def test_the_record_of_an_aborted_comparison() -> None:
    probe = ScriptedProbe(fail_at=1 + 2 * 3 + 1, error=server_error())  # fails at baseline 4
    with pytest.raises(ServerError) as info:
        run_compare(probe, log_tail=lambda: TAIL)
    partial = partial_comparison(info.value)
    assert partial is not None
    record = json_safe(partial.to_record())
    assert record["status"] == "aborted" and record["pairs"] == 3
    assert record["reason"] == info.value.line() and record["error"] == "ServerError"
    assert record["log_tail"] == TAIL
    assert record["unpaired_trials"] == []  # it stopped between pairs: no half pair
    assert [t["index"] for t in record["trials"]] == [0, 0, 1, 1, 2, 2]
    assert record["verdicts"] == []  # finished pairs are kept, never judged
    decode = record["ratios"]["decode"]
    assert decode["point"] == pytest.approx(0.3 / 0.4)  # 1 token gap over 0.4 s against over 0.3 s


def test_a_complete_comparison_says_so_and_carries_no_abort_fields() -> None:
    result = run_compare(ScriptedProbe(), log_tail=lambda: pytest.fail("read only when aborted"))
    record = result.to_record()
    assert record["status"] == "complete" and record["pairs"] == 6
    assert not {"reason", "error", "log_tail", "unpaired_trials"} & set(record)


def test_an_error_in_the_warm_up_is_recorded_with_no_pairs() -> None:
    probe = ScriptedProbe(fail_at=1, error=server_error())
    with pytest.raises(ServerError) as info:
        run_compare(probe, log_tail=lambda: TAIL)
    partial = partial_comparison(info.value)
    assert partial is not None and partial.pairs == 0 and partial.trials == []
    record = json_safe(partial.to_record())  # no ratio exists; the record must still be written
    assert record["ratios"] == {} and record["status"] == "aborted"


def test_an_actor_refusal_is_recorded_but_gets_no_server_tail_as_detail() -> None:
    refusal = KtInterfError("cpu-stress[0]: stress-ng died", "check the stress-ng arguments")
    calls = []

    @contextlib.contextmanager
    def condition() -> Any:
        calls.append(1)
        if len(calls) == 2:  # the second actor: for pair 3 (pairs 1 and 2 share the first)
            raise refusal
        yield None

    with pytest.raises(KtInterfError) as info:
        compare(ScriptedProbe(), condition, label="refused", trials=6, log_tail=lambda: TAIL)  # type: ignore[arg-type]
    assert info.value is refusal and refusal.detail == ""  # not the server's fault
    partial = partial_comparison(refusal)
    assert partial is not None and partial.pairs == 2 and partial.reason == refusal.line()
    assert [(t.arm, t.index) for t in partial.unpaired] == [("baseline", 2)]
    assert partial.log_tail == TAIL  # recorded all the same: it may still explain something


def test_any_exception_carries_its_partial_comparison_and_a_broken_tail_never_hides_it() -> None:
    def broken_tail() -> str:
        raise OSError("log file vanished")

    probe = ScriptedProbe(fail_at=4, error=ValueError("odd figure\nsecond line"))
    with pytest.raises(ValueError) as info:
        run_compare(probe, log_tail=broken_tail)
    partial = partial_comparison(info.value)
    assert partial is not None and partial.pairs == 1
    assert partial.reason == "ValueError: odd figure"
    assert "log file vanished" in str(partial.log_tail)


def test_a_server_error_keeps_its_own_detail_and_gets_the_tail_after_it() -> None:
    error = InvalidMeasurement("the server generated 3 tokens, expected exactly 8", "use a server that ...")
    error.detail = "request 0: 3 tokens"
    with pytest.raises(InvalidMeasurement):
        run_compare(ScriptedProbe(fail_at=3, error=error), log_tail=lambda: TAIL)
    assert error.detail == f"request 0: 3 tokens\n{TAIL}"
    assert isinstance(error, ServerError)


def test_judged_designs_still_judge_and_complete() -> None:
    expectation = parse("decode", {"outcome": "degraded", "at_least": 0.05})
    result = compare(
        ScriptedProbe(), contextlib.nullcontext, label="judged", design=Design(),  # type: ignore[arg-type]
        expectations=[expectation],
    )  # fmt: skip
    assert result.status == "complete" and result.verdicts and result.verdicts[0].passed


# -- the server's own evidence -------------------------------------------------------------------


def test_server_handle_says_how_its_process_ended_and_gives_its_log_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    child = spawn(["sh", "-c", "echo loading model; echo out of memory; kill -9 $$"],
                  name="dies", log_path=tmp_path / "server.log")  # fmt: skip
    try:
        child.popen.wait(timeout=30)
        handle = ServerHandle(
            url="http://127.0.0.1:1", backend="process", description="test server", child=child
        )
        assert handle.exit_status() == "killed by SIGKILL"
        detail = handle.error_detail()
        assert (
            detail.splitlines()[0] == f"test server: killed by SIGKILL; full log: {tmp_path / 'server.log'}"
        )
        assert detail.endswith("loading model\nout of memory")
    finally:
        terminate(child)
    external = ServerHandle(url="http://127.0.0.1:1", backend="external", description="external server")
    assert external.exit_status() is None
    assert "not started by pytest-ktinterf" in external.error_detail()  # no claim about its state


# -- rendering: text and plots -------------------------------------------------------------------


def aborted_record(pairs: int) -> dict[str, Any]:
    """A session record holding one complete comparison and one aborted after ``pairs`` pairs
    (at the condition trial of the next pair)."""
    report = Report()
    report.add_comparison(run_compare(ScriptedProbe()))
    probe = ScriptedProbe(fail_at=1 + 2 * pairs + 2, error=server_error())
    with pytest.raises(ServerError) as info:
        compare(probe, contextlib.nullcontext, label="server killed", trials=10,  # type: ignore[arg-type]
                log_tail=lambda: "test server: killed by SIGKILL\nserver log tail:\n" + TAIL)  # fmt: skip
    partial = partial_comparison(info.value)
    assert partial is not None
    report.add_comparison(partial)
    return json.loads(json.dumps(json_safe(report.to_record())))


def test_text_report_shows_the_aborted_comparison_its_pairs_and_why() -> None:
    lines = render_lines(aborted_record(pairs=3))
    interference = lines[: next(i for i, line in enumerate(lines) if "Where the time went" in line)]
    rows = [line for line in interference if " | " in line and line.startswith(("scripted", "server killed"))]
    assert len(rows) == 2
    assert "ABORTED" not in rows[0] and "| 6 " in rows[0]
    assert "| 3 " in rows[1] and rows[1].endswith("ABORTED after 3 pairs, not judged")
    note = next(line for line in lines if line.startswith("server killed: aborted"))
    assert note == f"server killed: aborted after 3 finished pairs: {server_error().line()}"
    after = lines[lines.index(note) + 1 :]
    assert after[0] == "    test server: killed by SIGKILL"
    assert "    something went wrong here" in after
    assert "    1 trial of the unfinished pair kept in the JSON record" in after


def test_plots_draw_aborted_comparisons_and_survive_ones_without_ratios(tmp_path: Path) -> None:
    record = aborted_record(pairs=7)  # 6 pairs at least give a finite interval, hence a dot
    svg = effects_svg(record)
    root = ET.fromstring(svg)
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "server killed [aborted]" in texts and "ABORTED" in texts  # row label and legend
    assert "ABORTED after 7 pairs" in svg  # in the tooltip
    assert svg.count('fill="#8d99ae"') == 3  # two dots (prefill, decode) and the legend's
    # Aborted before two pairs: no ratio exists. Text and plots must still render.
    for pairs in (0, 1):
        record = aborted_record(pairs=pairs)
        assert "decode" not in record["comparisons"][1]["ratios"]
        assert any("ABORTED after" in line for line in render_lines(record))
        written = write_plots(record, tmp_path / f"p{pairs}")
        for path in written:
            ET.parse(path)


def test_records_without_a_status_render_as_complete() -> None:
    record = aborted_record(pairs=3)
    for comparison in record["comparisons"]:
        for key in ("status", "reason", "error", "log_tail", "unpaired_trials"):
            comparison.pop(key, None)
    lines = render_lines(record)
    assert not any("ABORTED" in line or "aborted" in line for line in lines)
    assert "[aborted]" not in effects_svg(record) and "ABORTED" not in effects_svg(record)


# -- --tb=long shows pytest's traceback as well as the one line --------------------------------

RAISES = """
from pytest_ktinterf.errors import KtInterfError

def helper_that_fails():
    raise KtInterfError("the widget broke", "replace the widget",
                        detail="evidence line one\\nevidence line two")

def test_it():
    helper_that_fails()
"""


@pytest.mark.parametrize(
    ("args", "traceback"),
    [
        ((), False),
        (("--tb=short",), False),
        (("--tb=long",), True),
        (("--tb=native",), True),
        (("--full-trace",), True),
    ],
    ids=["default", "short", "long", "native", "full-trace"],
)
def test_tb_long_shows_the_traceback_and_the_line(
    pytester: pytest.Pytester,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    traceback: bool,
) -> None:
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    pytester.makepyfile(RAISES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "the widget broke -- fix: replace the widget" in out
    assert "    evidence line two" in out  # the detail block, in every style
    shown = "helper_that_fails()" in out and ("raise KtInterfError" in out or "Traceback" in out)
    assert shown == traceback, out
