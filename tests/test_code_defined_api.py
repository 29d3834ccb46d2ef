"""``kt_interfere``, the code-defined form of a condition, refuses bad calls before touching the
machine: no server is started, and the error names the argument and what is expected."""

from __future__ import annotations

import pytest

CALLS = {
    "no_expectations": ('kt_interfere("cpu_stress", cores="spare")', "has no expectations"),
    "unknown_actor": ('kt_interfere("cpu_hog", expect={"decode": "degraded"})', "unknown actor 'cpu_hog'"),
    "bad_param": (
        'kt_interfere("cpu_stress", cores="elsewhere", expect={"decode": "degraded"})',
        "params.cores: got 'elsewhere'",
    ),
    "bad_outcome": (
        'kt_interfere("cpu_stress", cores="spare", expect={"decode": "slower"})',
        "expect.decode: unknown outcome 'slower'",
    ),
    "bad_report_outcome": (
        'kt_interfere("cpu_stress", cores="spare", report={"decode": "slower"})',
        "report.decode: unknown outcome 'slower'",
    ),
    "bad_max_tokens": (
        'kt_interfere("cpu_stress", cores="spare", expect={"decode": "degraded"}, max_tokens=2)',
        "kt_interfere('cpu_stress'): max_tokens=2 -- fix: expected an integer >= 4",
    ),
    "bad_metric": (
        'kt_interfere("cpu_stress", cores="spare", expect={"latency": "degraded"})',
        "unknown metric 'latency'",
    ),
}


@pytest.mark.parametrize("case", sorted(CALLS))
def test_bad_calls_fail_with_the_argument_named_and_start_nothing(pytester, case):
    call, message = CALLS[case]
    pytester.makepyfile(f"def test_it(kt_interfere):\n    {call}\n")
    # An unreachable server URL: if the call got as far as the server, the error would say so.
    result = pytester.runpytest_subprocess("--kt-url=http://127.0.0.1:9", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert message in output, output
    assert "127.0.0.1:9" not in output  # refused before any server was contacted


def test_expectations_come_from_the_marker(pytester, monkeypatch, tmp_path):
    # The child's interference item takes the machine lock exclusively while this session holds
    # it shared: the child gets a lock of its own (see system/lock.py).
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    pytester.makepyfile(
        """
        import pytest
        from pytest_ktinterf.experiment.interfere import spec_from_call

        @pytest.mark.interference(expect={"decode": {"outcome": "degraded", "at_least": 0.3}})
        def test_it(request):
            spec = spec_from_call(request.node, "cpu_stress", expect=None, label=None, streams=None,
                                  baseline_streams=None, design={"min_pairs": 8, "rounds": 2},
                                  params={"cores": "server"})
            assert spec.expect["decode"].describe() == "degraded by at least 30%"
            assert spec.design.min_pairs == 8 and spec.design.rounds == 2
            assert spec.label == "cpu_stress {'cores': 'server'}"
            assert spec.report == {} and spec.reference == {}
            assert spec.max_tokens is None

        @pytest.mark.interference(expect={"decode": "collapsed"})
        def test_own_output_length(request):
            spec = spec_from_call(request.node, "ram_overflow", expect=None, label=None, streams=None,
                                  baseline_streams=None, design=None, params={"mode": "contained"},
                                  max_tokens=16)
            assert spec.max_tokens == 16  # the same field a file's max_tokens fills: compare() uses it

        @pytest.mark.interference(report={"prefill": "degraded"})
        def test_report_only(request):
            spec = spec_from_call(request.node, "cpu_stress", expect=None, label=None, streams=None,
                                  baseline_streams=None, design=None, params={"cores": "spare"},
                                  report={"decode": "unaffected"})  # the argument wins over the marker
            assert spec.expect == {}
            assert [(e.metric, e.kind) for e in spec.checks] == [("decode", "report")]
            assert spec.reference == {"decode": "unaffected"}
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
