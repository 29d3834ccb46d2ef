"""Options and markers as users see them."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.cpus import format_cpu_list, parse_cpu_list

CORES = sorted(os.sched_getaffinity(0))


def test_help_lists_the_plugin_options(pytester: pytest.Pytester):
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(
        [
            "*resource-interference experiments (pytest-ktinterf)*",
            "*--kt-url=*",
            "*--kt-server-cmd=*",
            "*--kt-server-cpus=*",
            "*--kt-stress-ng=*",
        ]
    )


def test_markers_list_interference(pytester: pytest.Pytester):
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.interference:*never overlap*"])


def test_bad_core_list_is_a_usage_error_naming_the_option(pytester: pytest.Pytester):
    result = pytester.runpytest_subprocess("--kt-server-cpus=999")
    result.stderr.fnmatch_lines(["*--kt-server-cpus='999' names cores [[]999[]]*-- fix: choose cores from*"])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize(
    ("url", "line"),
    [
        (
            "127.0.0.1:9",
            "*--kt-url='127.0.0.1:9' has no scheme -- fix: add http://, e.g. --kt-url http://127.0.0.1:9",
        ),
        (
            "localhost:8080",
            "*--kt-url='localhost:8080' has no scheme -- fix: add http://, e.g. *http://localhost:8080",
        ),
        (
            "ftp://127.0.0.1:9",
            "*--kt-url='ftp://127.0.0.1:9' is not an HTTP URL -- fix: use http:// or https://*",
        ),
        ("http://", "*--kt-url='http://' has no host -- fix: give the server's host and port*"),
        ("http://127.0.0.1:port", "*--kt-url='http://127.0.0.1:port' has an invalid port -- fix: *"),
    ],
    ids=["no scheme", "host:port", "other scheme", "no host", "bad port"],
)
def test_a_bad_url_is_a_usage_error_naming_the_option(pytester: pytest.Pytester, url: str, line: str):
    """Refused at start, not later as "check that it is an OpenAI-compatible server"."""
    pytester.makepyfile("def test_needs_server(kt_server):\n    pass\n")
    result = pytester.runpytest_subprocess(f"--kt-url={url}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "OpenAI-compatible" not in out
    assert sum("--kt-url=" in row for row in out.splitlines()) == 1, out


def test_a_good_url_is_kept_without_its_trailing_slash(pytester: pytest.Pytester):
    pytester.makeconftest(
        """
        from pytest_ktinterf.options import options_key

        def pytest_report_header(config):
            return f"url={config.stash[options_key].url}"
        """
    )
    result = pytester.runpytest_subprocess("--kt-url= https://[::1]:8080/ ", "--collect-only")
    result.stdout.fnmatch_lines(["url=https://[[]::1[]]:8080"])


@given(st.sets(st.sampled_from(CORES), min_size=1))
def test_cpu_list_round_trip(cores):
    assert parse_cpu_list(format_cpu_list(sorted(cores))) == sorted(cores)


def test_cpu_list_syntax_errors():
    with pytest.raises(KtInterfError, match="is not a core list"):
        parse_cpu_list("1-x")
    with pytest.raises(KtInterfError, match="is not a core list"):
        parse_cpu_list("3-1")


def test_a_request_timeout_below_one_second_is_a_usage_error_naming_the_option(pytester: pytest.Pytester):
    result = pytester.runpytest_subprocess("--kt-request-timeout=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kt-request-timeout='0' is not valid -- fix: give an integer >= 1*"])
