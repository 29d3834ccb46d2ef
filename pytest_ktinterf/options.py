"""Command-line and ini options, resolved once into a typed :class:`Options`.

Every setting can come from the command line (``--kt-...``), the ini file (``kt_...``) or, for
the paths people keep per machine, an environment variable; the first one set wins. Keeping this
apart from the fixtures (as pytest-benchmark does) means the rest of the plugin receives plain
values and never touches ``config``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_ktinterf.baseline.settings import BaselineSettings
from pytest_ktinterf.baseline.thresholds import parse_thresholds
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.option_values import choice, gib, integer, parse_url, yes_no
from pytest_ktinterf.server.discover import is_this_host, url_port
from pytest_ktinterf.system.cpu_quota import parse_fraction
from pytest_ktinterf.system.cpus import parse_cpu_list
from pytest_ktinterf.system.docker_engine import engine_is_local

BACKENDS = ("embedded", "process", "external", "docker")
RESIDENCIES = ("both", "alternate")  # of the same-session A/B servers


@dataclass(frozen=True)
class _Opt:
    name: str
    help: str
    default: str | None = None
    env: str | None = None


_OPTIONS: tuple[_Opt, ...] = (
    _Opt("backend", "server backend: embedded (default), process, external, docker", None),
    _Opt(
        "baseline-dir",
        "folder of this project's per-machine baseline files, committed with it (default baselines)",
        "baselines",
    ),
    _Opt(
        "baseline-file",
        "compare with this baseline file instead of the one matching this machine's fingerprint "
        "(a fingerprint that differs is an error naming the fields)",
    ),
    _Opt(
        "baseline-fail",
        "regression thresholds of the baseline gate: '10%%' for every metric, or per metric "
        "'decode:10%%,prefill:15%%' (default 10%%); an experiment condition's own gate table wins",
        "10%",
    ),
    _Opt(
        "baseline-sessions",
        "sessions a baseline file keeps (the newest; default 3) and that 'python -m "
        "pytest_ktinterf baseline' records back to back",
        "3",
    ),
    _Opt("url", "base URL of an already running OpenAI-compatible server (external backend)"),
    _Opt(
        "server-log",
        "log file of the --kt-url server (its stdout/stderr redirected), read for KT's own "
        "'Performance(T/s)' figures (default: a container's log stream when the server runs in one)",
    ),
    _Opt(
        "server-container",
        "the --kt-url server's container (name or id): for a published port (-p, Docker's proxy "
        "owns it) or a remote engine, where its port's owner does not show the server",
    ),
    _Opt(
        "server-cmd",
        "command line that starts the server (process backend); '{port}' is replaced by a "
        "free port and the server is then expected at http://127.0.0.1:{port}",
    ),
    _Opt(
        "docker-image",
        "image of the docker backend's server (default: the preset's image, else the local "
        "pytest-ktinterf/tools image with llama-server; never pulled)",
    ),
    _Opt(
        "docker-cmd",
        "command the server container runs; '{port}' is replaced by a free port on the engine's "
        "host network (default: the preset's command, else llama-server on the embedded model)",
    ),
    _Opt("docker-volumes", "volumes of the server container: 'HOST:CONTAINER[:ro|rw] ...'"),
    _Opt("docker-env", "environment of the server container: 'KEY=VALUE ...'"),
    _Opt("docker-gpus", "GPUs for the server container: all, or device ids '0,1' (default: none)"),
    _Opt("docker-shm-size", "shared memory of the server container, e.g. 16g (default: the preset's)"),
    _Opt(
        "preset",
        "a named server command line (KT's own flags; see python -m pytest_ktinterf presets): "
        "kt-v0.2, kt-sglang; used by the docker backend, or by the process backend without "
        "--kt-server-cmd",
    ),
    _Opt(
        "actors-in",
        "where the CPU and RAM actors run: host (this machine), docker (containers on the server's "
        "Docker engine, pinned with cpuset), or auto (default: docker when the server runs on a "
        "remote engine, DOCKER_HOST; else host)",
        "auto",
    ),
    _Opt("preset-args", "the preset's parameters: 'key=value ...' (model_path=/models/DeepSeek-V3 ...)"),
    _Opt("server-port", "port the --kt-server-cmd server listens on when the command has no {port}"),
    _Opt("llama-server", "llama-server binary for the embedded backend", env="KTINTERF_LLAMA_SERVER"),
    _Opt("model", "GGUF model for the embedded backend", env="KTINTERF_MODEL"),
    _Opt(
        "server-cpus",
        "cores the started server is pinned to, e.g. '1' or '0-3,8' (default: the last core); "
        "with --kt-url, the cores the server runs on where its process cannot be seen (another host)",
    ),
    _Opt("server-threads", "inference threads of the embedded server (default: one per pinned core)"),
    _Opt("server-cpu-quota", "share 0 < f <= 1 of its pinned cores' time a started server may use"),
    _Opt(
        "candidate-cmd",
        "same-session A/B: the candidate server's command line ('{port}' as for --kt-server-cmd), "
        "run alternately with the current server on its cores; default: the current server's own",
    ),
    _Opt(
        "candidate-cpu-quota",
        "same-session A/B: cap the candidate's cgroup at this share 0 < f <= 1 of its cores "
        "(0.9: a candidate about 10%% slower, to calibrate the gate)",
    ),
    _Opt(
        "candidate-residency",
        "same-session A/B: both (default: both servers resident, measured in turn) or alternate "
        "(only one resident at a time, each started for its trials: a box that holds one copy of "
        "its model; every switch costs a server start and a warm-up round)",
        "both",
    ),
    _Opt("parallel", "parallel slots of the embedded server, i.e. the most streams (default 4)", "4"),
    _Opt("ready-timeout", "seconds to wait for the server to become ready (default 180)", "180"),
    _Opt(
        "request-timeout",
        "seconds a probe request may wait for the server's next byte, its prefill included "
        "(default 300); raise it for long prompts on a slow CPU prefill",
        "300",
    ),
    _Opt("api", "endpoint the probe uses: chat (default) or completions", "chat"),
    _Opt("model-name", "model name sent in requests (default: first id from /v1/models)"),
    _Opt("prompt-tokens", "prompt length in tokens for every request (default 128)", "128"),
    _Opt("max-tokens", "tokens generated per request, EOS ignored (default 64)", "64"),
    _Opt("streams", "largest concurrency measured, 1..N (default 4)", "4"),
    _Opt("trials", "baseline/condition pairs per comparison (default 6)", "6"),
    _Opt("stress-ng", "stress-ng binary used by CPU actors", "stress-ng", env="KTINTERF_STRESS_NG"),
    _Opt("report-json", "where to write the JSON record of all measurements", ".ktinterf/report.json"),
    _Opt(
        "memory-reserve",
        "GiB of RAM no actor may take from the host's available memory (default: 5 percent of "
        "RAM, at least 1); only the overflow actors go past it",
    ),
    _Opt(
        "allow-host-overflow",
        "yes: let the host-overflow actor fill RAM past what is available even without swap "
        "(the OOM killer may act; the filler is its first victim)",
        "no",
    ),
    _Opt(
        "lock-timeout",
        "seconds an item waits for the machine lock held by another test or session before it "
        "fails naming the holder (default 3600)",
        "3600",
    ),
    _Opt(
        "max-pairs",
        "most pairs (or trials) an undecided experiment condition, uncontended figure or A/B "
        "candidate may take (overrides the files' design; default: theirs)",
    ),
)


# Switches (no value), in pytest-benchmark's style: --benchmark-save, --benchmark-compare ...
FLAGS: tuple[tuple[str, str], ...] = (
    ("baseline-save", "append this session to this machine's baseline file (made if missing)"),
    ("baseline-compare", "gate this session against this machine's baseline file: a regression fails"),
    ("baseline-update", "start this machine's baseline file over with this session (an accepted change)"),
    ("baseline-strict", "a missing baseline or an inconclusive gate verdict fails (default: skip / print)"),
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option on the command line and in the ini file."""
    group = parser.getgroup("ktinterf", "resource-interference experiments (pytest-ktinterf)")
    for name, text in FLAGS:
        group.addoption(f"--kt-{name}", dest="kt_" + name.replace("-", "_"), action="store_true", help=text)
    for opt in _OPTIONS:
        dest = "kt_" + opt.name.replace("-", "_")
        env_note = f" [env {opt.env}]" if opt.env else ""
        group.addoption(f"--kt-{opt.name}", dest=dest, default=None, help=opt.help + env_note)
        parser.addini(dest, help=opt.help.replace("%%", "%"), default=None)


@dataclass(frozen=True)
class Options:
    """Every setting the plugin uses, resolved and validated."""

    backend: str = "embedded"
    url: str | None = None
    server_log: str | None = None  # the external server's log file (--kt-server-log)
    server_container: str | None = None  # the external server's container (--kt-server-container)
    server_cmd: str | None = None
    server_port: int | None = None
    llama_server: str | None = None
    model: str | None = None
    server_cpus: list[int] = field(default_factory=list)
    server_threads: int | None = None
    server_cpu_quota: float | None = None
    candidate_cmd: str | None = None  # same-session A/B (experiment/candidate.py)
    candidate_cpu_quota: float | None = None
    candidate_residency: str = "both"  # or "alternate" (server/alternating.py)
    parallel: int = 4
    ready_timeout: float = 180.0
    request_timeout: float = 300.0
    api: str = "chat"
    model_name: str | None = None
    prompt_tokens: int = 128
    max_tokens: int = 64
    streams: int = 4
    trials: int = 6
    baseline: BaselineSettings = field(default_factory=lambda: BaselineSettings())
    stress_ng: str = "stress-ng"
    report_json: str | None = ".ktinterf/report.json"
    memory_reserve_gib: float | None = None
    allow_host_overflow: bool = False
    max_pairs: int | None = None
    docker_image: str | None = None
    docker_cmd: str | None = None
    docker_volumes: str | None = None
    docker_env: str | None = None
    docker_gpus: str | None = None
    docker_shm_size: str | None = None
    preset: str | None = None
    preset_args: str | None = None
    server_cpus_given: bool = False
    actors_in: str = "auto"
    lock_timeout: float = 3600.0

    @property
    def candidate(self) -> bool:
        """Whether a same-session A/B candidate was asked for (``--kt-candidate-*``)."""
        return self.candidate_cmd is not None or self.candidate_cpu_quota is not None


options_key = pytest.StashKey[Options]()  # where plugin.py keeps the resolved options


def _raw(config: pytest.Config, opt: _Opt) -> str | None:
    dest = "kt_" + opt.name.replace("-", "_")
    value: Any = config.getoption(dest, default=None)
    if value is None:
        value = config.getini(dest) or None
    if value is None and opt.env:
        value = os.environ.get(opt.env) or None
    if value is None:
        value = opt.default
    return None if value is None else str(value)


def _baseline(config: pytest.Config, raw: dict[str, str | None]) -> BaselineSettings:
    flag = {name: bool(config.getoption("kt_" + name.replace("-", "_"), default=False)) for name, _ in FLAGS}
    return BaselineSettings(
        save=flag["baseline-save"],
        compare=flag["baseline-compare"] or raw["baseline-file"] is not None,
        update=flag["baseline-update"],
        strict=flag["baseline-strict"],
        directory=raw["baseline-dir"] or "baselines",
        file=raw["baseline-file"],
        thresholds=parse_thresholds(raw["baseline-fail"] or "10%"),
        sessions=integer("baseline-sessions", raw["baseline-sessions"]) or 3,
    )


def from_config(config: pytest.Config) -> Options:
    """Resolve and validate all options from a pytest config."""
    raw = {opt.name: _raw(config, opt) for opt in _OPTIONS}
    url = parse_url(raw["url"])
    backend = raw["backend"] or (
        "external"
        if raw["url"]
        else "process"
        if raw["server-cmd"]
        else "docker"
        if raw["docker-image"] or raw["docker-cmd"] or raw["preset"]
        else "embedded"
    )
    if backend not in BACKENDS:
        raise KtInterfError(f"--kt-backend={backend!r} is unknown", f"use one of {', '.join(BACKENDS)}")
    if backend == "external" and not raw["url"]:
        raise KtInterfError("--kt-backend=external needs a URL", "pass --kt-url http://HOST:PORT")
    if backend == "process" and not raw["server-cmd"] and not raw["preset"]:
        raise KtInterfError(
            "--kt-backend=process needs a command",
            "pass --kt-server-cmd 'your server --port {port}' or --kt-preset NAME",
        )
    api = raw["api"] or "chat"
    if api not in ("chat", "completions"):
        raise KtInterfError(f"--kt-api={api!r} is unknown", "use chat or completions")
    cpus_text = raw["server-cpus"]
    remote_engine = (backend == "docker" and not engine_is_local()) or (  # its cores are not ours to check
        backend == "external" and url is not None and not is_this_host(url_port(url)[0])
    )
    cpus = (
        parse_cpu_list(cpus_text, check_available=not remote_engine)
        if cpus_text
        else [max(os.sched_getaffinity(0))]
    )
    candidate = raw["candidate-cmd"] is not None or raw["candidate-cpu-quota"] is not None
    if candidate and backend not in ("embedded", "process"):
        raise KtInterfError(
            f"--kt-candidate-* needs a server the plugin starts; --kt-backend={backend} is not one",
            "use the embedded or process backend (--kt-server-cmd) for same-session A/B",
        )
    residency = choice("candidate-residency", raw["candidate-residency"], RESIDENCIES)
    if residency != "both" and not candidate:
        raise KtInterfError(
            f"--kt-candidate-residency={residency} needs a candidate server",
            "add --kt-candidate-cmd 'new-server --port {port}' (or --kt-candidate-cpu-quota to calibrate)",
        )
    if residency == "alternate" and config.getoption("numprocesses", default=None):
        raise KtInterfError(  # each xdist worker would hold a server of its own: two resident
            "--kt-candidate-residency=alternate keeps one server resident; xdist workers start one each",
            "run the A/B without -n",
        )
    baseline = _baseline(config, raw)
    if candidate and (baseline.save or baseline.update):
        raise KtInterfError(
            "--kt-candidate-* measures two servers; a baseline session records one",
            "record the baseline in a session of its own, without --kt-candidate-*",
        )
    return Options(
        backend=backend,
        url=url,
        server_log=raw["server-log"],
        server_container=raw["server-container"],
        server_cmd=raw["server-cmd"],
        server_port=integer("server-port", raw["server-port"], maximum=65535),
        llama_server=raw["llama-server"],
        model=raw["model"],
        server_cpus=cpus,
        server_threads=integer("server-threads", raw["server-threads"]),
        server_cpu_quota=parse_fraction(raw["server-cpu-quota"], backend),
        candidate_cmd=raw["candidate-cmd"],
        candidate_cpu_quota=parse_fraction(raw["candidate-cpu-quota"], backend, "--kt-candidate-cpu-quota"),
        candidate_residency=residency,
        parallel=integer("parallel", raw["parallel"]) or 4,
        ready_timeout=float(integer("ready-timeout", raw["ready-timeout"]) or 180),
        request_timeout=float(integer("request-timeout", raw["request-timeout"]) or 300),
        api=api,
        model_name=raw["model-name"],
        prompt_tokens=integer("prompt-tokens", raw["prompt-tokens"], minimum=8) or 128,
        max_tokens=integer("max-tokens", raw["max-tokens"], minimum=4) or 64,
        streams=integer("streams", raw["streams"]) or 4,
        trials=integer("trials", raw["trials"], minimum=3) or 6,
        baseline=baseline,
        stress_ng=raw["stress-ng"] or "stress-ng",
        report_json=raw["report-json"] or None,
        memory_reserve_gib=gib("memory-reserve", raw["memory-reserve"]),
        allow_host_overflow=yes_no("allow-host-overflow", raw["allow-host-overflow"]),
        max_pairs=integer("max-pairs", raw["max-pairs"], minimum=6),
        docker_image=raw["docker-image"],
        docker_cmd=raw["docker-cmd"],
        docker_volumes=raw["docker-volumes"],
        docker_env=raw["docker-env"],
        docker_gpus=raw["docker-gpus"],
        docker_shm_size=raw["docker-shm-size"],
        preset=raw["preset"],
        preset_args=raw["preset-args"],
        server_cpus_given=cpus_text is not None,
        actors_in=choice("actors-in", raw["actors-in"], ("auto", "host", "docker")),
        lock_timeout=float(integer("lock-timeout", raw["lock-timeout"]) or 3600),
    )


def given_on_command_line(config: pytest.Config) -> bool:
    """Whether any ``--kt-*`` option was given (command line or addopts): the user asked for us."""
    return any(
        config.getoption("kt_" + opt.name.replace("-", "_"), default=None) is not None for opt in _OPTIONS
    ) or any(config.getoption("kt_" + name.replace("-", "_"), default=False) for name, _ in FLAGS)
