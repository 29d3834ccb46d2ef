"""Bad input gives one clear line with the cause and the fix, and leaves nothing running.

Each case runs a real pytest in a subprocess, as a user would.
"""

from __future__ import annotations

import psutil
import pytest

from pytest_ktinterf.server.base import free_port

NEEDS_SERVER = """
def test_needs_server(kt_server):
    pass
"""


def _processes_running(marker: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmdline)
    return found


def assert_one_clear_line(result: pytest.RunResult, *needles: str) -> None:
    out = result.stdout.str()
    assert "Traceback" not in out
    assert out.count(needles[0]) >= 1, out
    line = next(row for row in out.splitlines() if needles[0] in row)
    for needle in needles[1:]:
        assert needle in line, f"{needle!r} not in {line!r}"


def test_unreachable_url(pytester: pytest.Pytester):
    pytester.makepyfile(NEEDS_SERVER)
    port = free_port()  # nothing listens there
    result = pytester.runpytest_subprocess(f"--kt-url=http://127.0.0.1:{port}")
    result.assert_outcomes(errors=1)
    assert_one_clear_line(result, f"127.0.0.1:{port} is unreachable", "-- fix: start the server first")


def test_server_command_that_exits_at_once(pytester: pytest.Pytester):
    pytester.makepyfile(NEEDS_SERVER)
    cmd = "sh -c 'sleep 3017 & echo cannot open model file >&2; exit 3' {port}"
    result = pytester.runpytest_subprocess(f"--kt-server-cmd={cmd}")
    result.assert_outcomes(errors=1)
    assert_one_clear_line(result, "exited with code 3 before it became ready", "-- fix: check the server")
    result.stdout.fnmatch_lines(["*cannot open model file*"])  # the log tail is shown
    assert _processes_running("sleep 3017") == []


def test_missing_stress_ng(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        def test_stress(kt_cpu_stress):
            with kt_cpu_stress([0]):
                pass
        """
    )
    result = pytester.runpytest_subprocess("--kt-stress-ng=/nonexistent/stress-ng")
    result.assert_outcomes(failed=1)
    assert_one_clear_line(
        result, "stress-ng not found (--kt-stress-ng=/nonexistent/stress-ng)", "-- fix: install it"
    )


@pytest.mark.parametrize(
    ("args", "ini", "cause", "fix"),
    [
        (
            ["--kt-server-cpu-quota=1.5"],
            "",
            "--kt-server-cpu-quota='1.5' is not a fraction in (0, 1]",
            "-- fix: give the share of its pinned cores' time",
        ),
        (
            [],
            "kt_server_cpu_quota = 0",
            "--kt-server-cpu-quota='0' is not a fraction",
            "-- fix: give the share",
        ),
        (
            ["--kt-server-cpu-quota=0.8", "--kt-url=http://127.0.0.1:9"],
            "",
            "--kt-server-cpu-quota needs a server the plugin starts; an external server's CPU is not ours",
            "-- fix: drop --kt-server-cpu-quota, or drop --kt-url",
        ),
    ],
)
def test_server_cpu_quota_misuse(pytester: pytest.Pytester, args: list[str], ini: str, cause: str, fix: str):
    pytester.makepyfile(NEEDS_SERVER)
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # refused before any server starts
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out
    lines = [row for row in out.splitlines() if cause in row]
    assert len(lines) == 1 and "-- fix: " in lines[0] and fix in lines[0], out


def test_a_baseline_file_that_is_not_utf8_is_a_usage_error(pytester: pytest.Pytester):
    """Read through the same rule as experiment files: one line, the byte's offset, the fix."""
    pytester.makepyfile("def test_plain():\n    pass\n")
    (pytester.path / "base.json").write_bytes(b"\xff\xfe{}")
    result = pytester.runpytest_subprocess("--kt-baseline-file=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # refused before anything runs
    result.stderr.fnmatch_lines(["*base.json is not UTF-8: byte 0xff at offset 0 *-- fix: save it as UTF-8"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
