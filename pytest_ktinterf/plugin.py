"""pytest hooks: the seams through which pytest reaches the plugin, and nothing else.

The plugin is inert unless asked: a session that selects no ``interference`` item, gives no
``--kt-*`` option and uses no ``kt_*`` fixture does nothing of the plugin's (no reaping, no
machine lock, no server, no output). Experiment files are recognised by content
(``experiment/collect.py``). The fixtures live in ``fixtures.py``; the report is printed in the
terminal summary and written as JSON at the end of the session (merged from xdist workers).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf import fixtures
from pytest_ktinterf import options as options_mod
from pytest_ktinterf.baseline.session import Gatekeeper, fingerprint_of
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.experiment import outcomes
from pytest_ktinterf.experiment.collect import EXPERIMENTS_INI, ExperimentFile, is_experiment_file
from pytest_ktinterf.experiment.interfere import VerdictFailure
from pytest_ktinterf.measure.compare import partial_comparison
from pytest_ktinterf.options import options_key
from pytest_ktinterf.progress import say_to
from pytest_ktinterf.report.baseline_text import baseline_lines, gate_failed
from pytest_ktinterf.report.markdown import write_markdown
from pytest_ktinterf.report.plots import write_plots
from pytest_ktinterf.report.record import Report, json_safe, merge_records, write_record
from pytest_ktinterf.report.text import render_lines
from pytest_ktinterf.system.docker_engine import reap_containers
from pytest_ktinterf.system.lock import EXCLUSIVE, SHARED, hold
from pytest_ktinterf.system.reap import reap_leftovers
from pytest_ktinterf.system.session_logs import reap_session_logs
from pytest_ktinterf.system.sigterm import sigterm_as_ctrl_c

MARKER = "interference"
XDIST_GROUP = "ktinterf-machine"

report_key = fixtures.report_key
active_key = pytest.StashKey[bool]()  # the plugin is in use in this process
_reaped_key = pytest.StashKey[bool]()
_sigterm_undo_key = pytest.StashKey[Callable[[], None]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options_mod.add_options(parser)
    parser.addini(
        EXPERIMENTS_INI,
        "files or folders whose TOML files are experiment files (besides any TOML file that has a "
        "top-level [experiment] table)",
        type="paths",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: a resource-interference experiment that measures the server; such tests "
        "never overlap each other (one machine-wide lock)",
    )
    report = Report()
    try:
        options = options_mod.from_config(config)
        config.stash[options_key] = options
        keeper = Gatekeeper.open(options, config.rootpath)
    except KtInterfError as exc:
        raise pytest.UsageError(exc.line()) from None
    config.stash[fixtures.gate_key] = keeper
    if keeper is not None:
        report.baseline.update(keeper.header())
    config.stash[report_key] = report
    config.stash[active_key] = options_mod.given_on_command_line(config)
    config.pluginmanager.register(fixtures, "ktinterf-fixtures")


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_interference(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None


def _uses_plugin(item: pytest.Item) -> bool:
    """An interference item, or one that asks for any of the plugin's own fixtures."""
    return _is_interference(item) or not fixtures.NAMES.isdisjoint(getattr(item, "fixturenames", ()))


def _activate(config: pytest.Config) -> None:
    """The first time the plugin is used in this process: reap what a killed session left.

    Processes, cgroups and containers of dead sessions, and their weights copies and old log
    folders (``system/session_logs.py``).
    """
    config.stash[active_key] = True
    if config.stash.get(_reaped_key, False):
        return
    config.stash[_reaped_key] = True
    config.stash[_sigterm_undo_key] = sigterm_as_ctrl_c()  # a runner's timeout tears down as Ctrl-C
    try:
        reaped = reap_leftovers() + reap_containers()
    except KtInterfError as exc:  # a state folder not ours (registry.py): stop before anything runs
        pytest.exit(f"ktinterf: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    outcomes.remove_runs()
    writer = config.get_terminal_writer()
    for line in reaped:
        writer.line(f"ktinterf: reaped leftover {line} from a session that died", yellow=True)
    for line in reap_session_logs(config.rootpath):  # weights copies, and old log folders
        writer.line(f"ktinterf: {line}", yellow=True)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ExperimentFile | None:
    if is_experiment_file(file_path, parent.config):
        return ExperimentFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Interference tests share one xdist group (``--dist loadgroup`` keeps them on one worker).

    ``tryfirst``: xdist reads the group marker in its own hook of the same name. Correctness
    does not rest on it (newer pytest ignores xdist's node-id suffix): the machine lock keeps
    measurements apart and ``experiment/outcomes.py`` measures each condition once. Without
    xdist (``-p no:xdist``) the marker is unknown and would only warn, so it is not added.
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if _is_interference(item):
            item.add_marker(pytest.mark.xdist_group(XDIST_GROUP))


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.stash.get(active_key, False) or any(_is_interference(i) for i in session.items):
        _activate(session.config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Interference items hold the machine exclusively; other items of an active session shared.

    In a session that does not use the plugin no lock is taken at all (see system/lock.py).
    """
    config = item.config
    if _uses_plugin(item):
        _activate(config)
    if not config.stash.get(active_key, False):
        return (yield)
    mode = EXCLUSIVE if _is_interference(item) else SHARED
    with hold(mode, say_to(config), timeout_s=config.stash[options_key].lock_timeout):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Show our own errors as their one line (plus evidence), not as a traceback wall.

    ``--tb=long``, ``--tb=native`` and ``--full-trace`` ask for the traceback: pytest's stays and
    the line with its evidence follows it. A comparison the error stopped part-way is already in
    the report (``testbed.compare`` records it); the line says so.
    """
    report = yield
    error = call.excinfo.value if call.excinfo is not None else None
    if not isinstance(error, (KtInterfError, VerdictFailure)):
        return report
    config = item.config
    traceback_asked = config.getoption("tbstyle", "auto") in ("long", "native") or bool(
        config.getoption("fulltrace", False)
    )
    if isinstance(error, VerdictFailure):
        if not traceback_asked:
            report.longrepr = str(error)
        return report
    text = error.render()
    partial = partial_comparison(error)
    if partial is not None:
        text += (
            f"\n{partial.label}: {partial.status} after {partial.pairs} finished pairs, which are "
            "recorded in the ktinterf report (JSON record: --kt-report-json)"
        )
    if not traceback_asked:
        report.longrepr = text
    elif hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection("ktinterf", text)
    else:
        report.longrepr = f"{report.longrepr}\n{text}"
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


# -- the report at the end of the session (with xdist: merged from the workers' records) ---------

worker_records_key = pytest.StashKey[dict[str, dict[str, Any]]]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: keep each worker's record (sent in its workeroutput) for the summary.

    ``optionalhook``: this is an xdist hook; without xdist (``-p no:xdist``) pytest would
    otherwise refuse an implementation of a hook it does not know.
    """
    record = getattr(node, "workeroutput", {}).get("ktinterf_record")
    if record:
        node.config.stash.setdefault(worker_records_key, {})[str(node.workerinput["workerid"])] = record


def _session_record(config: pytest.Config) -> dict[str, Any] | None:
    """This process's record merged with the xdist workers' (in worker order), None if empty."""
    report = config.stash.get(report_key, None)
    workers = config.stash.get(worker_records_key, {})
    records = [] if report is None or report.empty else [report.to_record()]
    records += [workers[w] for w in sorted(workers, key=lambda w: (len(w), w))]
    if not records:
        return None
    record = records[0] if len(records) == 1 else merge_records(records)
    if options_key in config.stash:  # what an offline compare checks two records against
        keeper = config.stash.get(fixtures.gate_key, None)
        fingerprint = keeper.fingerprint if keeper else fingerprint_of(config.stash[options_key])
        record["fingerprint"] = fingerprint.keyed
    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    record = _session_record(config)
    if record is None:
        return
    terminalreporter.write_sep("=", "ktinterf report")
    for line in render_lines(record) + baseline_lines(record):
        terminalreporter.write_line(line)
    saved = config.stash.get(_saved_key, None)
    if saved:
        terminalreporter.write_line(saved, bold=True)
    target = _json_target(config)
    if target is not None:
        write_record(record, target)
        terminalreporter.write_line(f"JSON record: {target}")
        plots = write_plots(record, target.parent)
        if plots:
            terminalreporter.write_line(f"plots: {', '.join(str(p) for p in plots)}")
        markdown = write_markdown(record, target.with_suffix(".md"), plots)
        terminalreporter.write_line(f"Markdown report: {markdown}")


_saved_key = pytest.StashKey[str]()


def _save_baseline(session: pytest.Session) -> None:
    """``--kt-baseline-save`` / ``-update``: append the session (all workers') to this machine's file.

    Not when the session was interrupted (half a session would narrow the spread it records),
    nor when this same session's gate failed it -- regressed, or inconclusive under
    ``--kt-baseline-strict`` (that would teach the baseline the regression; accept one on
    purpose with ``--kt-baseline-update``).
    """
    config = session.config
    keeper = config.stash.get(fixtures.gate_key, None)
    if keeper is None or not (keeper.settings.save or keeper.settings.update) or _is_xdist_worker(config):
        return
    record = _session_record(config)
    if session.shouldstop or session.exitstatus == pytest.ExitCode.INTERRUPTED:
        message = "baseline NOT saved: the session stopped early (interrupted, or -x / --maxfail)"
    elif record is None:
        message = "baseline NOT saved: nothing was measured"
    elif keeper.settings.save and not keeper.settings.update and gate_failed(record):
        message = (
            "baseline NOT saved: the gate failed this session (a regression, or inconclusive under "
            "--kt-baseline-strict); accept it with --kt-baseline-update"
        )
    else:
        try:
            message = keeper.save(record)
        except KtInterfError as exc:
            message = f"baseline NOT saved: {exc.line()}"
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.stash[_saved_key] = message


def pytest_sessionfinish(session: pytest.Session) -> None:
    """xdist workers have no terminal summary: they write their record and send it home.

    The controller merges what they send (``pytest_testnodedown``) and prints one report; the
    per-worker file stays as that worker's own account. The controller saves the baseline.
    """
    config = session.config
    _save_baseline(session)
    report = config.stash.get(report_key, None)
    if not _is_xdist_worker(config) or report is None or report.empty:
        return
    record = json_safe(report.to_record())
    config.workeroutput["ktinterf_record"] = record  # type: ignore[attr-defined]
    target = _json_target(config)
    if target:
        write_record(record, target)


def pytest_unconfigure(config: pytest.Config) -> None:
    """SIGTERM gets its disposition back; the xdist controller removes its workers' shared outcome
    folder (see experiment/outcomes)."""
    config.stash.get(_sigterm_undo_key, lambda: None)()
    if not _is_xdist_worker(config) and config.pluginmanager.hasplugin("dsession"):
        outcomes.remove_runs(owner_pid=os.getpid())
