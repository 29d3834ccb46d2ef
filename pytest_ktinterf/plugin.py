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
import psutil
import pytest

from pytest_ktinterf import options as options_mod
from pytest_ktinterf.actors.bandwidth import MemoryBandwidth
from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.actors.container import (
    ContainerCpuStress,
    ContainerMemoryBandwidth,
    ContainerRamFiller,
    engine_cores,
    engine_meminfo,
    host_only_refusal,
    resolve_placement,
)
from pytest_ktinterf.actors.corunner import CoRunner
from pytest_ktinterf.actors.cpu import CpuStress, core_set
from pytest_ktinterf.actors.gpu import GpuCompute, GpuMemoryHog, gpu_unavailable_reason
from pytest_ktinterf.actors.memory import RamFiller
from pytest_ktinterf.actors.overflow import ContainedOverflow, HostOverflow
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.experiment.collect import ExperimentFile, is_experiment_file
from pytest_ktinterf.experiment.interfere import VerdictFailure, raise_for_verdicts, spec_from_call
from pytest_ktinterf.experiment.interfere import run as run_condition
from pytest_ktinterf.judge.expectations import Expectation
from pytest_ktinterf.measure.compare import Comparison, Condition, Design, compare, measure_monitored
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import RoundSample
from pytest_ktinterf.options import Options, format_cpu_list, options_key
from pytest_ktinterf.report.plots import write_plots
from pytest_ktinterf.report.record import Report, json_safe, merge_records, write_record
from pytest_ktinterf.report.text import render_lines
from pytest_ktinterf.server import ServerHandle, open_server
from pytest_ktinterf.system import assets, docker_engine
from pytest_ktinterf.system.docker_engine import reap_containers
from pytest_ktinterf.system.lock import EXCLUSIVE, SHARED, hold, measuring
from pytest_ktinterf.system.reap import reap_leftovers

MARKER = "interference"
XDIST_GROUP = "ktinterf-machine"

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
    reaped = reap_leftovers() + reap_containers()
    writer = session.config.get_terminal_writer()
    for line in reaped:
        writer.line(f"ktinterf: reaped leftover {line} from a session that died", yellow=True)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ExperimentFile | None:
    """TOML files directly under an ``experiments/`` directory are experiments."""
    if is_experiment_file(file_path):
        return ExperimentFile.from_parent(parent, path=file_path)
    return None


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
    elif excinfo is not None and isinstance(excinfo.value, VerdictFailure):
        report.longrepr = str(excinfo.value)
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
    return records[0] if len(records) == 1 else merge_records(records)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    record = _session_record(config)
    if record is None:
        return
    terminalreporter.write_sep("=", "ktinterf report")
    for line in render_lines(record):
        terminalreporter.write_line(line)
    target = _json_target(config)
    if target is not None:
        write_record(record, target)
        terminalreporter.write_line(f"JSON record: {target}")
        plots = write_plots(record, target.parent)
        if plots:
            terminalreporter.write_line(f"plots: {', '.join(str(p) for p in plots)}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """xdist workers have no terminal summary: they write their record and send it home.

    The controller merges what they send (``pytest_testnodedown``) and prints one report; the
    per-worker file stays as that worker's own account.
    """
    config = session.config
    report = config.stash.get(report_key, None)
    if not _is_xdist_worker(config) or report is None or report.empty:
        return
    record = json_safe(report.to_record())
    config.workeroutput["ktinterf_record"] = record  # type: ignore[attr-defined]
    target = _json_target(config)
    if target:
        write_record(record, target)


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


CoreSpec = list[int] | str


def _cores(spec: CoreSpec, request: pytest.FixtureRequest, engine: Any = None) -> list[int]:
    """A core list as given, or 'server' / 'spare' derived from the running server's affinity.

    With ``engine`` (actors in containers) the spare cores are the engine host's, not ours.
    """
    if isinstance(spec, str):
        server: ServerHandle = request.getfixturevalue("kt_server")
        return core_set(spec, server.cpus(), engine_cores(engine) if engine is not None else None)
    return list(spec)


def _engine_for_actors(options: Options) -> Any:
    """The Docker engine client when actors run as containers there (``--kt-actors-in``), else None."""
    if resolve_placement(options.actors_in, options.backend) == "host":
        return None
    return docker_engine.connect()


def _host_only(options: Options, actor: str) -> None:
    """Actors that cannot run in a container refuse, rather than load the wrong machine."""
    refusal = host_only_refusal(options.actors_in, options.backend, actor)
    if refusal is not None:
        raise refusal


@contextlib.contextmanager
def _stopping_all() -> Iterator[list[Actor]]:
    """Actors made by a factory fixture are all stopped at teardown, whatever the test did."""
    made: list[Actor] = []
    try:
        yield made
    finally:
        for actor in made:
            actor.stop()


@pytest.fixture
def kt_cpu_stress(kt_options: Options, kt_log_dir: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``kt_cpu_stress(cores, load_percent=None, workers_per_core=1)`` -> CPU stress actor.

    ``cores`` is a core list, ``"server"`` (the report's "KT's own CPU cores") or ``"spare"``
    (every other core: "spare CPU cores"). The actor is a context manager.
    """
    with _stopping_all() as made:

        def make(cores: CoreSpec, load_percent: int | None = None, workers_per_core: int = 1) -> CpuStress:
            engine = _engine_for_actors(kt_options)
            chosen = _cores(cores, request, engine)
            settings: dict[str, Any] = {
                "cores": chosen,
                "load_percent": load_percent,
                "workers_per_core": workers_per_core,
                "stress_ng": kt_options.stress_ng,
                "log_dir": kt_log_dir,
                "name": f"cpu-stress[{format_cpu_list(chosen)}]",
            }
            actor = CpuStress(**settings) if engine is None else ContainerCpuStress(client=engine, **settings)
            made.append(actor)
            return actor

        yield make


@pytest.fixture
def kt_memory_bandwidth(
    kt_options: Options, kt_log_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """``kt_memory_bandwidth(cores="spare", workers_per_core=1)`` -> stress-ng ``--stream`` actor."""
    with _stopping_all() as made:

        def make(cores: CoreSpec = "spare", workers_per_core: int = 1) -> MemoryBandwidth:
            engine = _engine_for_actors(kt_options)
            chosen = _cores(cores, request, engine)
            settings: dict[str, Any] = {
                "cores": chosen,
                "workers_per_core": workers_per_core,
                "stress_ng": kt_options.stress_ng,
                "log_dir": kt_log_dir,
                "name": f"memory-bandwidth[{format_cpu_list(chosen)}]",
            }
            if engine is None:
                actor = MemoryBandwidth(**settings)
            else:
                actor = ContainerMemoryBandwidth(client=engine, **settings)
            made.append(actor)
            return actor

        yield make


def _reserve_bytes(options: Options) -> int | None:
    return None if options.memory_reserve_gib is None else int(options.memory_reserve_gib * 2**30)


@pytest.fixture
def kt_ram_filler(
    kt_options: Options, kt_log_dir: Path, request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[Any]:
    """``kt_ram_filler(gib=None, leave_available_gib=None, active=False, mlock=False, cores=None,
    fraction_of_available=None)``.

    Holds N GiB (or all but X GiB, or a fraction of what is available), every page touched; ``active=True``
    keeps streaming through it (the report's "co-runner infers" row), else it idles ("holds RAM,
    idle"). Refuses to go below ``--kt-memory-reserve``.
    """
    with _stopping_all() as made:

        def make(
            gib: float | None = None,
            leave_available_gib: float | None = None,
            active: bool = False,
            mlock: bool = False,
            cores: CoreSpec | None = None,
            fraction_of_available: float | None = None,
        ) -> RamFiller | ContainerRamFiller:
            engine = _engine_for_actors(kt_options)
            if engine is not None:
                return made_in_container(engine, gib, leave_available_gib, active, mlock, cores,
                                         fraction_of_available)  # fmt: skip
            if fraction_of_available is not None:  # sized when the actor is made, i.e. per trial
                gib = fraction_of_available * psutil.virtual_memory().available / 2**30
            actor = RamFiller(
                gib=gib,
                leave_available_gib=leave_available_gib,
                active=active,
                mlock=mlock,
                cpus=None if cores is None else _cores(cores, request),
                reserve_bytes=_reserve_bytes(kt_options),
                log_dir=kt_log_dir,
                progress=_say(pytestconfig),
                name="ram-filler-active" if active else "ram-filler-idle",
            )
            made.append(actor)
            return actor

        def made_in_container(
            engine: Any,
            gib: float | None,
            leave_available_gib: float | None,
            active: bool,
            mlock: bool,
            cores: CoreSpec | None,
            fraction_of_available: float | None,
        ) -> ContainerRamFiller:
            actor = ContainerRamFiller(
                gib=gib,
                leave_available_gib=leave_available_gib,
                active=active,
                mlock=mlock,
                cpus=None if cores is None else _cores(cores, request, engine),
                reserve_bytes=_reserve_bytes(kt_options),
                client=engine,
                log_dir=kt_log_dir,
                progress=_say(pytestconfig),
                name="ram-filler-active" if active else "ram-filler-idle",
            )
            if fraction_of_available is not None:  # of the engine host's memory, per trial
                available = engine_meminfo(engine, actor.image)["MemAvailable"]
                actor.gib = fraction_of_available * available / 2**30
            made.append(actor)
            return actor

        yield make


@pytest.fixture
def kt_ram_overflow(
    kt_options: Options, kt_log_dir: Path, request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[Any]:
    """``kt_ram_overflow(mode="contained", working_set_fraction=0.5, limit_mib=None, overflow_gib=1)``.

    ``contained``: the memory cgroup the server was started in is limited below its working
    set (root; nothing else on the host is touched). ``host``: a filler pushes the host
    ``overflow_gib`` past its RAM, refused without swap unless ``--kt-allow-host-overflow``.
    """
    with _stopping_all() as made:

        def make(
            mode: str = "contained",
            working_set_fraction: float = 0.5,
            limit_mib: float | None = None,
            overflow_gib: float = 1.0,
        ) -> Actor:
            actor: Actor
            if mode == "contained":
                server: ServerHandle = request.getfixturevalue("kt_server")
                actor = ContainedOverflow(
                    cgroup=server.cgroup,
                    why_no_cgroup=str(server.meta.get("memory_cgroup", f"{server.backend} server")),
                    working_set_fraction=working_set_fraction,
                    limit_mib=limit_mib,
                )
            elif mode == "host":
                _host_only(kt_options, "host RAM overflow")
                actor = HostOverflow(
                    overflow_gib=overflow_gib,
                    allow_without_swap=kt_options.allow_host_overflow,
                    reserve_bytes=_reserve_bytes(kt_options),
                    log_dir=kt_log_dir,
                    progress=_say(pytestconfig),
                )
            else:
                raise KtInterfError(f"RAM overflow mode {mode!r} is unknown", "use 'contained' or 'host'")
            made.append(actor)
            return actor

        yield make


@pytest.fixture
def kt_corunner(
    kt_options: Options, kt_log_dir: Path, request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[Any]:
    """``kt_corunner(argv=None, cores="spare", busy=True, url=None)`` -> a co-running workload.

    Without ``argv``: a second embedded llama-server with the embedded model (the report used a
    second llama.cpp server), inferring in a request loop when ``busy``, else idle holding its
    model. With ``argv``: any command; ``url`` makes it wait for readiness (and, when busy, keep
    sending requests there, loopback only).
    """
    with _stopping_all() as made:

        def make(
            argv: list[str] | None = None,
            cores: CoreSpec = "spare",
            busy: bool = True,
            url: str | None = None,
        ) -> CoRunner:
            _host_only(kt_options, "co-runner")
            cpus = _cores(cores, request)
            say = _say(pytestconfig)
            if argv is None:
                found = assets.resolve(kt_options.llama_server, kt_options.model)
                actor = CoRunner.embedded_llama(found, cpus, kt_log_dir, busy=busy, say=say)
            else:
                actor = CoRunner(
                    argv=list(argv),
                    cpus=cpus,
                    log_dir=kt_log_dir,
                    url=url,
                    request_loop=busy and bool(url),
                    say=say,
                )
            made.append(actor)
            return actor

        yield make


def _require_gpu(options: Options) -> None:
    """GPU experiments skip, with the reason, where there is no usable GPU (never fail or fake)."""
    _host_only(options, "GPU")
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"needs a usable NVIDIA GPU: {reason}")


@pytest.fixture
def kt_gpu_memory(kt_log_dir: Path, kt_options: Options) -> Iterator[Any]:
    """``kt_gpu_memory(gib, device=0)`` -> a child holding ``gib`` GiB of device memory (NVML-proven).

    The report's "co-runner holds VRAM, idle" row. Refuses more than the free VRAM.
    """
    _require_gpu(kt_options)
    with _stopping_all() as made:

        def make(gib: float, device: int = 0) -> GpuMemoryHog:
            actor = GpuMemoryHog(gib=gib, device=device, log_dir=kt_log_dir)
            made.append(actor)
            return actor

        yield make


@pytest.fixture
def kt_gpu_compute(kt_log_dir: Path, kt_options: Options) -> Iterator[Any]:
    """``kt_gpu_compute(duty_percent=100, device=0)`` -> matrix products at a duty cycle (NVML-proven).

    The report's "co-runner computes on the GPU" row.
    """
    _require_gpu(kt_options)
    with _stopping_all() as made:

        def make(duty_percent: int = 100, device: int = 0) -> GpuCompute:
            actor = GpuCompute(duty_percent=duty_percent, device=device, log_dir=kt_log_dir)
            made.append(actor)
            return actor

        yield make


@pytest.fixture
def kt_compare(
    kt_probe: Probe,
    kt_server: ServerHandle,
    kt_options: Options,
    kt_report: Report,
    pytestconfig: pytest.Config,
) -> Any:
    """``kt_compare(condition, label=..., streams=1, trials=None, design=None, expectations=())``.

    ``condition`` is a zero-argument callable returning a context manager (an actor), entered
    for every condition trial. With ``trials`` exactly that many pairs run; with ``design`` and
    ``expectations`` pairs run until each expectation is decided (see compare.py). The
    comparison is added to the report.
    """
    say = _say(pytestconfig)

    def run(
        condition: Condition,
        *,
        label: str,
        streams: int = 1,
        trials: int | None = None,
        design: Design | None = None,
        expectations: list[Expectation] | tuple[Expectation, ...] = (),
        baseline_streams: int | None = None,
    ) -> Comparison:
        if trials is None and design is None:
            trials = kt_options.trials
        with measuring(say):
            result = compare(
                kt_probe,
                condition,
                label=label,
                trials=trials,
                design=design,
                expectations=expectations,
                streams=streams,
                baseline_streams=baseline_streams,
                processes=kt_server.processes,
                progress=say,
            )
        kt_report.add_comparison(result)
        return result

    return run


@pytest.fixture
def kt_interfere(request: pytest.FixtureRequest) -> Any:
    """``kt_interfere(actor, expect=None, label=None, streams=None, baseline_streams=None,
    design=None, check=True, **params)`` -> Comparison: the code-defined form of a condition.

    ``actor`` is a name as in experiment files (``cpu_stress``, ``ram_filler``, ... or ``none``),
    ``params`` its parameters, ``expect`` a dict metric -> outcome (or taken from
    ``@pytest.mark.interference(expect=...)``). Runs interleaved pairs sequentially until the
    expectations are decided; with ``check`` it fails the test on a failed or inconclusive
    verdict, so parametrized tests read as one line each.
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
        **params: Any,
    ) -> Comparison:
        spec = spec_from_call(
            request,
            actor,
            expect=expect,
            label=label,
            streams=streams,
            baseline_streams=baseline_streams,
            design=design,
            params=params,
        )
        comparison = run_condition(request, spec, experiment=request.node.nodeid)
        for verdict in comparison.verdicts:
            print(verdict.line())
        if check:
            raise_for_verdicts(comparison)
        return comparison

    return interfere
