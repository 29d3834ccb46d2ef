"""The plugin's fixtures: thin doors onto the testbed (``testbed.py``) and the actor table.

``kt_testbed`` holds the session's server, probe and report; ``kt_server``, ``kt_probe``,
``kt_measure``, ``kt_compare`` and ``kt_report`` are views of it. The actor fixtures
(``kt_cpu_stress`` ...) are made from the table in ``actors/registry.py``: each returns a
factory building that actor with :func:`actors.registry.build`, and stops every actor it made
at teardown. ``kt_interfere`` is the code-defined form of an experiment file's condition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.actors.registry import ACTORS, bind, build, refusal
from pytest_ktinterf.baseline.session import Gatekeeper
from pytest_ktinterf.experiment.interfere import raise_for_verdicts, run, spec_from_call
from pytest_ktinterf.measure.compare import Comparison, Design
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.options import Options, options_key
from pytest_ktinterf.progress import say_to
from pytest_ktinterf.report.record import Report
from pytest_ktinterf.server import ServerHandle
from pytest_ktinterf.testbed import Testbed

report_key = pytest.StashKey[Report]()
gate_key = pytest.StashKey[Gatekeeper | None]()  # set by plugin.py from the --kt-baseline-* flags


@pytest.fixture(scope="session")
def kt_options(pytestconfig: pytest.Config) -> Options:
    """The resolved ``--kt-*`` options."""
    return pytestconfig.stash[options_key]


@pytest.fixture(scope="session")
def kt_testbed(pytestconfig: pytest.Config) -> Iterator[Testbed]:
    """The session's server, probe, report and actor context, each made on first use."""
    testbed = Testbed(
        pytestconfig.stash[options_key],
        pytestconfig.rootpath,
        pytestconfig.stash[report_key],
        say_to(pytestconfig),
        pytestconfig.stash.get(gate_key, None),
    )
    try:
        yield testbed
    finally:
        testbed.close()


@pytest.fixture(scope="session")
def kt_log_dir(kt_testbed: Testbed) -> Path:
    """Where server and actor logs go (kept after the run, for post-mortems)."""
    return kt_testbed.log_dir


@pytest.fixture(scope="session")
def kt_report(kt_testbed: Testbed) -> Report:
    """The session's report: add rounds and comparisons to have them printed and recorded."""
    return kt_testbed.report


@pytest.fixture(scope="session")
def kt_server(kt_testbed: Testbed) -> ServerHandle:
    """The server under test, started (or connected to) once per session."""
    return kt_testbed.server()


@pytest.fixture(scope="session")
def kt_probe(kt_testbed: Testbed) -> Probe:
    """A probe for the session's workload, calibrated to the prompt length in tokens."""
    return kt_testbed.probe()


@pytest.fixture
def kt_measure(kt_testbed: Testbed) -> Callable[..., Any]:
    """``kt_measure(streams=1, rounds=1)`` -> list of rounds, monitored and added to the report."""
    return kt_testbed.measure


@pytest.fixture
def kt_compare(kt_testbed: Testbed) -> Callable[..., Comparison]:
    """``kt_compare(condition, label=..., streams=1, trials=None, design=None, expectations=())``.

    ``condition`` is a zero-argument callable returning a context manager (an actor), entered
    for every condition trial. With ``trials`` exactly that many pairs run; with ``design`` and
    ``expectations`` pairs run until each expectation is decided (see measure/compare.py). The
    comparison is added to the report.
    """
    return kt_testbed.compare


def _actor_fixture(name: str) -> Any:
    """The fixture for one row of the actor table: a factory, every actor it made stopped after."""
    spec = ACTORS[name]
    assert spec.build is not None and spec.fixture is not None

    def fixture(kt_testbed: Testbed) -> Iterator[Callable[..., Actor]]:
        unavailable = spec.unavailable()
        if unavailable is not None:  # never fail or fake: skip with the reason
            pytest.skip(unavailable)
        made: list[Actor] = []

        def make(*args: Any, **params: Any) -> Actor:
            refused = refusal(name, bind(name, args, params), kt_testbed.options)
            if refused is not None:
                raise refused
            actor = build(name, kt_testbed.actors, *args, **params)
            made.append(actor)
            return actor

        try:
            yield make
        finally:
            for actor in made:
                actor.stop()

    fixture.__name__ = spec.fixture
    fixture.__doc__ = f"``{spec.fixture}(...)`` -> {spec.summary}.\n\n{(spec.build.__doc__ or '').strip()}"
    return pytest.fixture(name=spec.fixture)(fixture)


for _name, _spec in ACTORS.items():
    if _spec.fixture is not None:
        globals()[_spec.fixture] = _actor_fixture(_name)


@pytest.fixture
def kt_interfere(request: pytest.FixtureRequest, kt_testbed: Testbed) -> Callable[..., Comparison]:
    """``kt_interfere(actor, expect=None, label=None, streams=None, baseline_streams=None,
    design=None, check=True, report=None, max_tokens=None, **params)`` -> Comparison: the
    code-defined form of a condition (``max_tokens``: its own output length, as in a file).

    ``actor`` is a name as in experiment files (``cpu_stress``, ``ram_filler``, ... or ``none``),
    ``params`` its parameters, ``expect`` a dict metric -> outcome of hard claims (or taken from
    ``@pytest.mark.interference(expect=...)``), ``report`` cells to compare with, printed as
    agrees/differs/undecided and never failing. Runs interleaved pairs sequentially until the
    claims are decided; with ``check`` it fails the test on a failed or inconclusive claim, so
    parametrized tests read as one line each.
    """

    def interfere(
        actor: str,
        *,
        expect: dict[str, Any] | None = None,
        label: str | None = None,
        streams: int | None = None,
        baseline_streams: int | None = None,
        design: Design | dict[str, int] | None = None,
        check: bool = True,
        report: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        **params: Any,
    ) -> Comparison:
        spec = spec_from_call(
            request.node,
            actor,
            expect=expect,
            report=report,
            label=label,
            streams=streams,
            baseline_streams=baseline_streams,
            design=design,
            params=params,
            max_tokens=max_tokens,
        )
        comparison = run(kt_testbed, spec, experiment=request.node.nodeid)
        for verdict in comparison.verdicts:
            print(verdict.line())
        if check:
            raise_for_verdicts(comparison)
        return comparison

    return interfere


NAMES = frozenset(name for name, value in globals().items() if name.startswith("kt_") and callable(value))
"""The plugin's fixture names: a test that asks for one uses the plugin (see plugin._uses_plugin)."""
