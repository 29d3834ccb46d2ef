"""Installed but unused, the plugin changes nothing: no reaping, no lock, no output, no TOML collected.

ML projects keep their own TOML configs in ``experiments/`` folders; a session that selects no
interference item and gives no ``--kt-*`` option must run exactly as without the plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

UNRELATED = """
[title]
name = "resnet sweep"
[optimizer]
lr = 0.1
"""

ORDINARY = """
import pytest

@pytest.fixture
def kt_settings():  # the project's own fixture: a kt_ prefix alone does not wake the plugin
    return {"lr": 0.1}

def test_one(kt_settings):
    assert kt_settings["lr"] == 0.1

def test_two():
    assert "a" in "abc"
"""


@pytest.fixture
def dead_owner_record(tmp_path: Path) -> Path:
    """A registry record of a process group whose owning session is gone, as a killed session leaves.

    Its process is a real ``sleep`` in a group of its own, so reaping it is observable.
    """
    sleeper = subprocess.Popen(["sleep", "120"], start_new_session=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / "state" / "live"
    live.mkdir(parents=True)
    record = live / f"{sleeper.pid}.json"
    record.write_text(json.dumps({
        "pid": sleeper.pid, "pgid": sleeper.pid, "create_time": psutil.Process(sleeper.pid).create_time(),
        "name": "planted", "argv": ["sleep", "120"], "owner_pid": dead.pid, "owner_create_time": 0.0,
    }))  # fmt: skip
    try:
        yield record
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.fixture
def dead_session_logs(pytester: pytest.Pytester) -> Path:
    """The log folder of a SIGKILLed session: its weights copy left beside its log."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    folder = pytester.path / ".ktinterf" / "logs" / f"session-{dead.pid}"
    folder.mkdir(parents=True)
    (folder / "server-embedded.log").write_text("llama-server log\n")
    (folder / "weights-40123-SmolLM2-135M.gguf").write_bytes(b"\0" * 1000)
    return folder


def run_project(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_ordinary=ORDINARY)
    pytester.mkdir("experiments")
    (pytester.path / "experiments" / "settings.toml").write_text(UNRELATED)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_unused_plugin_does_nothing(pytester, tmp_path, monkeypatch, dead_owner_record, dead_session_logs):
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    planted = sorted((pytester.path / ".ktinterf").rglob("*"))
    result = run_project(pytester)
    result.assert_outcomes(passed=2)
    said = [line for line in result.outlines + result.errlines if not line.startswith("plugins:")]
    assert not [line for line in said if "ktinterf" in line], said
    assert not (tmp_path / "state" / "measure.lock").exists()
    assert dead_owner_record.exists()  # not reaped: nothing of the plugin's ran
    assert sorted((pytester.path / ".ktinterf").rglob("*")) == planted  # nothing added, nothing reaped


def test_a_kt_option_wakes_the_plugin(pytester, tmp_path, monkeypatch, dead_owner_record, dead_session_logs):
    """The counterpart: the same project with a ``--kt-*`` option reaps, locks and says so."""
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    result = run_project(pytester, "--kt-max-pairs=6")
    result.assert_outcomes(passed=2)
    assert "reaped leftover planted" in result.stdout.str()
    assert not dead_owner_record.exists()
    assert (tmp_path / "state" / "measure.lock").exists()
    result.stdout.fnmatch_lines(
        ["ktinterf: removed the weights copy *weights-40123-SmolLM2-135M.gguf (0 MB)*"]
    )
    assert [p.name for p in dead_session_logs.iterdir()] == ["server-embedded.log"]  # the log stays


def test_experiment_files_are_recognised_by_their_table(pytester, tmp_path, monkeypatch):
    """An ``[experiment]`` table makes a TOML file ours, wherever it is; a broken one gets its error."""
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    pytester.mkdir("perf")
    (pytester.path / "perf" / "kt.toml").write_text('[experiment]\ntitle = "x"\n[title]\nname = 1\n')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "perf")
    assert "perf/kt.toml: [title] is not a known table" in result.stdout.str(), result.stdout.str()
