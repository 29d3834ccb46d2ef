"""Live progress: the user sees each pair while a condition runs, without ``-s``.

pytest captures a test's output, so a line written the plain way reaches the user only when the
test fails (or with ``-s``): a 20-minute experiment would show only dots. These tests run child
pytest sessions (capture on, as a user's) and read what reached their terminal; the per-pair line
itself is checked on a scripted comparison.
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest

from pytest_ktinterf.judge.expectations import parse
from pytest_ktinterf.measure.compare import Design, compare, time_left
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from tests.scripted import trial_of_call

CHILD = """
from pytest_ktinterf.progress import say_to

def test_long(request):
    print("captured-marker")  # proves capture was on: it must not reach the terminal
    say = say_to(request.config)
    say("cpu_server: pair 1/8: decode -50%")
    say("cpu_server: pair 2/8: decode -49%")
"""


@pytest.mark.parametrize(
    ("flags", "shown"), [((), True), (("-q",), True), (("-v",), True), (("-qq",), False)]
)
def test_progress_reaches_the_terminal_while_output_is_captured(
    pytester: pytest.Pytester, flags: tuple[str, ...], shown: bool
) -> None:
    pytester.makepyfile(test_child=CHILD)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *flags)
    assert result.ret == 0, result.stdout.str()  # -q -q prints no summary line to parse
    lines = [line for line in result.outlines if line.startswith("ktinterf: cpu_server: pair")]
    assert "captured-marker" not in result.stdout.str(), "capture was off: the test proves nothing"
    if shown:
        # each on a line of its own, not glued to the dots
        assert lines == [
            "ktinterf: cpu_server: pair 1/8: decode -50%",
            "ktinterf: cpu_server: pair 2/8: decode -49%",
        ]
    else:
        assert lines == [], "-q -q asks for quiet"


def test_progress_from_xdist_workers_reaches_the_terminal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_child=CHILD)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    said = [line for line in result.errlines if "ktinterf: cpu_server: pair" in line]
    assert [re.sub(r"^\[gw[01]\] ", "", line) for line in said] == [
        "ktinterf: cpu_server: pair 1/8: decode -50%",
        "ktinterf: cpu_server: pair 2/8: decode -49%",
    ], (result.errlines, result.outlines)  # each once, named by its worker
    assert "captured-marker" not in result.stdout.str() + result.stderr.str()


def _round(decode_s: float) -> RoundSample:
    request = RequestSample(0, 0.0, 0.5, decode_s, [0.5, decode_s], 128, 2)
    now = time.perf_counter()
    return RoundSample(1, [request], now, now)


class HalvingProbe:
    """Every condition trial decodes at about half the baseline's speed (with a little spread)."""

    server_view = None  # no server behind it: nothing of its own to watch

    def __init__(self) -> None:
        self.calls = 0

    def measure(self, streams: int = 1) -> RoundSample:
        self.calls += 1
        _, condition = trial_of_call(self.calls)
        wobble = 0.01 * (self.calls % 5)
        return _round(0.5 + (1.0 if condition else 0.5) * (1 + wobble))

    def warm(self, streams: int = 1) -> RoundSample:
        return _round(0.6)  # the settling round before each trial: not counted


def test_each_pair_says_the_running_effect_its_interval_and_the_time_left() -> None:
    said: list[str] = []
    compare(
        HalvingProbe(),  # type: ignore[arg-type]
        contextlib.nullcontext,
        label="halved",
        design=Design(),
        expectations=[parse("decode", {"outcome": "degraded", "at_least": 0.25})],
        progress=said.append,
    )
    pairs = [line for line in said if ": pair " in line]
    assert [re.search(r"pair (\d+/\d+)", line)[1] for line in pairs] == [f"{k}/8" for k in range(1, 9)]  # type: ignore[index]
    # before the first look there is no interval at its level (98.3% for 3 looks), and the line says so
    assert "(no 98.3% interval yet)" in pairs[5], pairs[5]
    # at the first look, the effect with its interval; decided there, so nothing more
    assert re.search(r"decode -\d+% \[-\d+%, -\d+%\]", pairs[7]), pairs[7]
    assert pairs[7].endswith("judging"), pairs[7]
    assert re.search(r"s a pair, \d+ s to the next look", pairs[0]), pairs[0]


@pytest.mark.parametrize(
    ("per_pair", "to_look", "to_max", "said"),
    [
        (30.0, 0, 6, "30 s a pair, judging"),
        (30.0, 2, 2, "30 s a pair, 60 s to the next look"),
        (30.0, 5, 11, "30 s a pair, 2 min to the next look, 6 min at most"),
    ],
)
def test_time_left_is_counted_to_the_next_look_and_at_most(
    per_pair: float, to_look: int, to_max: int, said: str
) -> None:
    assert time_left(per_pair, to_look, to_max) == said
