"""Fuzzing what users hand the plugin: experiment files, baseline files and ``--kt-*`` values.

Issue 13 ("bad input gets one line"): whatever a user writes, the plugin either accepts it or
says, in ONE line, which file or option, which key, and the fix -- never a traceback, never a
``ValueError`` from deep inside. Each property below calls the parser directly (fast, thousands
of cases a minute); two pytester cases show that line reaching the user with pytest's exit code.

Deterministic on purpose (``derandomize=True``, no example database): a fuzz test that finds a
different input on every CI run would be a flaky test.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_ktinterf import options as options_mod
from pytest_ktinterf.baseline import cli
from pytest_ktinterf.baseline.fingerprint import Fingerprint
from pytest_ktinterf.baseline.store import BaselineFile
from pytest_ktinterf.baseline.thresholds import parse_thresholds
from pytest_ktinterf.errors import KtInterfError, one_line
from pytest_ktinterf.experiment.schema import ExperimentFileError, load_experiment
from pytest_ktinterf.option_values import parse_url
from pytest_ktinterf.server import _preset_command
from pytest_ktinterf.server.docker import parse_environment, parse_volumes
from pytest_ktinterf.server.process import expand_command
from pytest_ktinterf.system.cpus import parse_cpu_list

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FUZZ = settings(
    max_examples=300,
    deadline=None,  # a 2-core CI box under load must not turn slowness into a failure
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SEED = (Path(__file__).parents[1] / "experiments" / "seed_report.toml").read_bytes()
SEED_DATA = tomllib.loads(SEED.decode())


def one_line_or_accepted(call: Callable[[], Any], *names: str) -> KtInterfError | None:
    """Run ``call``; a :class:`KtInterfError` must be one line holding ``names`` and a fix.

    Any other exception propagates and fails the test: that is the bug being looked for.
    """
    try:
        call()
    except KtInterfError as exc:
        line = exc.line()
        assert len(line.splitlines()) == 1, line
        assert re.search(r" -- fix: \S", line), line
        for name in names:
            assert name in line, f"{name!r} not in {line!r}"
        return exc
    return None


# -- values: what a hand-edited file may hold where a number, a word or a table belongs ----------

NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),  # past float and 64-bit range
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 6, 0.5, 1e308, -0.0, math.nan, math.inf, -math.inf]),
)
WORDS = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.sampled_from(["server", "spare", "degraded", "cpu_stress", "none", "decode", "nan", "\n", ""]),
)
SCALARS = st.one_of(NUMBERS, WORDS, st.booleans())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(WORDS, inner, max_size=3)),
    max_leaves=6,
)


def toml_value(value: Any) -> str:
    """A value as TOML (tables inline): the test's own writer, so any shape can be written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if value != value
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in data.items())


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a parsed document (dict keys and list indexes), the root excluded."""
    found = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths_of(child, (*prefix, key)))
    return found


def mutated(document: Any, path: tuple[Any, ...], action: str, value: Any, key: str) -> Any:
    """A deep copy of ``document`` with the node at ``path`` replaced, deleted, or given a new key."""
    copy = json.loads(json.dumps(document, allow_nan=True))
    *parents, last = path
    holder = copy
    for step in parents:
        holder = holder[step]
    if action == "replace":
        holder[last] = value
    elif action == "delete":
        del holder[last]
    elif isinstance(holder[last], dict):
        holder[last][key] = value  # an unknown key, or a second condition
    return copy


SEED_PATHS = paths_of(SEED_DATA)
MUTATIONS = st.tuples(
    st.sampled_from(SEED_PATHS), st.sampled_from(["replace", "delete", "add"]), VALUES, WORDS
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module: hypothesis re-runs a test body many times, a fixture once."""
    return tmp_path_factory.mktemp("fuzz")


# -- (a) experiment files ---------------------------------------------------------------------------


def assert_experiment(path: Path) -> None:
    """The file loads, or its error is one line naming the file and the ``[key]``."""
    exc = one_line_or_accepted(lambda: load_experiment(path), str(path))
    if exc is not None:
        assert isinstance(exc, ExperimentFileError), exc.line()
        shown = exc.key or '""'  # an empty TOML key is written ""
        assert one_line(f"[{shown}]") in exc.line(), exc.line()


def test_the_seed_file_itself_loads(workdir: Path):
    """The fuzzers start from a valid file: mutations, not a broken start, must cause the errors."""
    path = workdir / "seed.toml"
    path.write_bytes(SEED)
    assert len(load_experiment(path).conditions) == len(SEED_DATA["conditions"])
    path.write_text(toml_document(SEED_DATA))  # and the test's own writer keeps it valid
    assert len(load_experiment(path).conditions) == len(SEED_DATA["conditions"])


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(SEED)))
def test_a_truncated_experiment_file(workdir: Path, cut: int):
    path = workdir / "truncated.toml"
    path.write_bytes(SEED[:cut])
    assert_experiment(path)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(SEED)), st.binary(min_size=1, max_size=4)), max_size=4))
def test_bytes_inserted_into_an_experiment_file(workdir: Path, edits: list[tuple[int, bytes]]):
    """Stray bytes: Latin-1 and UTF-16 text, NULs, a broken quote or bracket."""
    data = SEED
    for at, extra in edits:
        data = data[:at] + extra + data[at:]
    path = workdir / "bytes.toml"
    path.write_bytes(data)
    assert_experiment(path)


@FUZZ
@given(mutation=MUTATIONS)
def test_a_key_of_an_experiment_file_replaced_removed_or_added(
    workdir: Path, mutation: tuple[tuple[Any, ...], str, Any, str]
):
    """Wrong types, huge numbers, NaN and inf, unknown keys, odd condition ids, missing tables."""
    path = workdir / "mutated.toml"
    path.write_text(toml_document(mutated(SEED_DATA, *mutation)))
    assert_experiment(path)


@FUZZ
@given(top=st.dictionaries(WORDS, VALUES, max_size=3), keep=st.booleans())
def test_unknown_top_level_tables_and_schema_versions(workdir: Path, top: dict[str, Any], keep: bool):
    """``schema_version = 2``, ``[experimnt]``: an experiment file has no version; extras are refused."""
    data = {**(SEED_DATA if keep else {}), **top}
    path = workdir / "top.toml"
    path.write_text(toml_document(data))
    assert_experiment(path)


# -- (b) baseline files (profiles: the presets are code; their user input is --kt-preset-args) ----

KEYED = {"cpu_model": "AMD EPYC", "logical_cpus": 2, "ram_gib": 24, "workload": {"prompt_tokens": 128}}


def baseline_session(number: int) -> dict[str, Any]:
    effect = {"point": 0.8, "lo": 0.7, "hi": 0.9, "pairs": 8, "log_ratios": [-0.2] * 8}
    return {
        "recorded_at": f"2025-01-0{number}",
        "server": {"identity": {"binary": "b1"}},
        "unstable": {},
        "effects": {"seed::cpu": {"decode": effect, "prefill": dict(effect)}},
        "uncontended": {"1": {"decode": [12.0, 12.5, 12.2, 12.1, 12.4, 12.3]}},
    }


BASELINE = BaselineFile(Path("b.json"), Fingerprint(KEYED), [baseline_session(1), baseline_session(2)])
BASELINE_DATA = BASELINE.to_json()
BASELINE_TEXT = json.dumps(BASELINE_DATA, indent=1, sort_keys=True)
BASELINE_PATHS = paths_of(BASELINE_DATA)


def assert_baseline(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Loading names the file; the offline gate (``compare B B``) exits 0, 1 or 2 with one line."""
    one_line_or_accepted(lambda: BaselineFile.load(path), str(path))
    capsys.readouterr()
    status = cli.main([str(path), str(path)])
    err = capsys.readouterr().err
    assert status in (0, 1, 2)
    if status == 2:
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(path) in err, err


def test_the_baseline_fuzzers_start_from_a_file_that_compares(workdir: Path, capsys):
    path = workdir / "valid.json"
    path.write_text(BASELINE_TEXT)
    assert cli.main([str(path), str(path)]) == 0, capsys.readouterr()


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(BASELINE_TEXT)), junk=st.binary(max_size=3))
def test_a_truncated_baseline_file(workdir: Path, capsys, cut: int, junk: bytes):
    path = workdir / "truncated.json"
    path.write_bytes(BASELINE_TEXT.encode()[:cut] + junk)
    assert_baseline(path, capsys)


@FUZZ
@given(
    mutation=st.tuples(
        st.sampled_from(BASELINE_PATHS), st.sampled_from(["replace", "delete", "add"]), VALUES, WORDS
    )
)
def test_a_key_of_a_baseline_file_replaced_removed_or_added(
    workdir: Path, capsys, mutation: tuple[tuple[Any, ...], str, Any, str]
):
    """Wrong schema version, wrong types, NaN (JSON's ``NaN``), huge numbers, unknown keys."""
    path = workdir / "mutated.json"
    path.write_text(json.dumps(mutated(BASELINE_DATA, *mutation), allow_nan=True))
    assert_baseline(path, capsys)


# -- (c) --kt-* option values ------------------------------------------------------------------------

OPTION_NAMES = [opt.name for opt in options_mod._OPTIONS]
OPTION_TEXT = st.one_of(
    st.text(max_size=16),
    st.from_regex(r"\A-?[0-9]{1,400}\Z"),
    st.sampled_from(
        [
            "nan",
            "inf",
            "-inf",
            "1e400",
            "0x10",
            "1_0",
            " 5 ",
            "",
            "yes",
            "both",
            "0-3,8",
            "0-99999999999",
            "1" + "0" * 400,
        ]
    ),
    st.sampled_from(["http://", "https://", "ftp://", ""]).flatmap(
        lambda scheme: st.text("[]:/.@%0123456789abc", max_size=14).map(lambda rest: scheme + rest)
    ),
    st.text("0123456789-, ", max_size=14),
    st.sampled_from(["docker", "external", "process", "embedded", "alternate", "kt-v0.2", "kt-sglang"]),
)


class FakeConfig:
    """What :func:`options.from_config` reads of a pytest config: options, ini and plugin names."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def getoption(self, dest: str, default: Any = None) -> Any:
        return self.values.get(dest, default)

    def getini(self, dest: str) -> str:
        return ""


@FUZZ
@given(given_options=st.dictionaries(st.sampled_from(OPTION_NAMES), OPTION_TEXT, max_size=4))
def test_option_values_resolve_or_name_the_option(given_options: dict[str, str]):
    values = {"kt_" + name.replace("-", "_"): text for name, text in given_options.items()}
    found: list[options_mod.Options] = []
    exc = one_line_or_accepted(lambda: found.append(options_mod.from_config(FakeConfig(values))))  # type: ignore[arg-type]
    if exc is not None:
        assert re.search(r"--kt-[a-z*]", exc.line()), exc.line()
    for name, value in vars(found[0]).items() if found else ():
        if isinstance(value, int | float):  # accepted numbers are usable: no NaN, inf, negative
            assert 0 <= value < math.inf, (name, value)


@FUZZ
@given(text=OPTION_TEXT)
def test_single_option_parsers_name_their_option(text: str):
    """The values checked at start, and those split into words when a server starts."""
    one_line_or_accepted(lambda: parse_url(text), "--kt-url")
    one_line_or_accepted(lambda: parse_cpu_list(text, check_available=False), "--kt-server-cpus")
    one_line_or_accepted(lambda: parse_thresholds(text), "--kt-baseline-fail")
    one_line_or_accepted(lambda: expand_command(text, 8080), "--kt-server-cmd")


QUOTED = st.lists(st.sampled_from([*"ab=:'\"\\ /", "ro", "rw", "extra=", "model_path="]), max_size=10).map(
    "".join
)


@FUZZ
@given(text=st.one_of(QUOTED, st.text(max_size=10)), preset=st.sampled_from(["kt-v0.2", "kt-sglang"]))
def test_word_lists_split_or_name_their_option(text: str, preset: str):
    """``--kt-docker-env``, ``--kt-docker-volumes`` and ``--kt-preset-args``: quotes may not match."""
    one_line_or_accepted(lambda: parse_environment(text), "--kt-docker-env")
    one_line_or_accepted(lambda: parse_volumes(text), "--kt-docker-volumes")
    given_options = options_mod.Options(preset=preset, preset_args=text, server_cpus=[0])
    one_line_or_accepted(lambda: _preset_command(given_options), "--kt-preset-args")


# -- what the user sees ---------------------------------------------------------------------------


def test_an_experiment_file_with_a_line_break_in_a_key_is_one_collection_line(pytester: pytest.Pytester):
    """A condition id holding a newline (a quoted TOML key) stays on the error's one line."""
    text = SEED.decode().replace("[conditions.cpu_server]", '[conditions."bad\\nid"]')
    pytester.makefile(".toml", **{"experiments/broken": text})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "Traceback" not in out
    lines = [row for row in out.splitlines() if "broken.toml: [conditions.bad\\nid]" in row]
    assert lines and all(" -- fix: " in row for row in lines), out


def test_a_url_that_urllib_cannot_split_is_a_usage_error(pytester: pytest.Pytester):
    """``http://[::1`` made urllib raise ValueError: a traceback at start-up, before this fix."""
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("--kt-url=http://[::1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "Traceback" not in err + result.stdout.str()
    lines = [row for row in err.splitlines() if "--kt-url=" in row]
    assert len(lines) == 1 and " -- fix: " in lines[0], err
