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

from pytest_ktinterf import assets
from pytest_ktinterf import options as options_mod
from pytest_ktinterf.actors.bandwidth import MemoryBandwidth
from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.actors.corunner import CoRunner
from pytest_ktinterf.actors.cpu import CpuStress, core_set
from pytest_ktinterf.actors.gpu import GpuCompute, GpuMemoryHog, gpu_unavailable_reason
from pytest_ktinterf.actors.memory import RamFiller
from pytest_ktinterf.actors.overflow import ContainedOverflow, HostOverflow
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


CoreSpec = list[int] | str


def _cores(spec: CoreSpec, request: pytest.FixtureRequest) -> list[int]:
    """A core list as given, or 'server' / 'spare' derived from the running server's affinity."""
    if isinstance(spec, str):
        server: ServerHandle = request.getfixturevalue("kt_server")
        return core_set(spec, server.cpus())
    return list(spec)


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
            chosen = _cores(cores, request)
            actor = CpuStress(
                cores=chosen,
                load_percent=load_percent,
                workers_per_core=workers_per_core,
                stress_ng=kt_options.stress_ng,
                log_dir=kt_log_dir,
                name=f"cpu-stress[{format_cpu_list(chosen)}]",
            )
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
            chosen = _cores(cores, request)
            actor = MemoryBandwidth(
                cores=chosen,
                workers_per_core=workers_per_core,
                stress_ng=kt_options.stress_ng,
                log_dir=kt_log_dir,
                name=f"memory-bandwidth[{format_cpu_list(chosen)}]",
            )
            made.append(actor)
            return actor

        yield make


def _reserve_bytes(options: Options) -> int | None:
    return None if options.memory_reserve_gib is None else int(options.memory_reserve_gib * 2**30)


@pytest.fixture
def kt_ram_filler(
    kt_options: Options, kt_log_dir: Path, request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[Any]:
    """``kt_ram_filler(gib=None, leave_available_gib=None, active=False, mlock=False, cores=None)``.

    Holds N GiB (or all but X GiB of what is available), every page touched; ``active=True``
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
        ) -> RamFiller:
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


def _require_gpu() -> None:
    """GPU experiments skip, with the reason, where there is no usable GPU (never fail or fake)."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"needs a usable NVIDIA GPU: {reason}")


@pytest.fixture
def kt_gpu_memory(kt_log_dir: Path) -> Iterator[Any]:
    """``kt_gpu_memory(gib, device=0)`` -> a child holding ``gib`` GiB of device memory (NVML-proven).

    The report's "co-runner holds VRAM, idle" row. Refuses more than the free VRAM.
    """
    _require_gpu()
    with _stopping_all() as made:

        def make(gib: float, device: int = 0) -> GpuMemoryHog:
            actor = GpuMemoryHog(gib=gib, device=device, log_dir=kt_log_dir)
            made.append(actor)
            return actor

        yield make


@pytest.fixture
def kt_gpu_compute(kt_log_dir: Path) -> Iterator[Any]:
    """``kt_gpu_compute(duty_percent=100, device=0)`` -> matrix products at a duty cycle (NVML-proven).

    The report's "co-runner computes on the GPU" row.
    """
    _require_gpu()
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
