"""Baseline files: what a session keeps from its record, and files that survive review and crashes.

The file is committed and read by people, so it must round-trip exactly, be sorted and
indented, never be left half-written, and say in one line what is wrong with it when it is.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf.baseline.fingerprint import Fingerprint
from pytest_ktinterf.baseline.store import (
    DEFAULT_KEEP,
    FORMAT,
    SCHEMA_VERSION,
    BaselineFile,
    closest,
    find,
    session_from_record,
    trial_value,
)
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.judge.stats import paired_ratio_ci

KEYED = {"cpu_model": "AMD EPYC", "logical_cpus": 2, "ram_gib": 24, "workload": {"prompt_tokens": 128}}


def trial(arm: str, index: int, prefill: float, decode: float, **extra: Any) -> dict[str, Any]:
    """A recorded trial as ``measure/compare.py`` writes it (the fields the baseline reads)."""
    return {
        "arm": arm,
        "index": index,
        "streams": 1,
        "prefill_aggregate_tps": prefill,
        "decode_aggregate_tps": decode,
        "prefill_per_stream_tps": [prefill],
        "decode_per_stream_tps": [decode],
        **extra,
    }


def comparison(
    cid: str | None, experiment: str | None, ratio: float, pairs: int = 8, seed: int = 0, **extra: Any
) -> dict[str, Any]:
    rng = random.Random(seed)
    trials = []
    for i in range(pairs):
        base = 50 * math.exp(rng.gauss(0, 0.03))
        trials.append(trial("baseline", i, base, base / 4))
        cond = base * ratio * math.exp(rng.gauss(0, 0.02))
        trials.append(trial("condition", i, cond, cond / 4))
    return {"label": cid, "id": cid, "experiment": experiment, "streams": 1, "trials": trials, **extra}


def record(comparisons: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "format": "pytest-ktinterf report v1",
        "created": "2025-01-02T03:04:05+0000",
        "machine": {"hostname": "box", "kernel": "6.1", "cpu_model": "AMD EPYC"},
        "server": {"backend": "embedded", "identity": {"binary": "sha256:aa"}},
        "comparisons": comparisons,
        **extra,
    }


# -- sessions from records -------------------------------------------------------------------


def test_a_complete_comparison_becomes_its_paired_effects() -> None:
    found = session_from_record(record([comparison("cpu_spare", "cpu.toml", 0.8)]))
    assert set(found["effects"]) == {"cpu.toml::cpu_spare"}
    effects = found["effects"]["cpu.toml::cpu_spare"]
    assert set(effects) == {"prefill", "decode", "prefill_per_stream", "decode_per_stream"}
    trials = comparison("cpu_spare", "cpu.toml", 0.8)["trials"]
    base = [t["prefill_aggregate_tps"] for t in trials if t["arm"] == "baseline"]
    cond = [t["prefill_aggregate_tps"] for t in trials if t["arm"] == "condition"]
    expected = paired_ratio_ci(cond, base)
    prefill = effects["prefill"]
    assert (prefill["point"], prefill["lo"], prefill["hi"]) == (expected.point, expected.lo, expected.hi)
    assert prefill["pairs"] == 8
    assert prefill["log_ratios"] == pytest.approx([math.log(c / b) for c, b in zip(cond, base, strict=True)])
    assert 0.7 < prefill["point"] < 0.9


def test_session_carries_time_server_and_the_records_unstable_readings() -> None:
    found = session_from_record(record([]))
    assert found["recorded_at"] == "2025-01-02T03:04:05+0000"
    assert found["server"] == {"backend": "embedded", "identity": {"binary": "sha256:aa"}}
    assert found["unstable"] == {"hostname": "box", "kernel": "6.1"}
    assert found["effects"] == {} and found["uncontended"] == {}
    given = session_from_record(record([], unstable={"load_average": [1, 1, 1]}), server={"binary": "b"})
    assert given["server"] == {"binary": "b"} and given["unstable"] == {"load_average": [1, 1, 1]}


def test_code_defined_comparisons_are_keyed_under_code() -> None:
    assert set(session_from_record(record([comparison("mine", None, 0.9)]))["effects"]) == {"code::mine"}


def test_aborted_unnamed_and_short_comparisons_are_left_out() -> None:
    found = session_from_record(
        record(
            [
                comparison("aborted", "x", 0.8, status="aborted"),
                comparison(None, "x", 0.8),
                comparison("short", "x", 0.8, pairs=5),
                comparison("legacy", "x", 0.8),  # no status at all: only complete ones were recorded
            ]
        )
    )
    assert set(found["effects"]) == {"x::legacy"}


def test_a_metric_missing_in_one_trial_is_left_out() -> None:
    found = comparison("c", "x", 0.8)
    found["trials"][3]["decode_aggregate_tps"] = float("nan")
    found["trials"][5]["prefill_per_stream_tps"] = []
    effects = session_from_record(record([found]))["effects"]["x::c"]
    assert set(effects) == {"prefill", "decode_per_stream"}


def test_trials_pair_by_index_not_by_position() -> None:
    ordered = comparison("c", "x", 0.8)
    shuffled = {**ordered, "trials": list(reversed(ordered["trials"]))}
    one = session_from_record(record([ordered]))["effects"]["x::c"]["decode"]
    other = session_from_record(record([shuffled]))["effects"]["x::c"]["decode"]
    assert one["point"] == other["point"] and one["lo"] == other["lo"]


def test_a_trial_is_the_median_of_its_rounds() -> None:
    more = [trial("baseline", 0, 10.0, 1.0), trial("baseline", 0, 30.0, 3.0)]
    value = trial_value(trial("baseline", 0, 20.0, 2.0, more_rounds=more), "prefill")
    assert value == 20.0
    per_stream = trial("baseline", 0, 1.0, 1.0, decode_per_stream_tps=[4.0, 1.0, 9.0])
    assert trial_value(per_stream, "decode_per_stream") == 4.0


def test_uncontended_trials_become_finite_lists_per_metric() -> None:
    uncontended = {
        "1": [{"prefill": 50.0, "decode": 12.0}, {"prefill": float("nan"), "decode": 12.5}, {"decode": None}],
        "4": [{"prefill": None}],
    }
    found = session_from_record(record([], uncontended=uncontended))["uncontended"]
    assert found == {"1": {"prefill": [50.0], "decode": [12.0, 12.5]}}


# -- the file -----------------------------------------------------------------------------------


def session(number: int) -> dict[str, Any]:
    return {
        "recorded_at": f"2025-01-0{number}",
        "server": {"binary": f"v{number}"},
        "unstable": {},
        "effects": {"x::c": {"decode": {"point": 0.8, "lo": 0.7, "hi": 0.9, "pairs": 8, "log_ratios": []}}},
        "uncontended": {"1": {"decode": [12.0, 12.5]}},
    }


def test_save_and_load_round_trip_sorted_and_indented(tmp_path: Path) -> None:
    written = BaselineFile(tmp_path / "b.json", Fingerprint(KEYED), [session(1), session(2)])
    written.save()
    read = BaselineFile.load(tmp_path / "b.json")
    assert read == written
    text = (tmp_path / "b.json").read_text()
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"
    assert json.loads(text)["format"] == FORMAT and json.loads(text)["schema_version"] == SCHEMA_VERSION
    assert os.listdir(tmp_path) == ["b.json"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = BaselineFile(tmp_path / "b.json", Fingerprint(KEYED), [session(1)])
    target.save()
    before = (tmp_path / "b.json").read_text()

    def broken(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    target.append(session(2))
    with pytest.raises(OSError, match="disk full"):
        target.save()
    assert (tmp_path / "b.json").read_text() == before
    assert os.listdir(tmp_path) == ["b.json"]


def test_save_creates_the_folder(tmp_path: Path) -> None:
    BaselineFile.new(tmp_path / "deep" / "er", Fingerprint(KEYED)).save()
    assert (tmp_path / "deep" / "er" / f"{Fingerprint(KEYED).slug}.json").is_file()


def test_append_keeps_the_newest(tmp_path: Path) -> None:
    baseline = BaselineFile(tmp_path / "b.json", Fingerprint(KEYED))
    for number in range(1, 6):
        baseline.append(session(number), keep=DEFAULT_KEEP)
    assert [s["recorded_at"] for s in baseline.sessions] == ["2025-01-03", "2025-01-04", "2025-01-05"]
    baseline.append(session(6))
    assert len(baseline.sessions) == 4
    assert baseline.server_identities()[-1] == {"binary": "v6"}
    with pytest.raises(ValueError):
        baseline.append(session(7), keep=0)


def valid() -> dict[str, Any]:
    return {"format": FORMAT, "schema_version": 1, "fingerprint": KEYED, "sessions": [session(1)]}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a pytest-ktinterf baseline file"),
        (
            json.dumps({**valid(), "format": "pytest-ktinterf report v1"}),
            "format 'pytest-ktinterf report v1'",
        ),
        (json.dumps({**valid(), "schema_version": 2}), "newer than this pytest-ktinterf reads (1)"),
        (json.dumps({**valid(), "schema_version": "1"}), "schema_version '1'"),
        (json.dumps({k: v for k, v in valid().items() if k != "sessions"}), "missing key(s) sessions"),
        (json.dumps({k: v for k, v in valid().items() if k != "fingerprint"}), "missing key(s) fingerprint"),
        (json.dumps({**valid(), "sessions": {}}), "sessions is not a list"),
        (json.dumps({**valid(), "sessions": [{"effects": []}]}), "session 1: effects is not an object"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(KtInterfError) as caught:
        BaselineFile.load(path)
    line = caught.value.line()
    assert "\n" not in line
    assert str(path) in line and says in line
    assert caught.value.fix


def test_a_newer_schema_asks_for_an_upgrade(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({**valid(), "schema_version": 7}))
    with pytest.raises(KtInterfError, match="upgrade pytest-ktinterf"):
        BaselineFile.load(tmp_path / "b.json")


def test_a_missing_file_is_one_line_too(tmp_path: Path) -> None:
    with pytest.raises(KtInterfError, match=r"nowhere\.json cannot be read: .* -- fix: check the path"):
        BaselineFile.load(tmp_path / "nowhere.json")


def test_a_file_that_is_not_utf8_is_one_line_naming_the_byte(tmp_path: Path) -> None:
    """Not a UnicodeDecodeError traceback (issue 13); and ``closest`` skips such a file."""
    path = tmp_path / "bad.json"
    content = b'{"format": "caf\xe9"}'  # Latin-1
    path.write_bytes(content)
    with pytest.raises(KtInterfError) as caught:
        BaselineFile.load(path)
    offset = content.index(b"\xe9")
    assert caught.value.line() == (
        f"{path} is not UTF-8: byte 0xe9 at offset {offset} (invalid continuation byte) "
        "-- fix: save it as UTF-8"
    )
    assert closest(tmp_path, Fingerprint(KEYED)) is None


# -- finding the file ---------------------------------------------------------------------------


def test_find_returns_none_then_the_saved_file(tmp_path: Path) -> None:
    fp = Fingerprint(KEYED)
    assert find(tmp_path, fp) is None
    BaselineFile(tmp_path / f"{fp.slug}.json", fp, [session(1)]).save()
    found = find(tmp_path, fp)
    assert found is not None and found.sessions == [session(1)]


def test_find_refuses_a_file_whose_stored_fingerprint_differs(tmp_path: Path) -> None:
    fp = Fingerprint(KEYED)
    BaselineFile(tmp_path / f"{fp.slug}.json", Fingerprint({**KEYED, "ram_gib": 32}), []).save()
    with pytest.raises(KtInterfError, match="ram_gib: 32 in the baseline, 24 here"):
        find(tmp_path, fp)


def test_closest_is_the_file_with_fewest_differences(tmp_path: Path) -> None:
    here = Fingerprint(KEYED)
    assert closest(tmp_path, here) is None
    near = Fingerprint({**KEYED, "ram_gib": 32})
    far = Fingerprint({**KEYED, "ram_gib": 32, "logical_cpus": 8})
    for fp in (far, near):
        BaselineFile.new(tmp_path, fp).save()
    (tmp_path / "garbage.json").write_text("nope")
    assert closest(tmp_path, here) == (
        tmp_path / f"{near.slug}.json",
        ["ram_gib: 32 in the baseline, 24 here"],
    )


def test_log_ratios_reproduce_the_stored_point() -> None:
    """The stored pairs are enough to re-derive the effect (a later version may re-judge them)."""
    effect = session_from_record(record([comparison("c", "x", 0.8, pairs=10)]))["effects"]["x::c"]["decode"]
    logs = effect["log_ratios"]
    walsh = [(a + b) / 2 for i, a in enumerate(logs) for b in logs[i:]]
    assert math.exp(statistics.median(walsh)) == pytest.approx(effect["point"])
