"""A condition's own output length (``max_tokens`` in an experiment file) applies to both of its
arms, is recorded and shown, and the probe has the session's again afterwards, error or not.

A real ``Probe`` whose rounds are scripted: what is tested is which output length each counted
round asked for, not a server.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from pytest_ktinterf.baseline.store import effects_of, figure_key
from pytest_ktinterf.errors import ServerError
from pytest_ktinterf.measure.compare import compare
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.report.text import streams_cell


class ScriptedProbe(Probe):
    """Notes the output length of each counted round; fails at round ``fail_at`` (1-based)."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__("http://127.0.0.1:9", max_tokens=64)  # never contacted
        self.asked: list[int] = []
        self.fail_at = fail_at

    def measure(self, streams: int = 1) -> RoundSample:
        self.asked.append(self.max_tokens)
        if len(self.asked) == self.fail_at:
            raise ServerError("request failed: the scripted server went away", "none: a test")
        request = RequestSample(0, 0.0, 0.5, 1.0, [0.5, 1.0], 128, 2)
        return RoundSample(1, [request], time.perf_counter(), time.perf_counter())

    def warm(self, streams: int = 1) -> RoundSample:
        return RoundSample(1, [], time.perf_counter(), time.perf_counter())


def test_both_arms_generate_the_conditions_tokens_and_the_record_says_so() -> None:
    probe = ScriptedProbe()
    result = compare(probe, contextlib.nullcontext, label="short", trials=4, max_tokens=16)  # type: ignore[arg-type]
    assert probe.asked == [16] * (1 + 2 * 4)  # the warm-up and every trial of both arms
    assert probe.max_tokens == 64  # the session's again
    record = result.to_record()
    assert record["max_tokens"] == 16
    assert streams_cell(record) == "1, 16 tokens out"


def test_without_its_own_length_a_condition_uses_the_sessions_and_records_nothing() -> None:
    probe = ScriptedProbe()
    record = compare(probe, contextlib.nullcontext, label="session", trials=2).to_record()  # type: ignore[arg-type]
    assert set(probe.asked) == {64}
    assert "max_tokens" not in record and streams_cell(record) == "1"


def test_an_error_part_way_gives_the_probe_its_sessions_length_back() -> None:
    probe = ScriptedProbe(fail_at=3)
    with pytest.raises(ServerError):
        compare(probe, contextlib.nullcontext, label="short", trials=4, max_tokens=16)  # type: ignore[arg-type]
    assert probe.asked == [16, 16, 16] and probe.max_tokens == 64


def test_a_baseline_keeps_a_conditions_own_length_in_its_name_so_other_lengths_are_not_compared() -> None:
    records = []
    for tokens in (16, None):
        result = compare(ScriptedProbe(), contextlib.nullcontext, label="c", trials=6, max_tokens=tokens)  # type: ignore[arg-type]
        result.id, result.experiment = "overflow_contained", "seed_report.toml"
        records.append(result.to_record())
    assert set(effects_of({"comparisons": records})) == {
        "seed_report.toml::overflow_contained[16 tokens]",
        "seed_report.toml::overflow_contained",
    }
    assert figure_key("seed_report.toml", "overflow_contained", 16) in effects_of(
        {"comparisons": records[:1]}
    )
