"""What a user sees when pytest collects experiment files: one item per condition and metric,
claims then the report's cells, only files under experiments/, and a broken file as one line
without a traceback. These tests only ever collect (``--collect-only``).
"""

from __future__ import annotations

import pytest

from tests.experiment_texts import CPU, HEAD, MISTAKES, NONE_ACTOR

# -- what a user sees at collection -------------------------------------------------------

VALID = HEAD + CPU + NONE_ACTOR + "streams = 4\nbaseline_streams = 1\n"
ITEMS = [
    "experiments/x.toml::cpu[prefill]",
    "experiments/x.toml::cpu[decode]",
    "experiments/x.toml::conc[decode]",
]


def test_a_valid_file_collects_one_item_per_condition_and_metric(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    items = [line for line in result.stdout.lines if "::" in line]
    assert items == ITEMS


def test_items_cover_claims_then_report_cells_once_each(pytester: pytest.Pytester):
    text = (
        HEAD
        + CPU.replace("expect = ", "report = ")
        + 'expect = { ram = "unaffected", decode = "degraded" }\n'
    )
    pytester.makefile(".toml", **{"experiments/x": text})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    assert [line for line in result.stdout.lines if "::" in line] == [
        "experiments/x.toml::cpu[ram]",
        "experiments/x.toml::cpu[decode]",
        "experiments/x.toml::cpu[prefill]",
    ]


def test_items_are_interference_items(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    selected = pytester.runpytest("--collect-only", "-q", "-m", "interference")
    lines = [line for line in selected.stdout.lines if "::" in line]
    assert lines == ITEMS
    others = pytester.runpytest("--collect-only", "-q", "-m", "not interference")
    assert [line for line in others.stdout.lines if "::" in line] == ["test_plain.py::test_plain"]
    by_name = pytester.runpytest("--collect-only", "-q", "-k", "cpu and decode")
    assert [line for line in by_name.stdout.lines if "::" in line] == ["experiments/x.toml::cpu[decode]"]


def test_toml_files_elsewhere_are_not_collected(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"data/x": "not an experiment = ["})
    pytester.makefile(".toml", **{"experiments/settings": '[tool]\nexpect = "not an experiment"\n'})
    pytester.makefile(".toml", **{"experiments/x": VALID})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    assert "settings" not in result.stdout.str()
    assert "data/x.toml" not in result.stdout.str()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MISTAKES["unknown actor param"][0], "conditions.cpu.params.speed"),
        (MISTAKES["invalid TOML"][0], "(file)"),
        (MISTAKES["max_pairs below min_pairs"][0], "design.max_pairs"),
        (MISTAKES["neither expect nor report"][0], "conditions.cpu.expect"),
        (MISTAKES["gate on a resource"][0], "conditions.cpu.gate.ram"),
    ],
    ids=["unknown param", "invalid TOML", "max_pairs", "no expect or report", "gate"],
)
def test_a_broken_file_is_a_collection_error_without_a_traceback(
    pytester: pytest.Pytester, text: str, key: str
):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    pytester.makefile(".toml", **{"experiments/broken": text})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "ERROR collecting experiments/broken.toml" in out
    line = next(row for row in out.splitlines() if f"[{key}]" in row)
    assert "broken.toml" in line and "expected" in line
    assert "Traceback" not in out
    assert out.count("expected") <= 3  # one message (and the short summary), not a wall


def test_a_file_that_is_not_utf8_is_one_collection_line_without_a_traceback(pytester: pytest.Pytester):
    """It used to escape as tomllib's UnicodeDecodeError traceback (issue 13)."""
    pytester.makefile(".toml", **{"experiments/x": VALID})
    broken = pytester.path / "experiments" / "broken.toml"
    broken.write_bytes(b"\xff\xfe title\n" + VALID.encode())  # a UTF-16 BOM, then text
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "Traceback" not in out and "UnicodeDecodeError" not in out
    lines = [row for row in out.splitlines() if "is not UTF-8" in row]
    assert len(lines) == 1, out
    assert "broken.toml: [(file)] is not UTF-8: byte 0xff at offset 0 " in lines[0]
    assert lines[0].endswith("-- fix: save it as UTF-8")


def test_a_toml_file_that_is_not_ours_may_be_any_encoding(pytester: pytest.Pytester):
    """Recognising a file never decodes strictly: an ML project's Latin-1 config is left alone."""
    pytester.makefile(".toml", **{"experiments/x": VALID})
    (pytester.path / "experiments" / "settings.toml").write_bytes(b'name = "caf\xe9"\n')
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    assert [line for line in result.stdout.lines if "::" in line] == ITEMS
