"""pytest hooks and fixtures: the seams through which everything else is reached.

Data path, by fixture: ``kt_server`` (server/) -> ``kt_probe`` (probe.py) -> ``kt_measure`` /
``kt_compare`` (samples.py, compare.py, stats.py, verdict.py) -> ``kt_report`` (report.py), and
the report is printed in the terminal summary and written as JSON at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_ktinterf import options as options_mod
from pytest_ktinterf.actors.cpu import CpuStress
from pytest_ktinterf.compare import Comparison, Condition, compare, measure_monitored
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.machine_lock import EXCLUSIVE, SHARED, hold, measuring
from pytest_ktinterf.options import Options, format_cpu_list
from pytest_ktinterf.probe import Probe
from pytest_ktinterf.processes import reap_leftovers
from pytest_ktinterf.report import Report
from pytest_ktinterf.samples import RoundSample
from pytest_ktinterf.server import ServerHandle, open_server

MARKER = "interference"
XDIST_GROUP = "ktinterf-machine"

options_key = pytest.StashKey[Options]()
report_key = pytest.StashKey[Report]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options_mod.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: a resource-interference experiment that measures the server; such tests "
        "never overlap each other (one machine-wide lock, one xdist group)",
    )
    try:
        config.stash[options_key] = options_mod.from_config(config)
    except KtInterfError as exc:
        raise pytest.UsageError(exc.line()) from None
    config.stash[report_key] = Report()


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Reap what a crashed or killed earlier session left running."""
    if _is_xdist_worker(session.config):
        return
    reaped = reap_leftovers()
    writer = session.config.get_terminal_writer()
    for line in reaped:
        writer.line(f"ktinterf: reaped leftover {line} from a session that died", yellow=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Interference tests share one xdist group so ``--dist loadgroup`` never overlaps them.

    ``tryfirst``: xdist reads the group marker in its own hook of the same name.
    """
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            item.add_marker(pytest.mark.xdist_group(XDIST_GROUP))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Interference items hold the machine exclusively, all others shared (see machine_lock)."""
    mode = EXCLUSIVE if item.get_closest_marker(MARKER) is not None else SHARED
    with hold(mode, _say(item.config)):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Show our own errors as their one line (plus evidence), not as a traceback wall."""
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, KtInterfError):
        report.longrepr = excinfo.value.render()
    return report


def _json_target(config: pytest.Config) -> Path | None:
    """Where this process writes its JSON record; xdist workers each get their own file."""
    path = config.stash[options_key].report_json if options_key in config.stash else None
    if not path:
        return None
    target = Path(config.rootpath, path)
    if _is_xdist_worker(config):
        worker = config.workerinput["workerid"]  # type: ignore[attr-defined]
        target = target.with_name(f"{target.stem}-{worker}{target.suffix}")
    return target


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(report_key, None)
    if report is None or report.empty:
        return
    terminalreporter.write_sep("=", "ktinterf report")
    for line in report.lines():
        terminalreporter.write_line(line)
    target = _json_target(config)
    if target is not None:
        report.write_json(target)
        terminalreporter.write_line(f"JSON record: {target}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """xdist workers have no terminal summary: they write their record here."""
    report = session.config.stash.get(report_key, None)
    target = _json_target(session.config)
    if _is_xdist_worker(session.config) and report is not None and not report.empty and target:
        report.write_json(target)


# -- fixtures ------------------------------------------------------------------------------


def _say(config: pytest.Config) -> Any:
    writer = config.get_terminal_writer()

    def say(message: str) -> None:
        writer.line(f"ktinterf: {message}")

    return say


@pytest.fixture(scope="session")
def kt_options(pytestconfig: pytest.Config) -> Options:
    """The resolved ``--kt-*`` options."""
    return pytestconfig.stash[options_key]


@pytest.fixture(scope="session")
def kt_log_dir(pytestconfig: pytest.Config) -> Path:
    """Where server and actor logs go (kept after the run, for post-mortems)."""
    path = Path(pytestconfig.rootpath, ".ktinterf", "logs", f"session-{os.getpid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def kt_report(pytestconfig: pytest.Config) -> Report:
    """The session's report: add rounds and comparisons to have them printed and recorded."""
    return pytestconfig.stash[report_key]


@pytest.fixture(scope="session")
def kt_server(
    kt_options: Options, kt_log_dir: Path, pytestconfig: pytest.Config, kt_report: Report
) -> Iterator[ServerHandle]:
    """The server under test, started (or connected to) once per session."""
    with open_server(kt_options, kt_log_dir, say=_say(pytestconfig)) as handle:
        cpus = handle.cpus()
        kt_report.server = {
            "backend": handle.backend,
            "description": handle.description,
            "url": handle.url,
            "cpus": format_cpu_list(cpus) if cpus else None,
            **{k: v for k, v in handle.meta.items() if k in ("threads", "parallel", "model")},
        }
        yield handle


def _model_name(url: str) -> str | None:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError):
        return str(httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"])
    return None


@pytest.fixture(scope="session")
def kt_probe(kt_server: ServerHandle, kt_options: Options, kt_report: Report) -> Probe:
    """A probe for the session's workload, calibrated to the prompt length in tokens."""
    probe = Probe(
        kt_server.url,
        api=kt_options.api,
        model=kt_options.model_name or _model_name(kt_server.url),
        prompt_tokens=kt_options.prompt_tokens,
        max_tokens=kt_options.max_tokens,
    )
    with measuring():
        probe.calibrate()
    kt_report.workload = {
        "api": kt_options.api,
        "model": probe.model,
        "prompt_tokens": kt_options.prompt_tokens,
        "max_tokens": kt_options.max_tokens,
    }
    return probe


@pytest.fixture
def kt_measure(
    kt_probe: Probe, kt_server: ServerHandle, kt_report: Report, pytestconfig: pytest.Config
) -> Any:
    """``kt_measure(streams=1, rounds=1)`` -> list of rounds, monitored and added to the report."""
    say = _say(pytestconfig)

    def measure(streams: int = 1, rounds: int = 1) -> list[RoundSample]:
        samples = []
        with measuring(say):
            for _ in range(rounds):
                sample = measure_monitored(kt_probe, streams, kt_server.processes)
                kt_report.add_round(sample)
                samples.append(sample)
        return samples

    return measure


@pytest.fixture
def kt_cpu_stress(kt_options: Options, kt_log_dir: Path) -> Iterator[Any]:
    """``kt_cpu_stress(cores, load_percent=None)`` -> a CPU stress actor (a context manager).

    Whatever the test does, every actor made here is stopped at teardown.
    """
    made: list[CpuStress] = []

    def make(cores: list[int], load_percent: int | None = None, workers_per_core: int = 1) -> CpuStress:
        actor = CpuStress(
            cores=list(cores),
            load_percent=load_percent,
            workers_per_core=workers_per_core,
            stress_ng=kt_options.stress_ng,
            log_dir=kt_log_dir,
            name=f"cpu-stress[{format_cpu_list(list(cores))}]",
        )
        made.append(actor)
        return actor

    yield make
    for actor in made:
        actor.stop()


@pytest.fixture
def kt_compare(
    kt_probe: Probe,
    kt_server: ServerHandle,
    kt_options: Options,
    kt_report: Report,
    pytestconfig: pytest.Config,
) -> Any:
    """``kt_compare(condition, label=..., streams=1, trials=None)`` -> Comparison.

    ``condition`` is a zero-argument callable returning a context manager (an actor), entered
    for every condition trial. The comparison is added to the report.
    """
    say = _say(pytestconfig)

    def run(condition: Condition, *, label: str, streams: int = 1, trials: int | None = None) -> Comparison:
        with measuring(say):
            result = compare(
                kt_probe,
                condition,
                label=label,
                trials=trials or kt_options.trials,
                streams=streams,
                processes=kt_server.processes,
                progress=say,
            )
        kt_report.add_comparison(result)
        return result

    return run
