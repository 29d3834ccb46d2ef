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


@given(st.sets(st.sampled_from(CORES), min_size=1))
def test_cpu_list_round_trip(cores):
    assert parse_cpu_list(format_cpu_list(sorted(cores))) == sorted(cores)


def test_cpu_list_syntax_errors():
    with pytest.raises(KtInterfError, match="is not a core list"):
        parse_cpu_list("1-x")
    with pytest.raises(KtInterfError, match="is not a core list"):
        parse_cpu_list("3-1")
