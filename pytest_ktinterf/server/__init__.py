"""Server backends behind one entry point, :func:`open_server`."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from collections.abc import Iterator
from pathlib import Path

from pytest_ktinterf.option_values import words
from pytest_ktinterf.options import Options
from pytest_ktinterf.server.base import Say, ServerHandle, free_port
from pytest_ktinterf.server.embedded import embedded_server
from pytest_ktinterf.server.external import external_server
from pytest_ktinterf.server.process import process_server
from pytest_ktinterf.system import assets

__all__ = ["ServerHandle", "candidate_options", "open_server"]


def candidate_options(options: Options) -> Options:
    """The options that start the same-session A/B candidate: the current server's, unless given.

    ``--kt-candidate-cmd`` makes it a process-backend server of that command; otherwise it is
    the current server started again. Either way it is pinned to the same cores (the arms take
    turns on them) and capped by ``--kt-candidate-cpu-quota`` alone (not the current's cap).
    """
    if options.candidate_cmd is not None:
        return dataclasses.replace(
            options,
            backend="process",
            server_cmd=options.candidate_cmd,
            server_port=None,
            preset=None,
            server_cpu_quota=options.candidate_cpu_quota,
        )
    return dataclasses.replace(options, server_cpu_quota=options.candidate_cpu_quota)


@contextlib.contextmanager
def open_server(options: Options, log_dir: Path, say: Say | None = None) -> Iterator[ServerHandle]:
    """Bring up (or connect to) the server the options describe; tear it down on exit."""
    if options.backend == "external":
        assert options.url is not None
        yield external_server(
            options.url,
            log_dir=log_dir,
            declared_cpus=options.server_cpus if options.server_cpus_given else None,
            log_file=Path(options.server_log) if options.server_log else None,
            container=options.server_container,
            say=say,
        )
    elif options.backend == "docker":
        with _docker(options, log_dir, say) as handle:
            yield handle
    elif options.backend == "process":
        with process_server(
            options.server_cmd or _preset_command(options),
            port=options.server_port,
            cpus=options.server_cpus,
            log_dir=log_dir,
            ready_timeout=options.ready_timeout,
            say=say,
            cpu_quota=options.server_cpu_quota,
        ) as handle:
            yield handle
    else:
        found = assets.resolve(options.llama_server, options.model)
        with embedded_server(
            found,
            cpus=options.server_cpus,
            threads=options.server_threads,
            parallel=options.parallel,
            context_per_slot=options.prompt_tokens + options.max_tokens + 64,
            log_dir=log_dir,
            ready_timeout=options.ready_timeout,
            say=say,
            cpu_quota=options.server_cpu_quota,
        ) as handle:
            yield handle


def _preset_command(options: Options, pinned: bool = True, port: str = "{port}") -> str:
    """The preset's command line as one string, ``{port}`` left for the backend to fill.

    ``pinned``: the server will be pinned to ``--kt-server-cpus``, so its threads must fit.
    """
    from pytest_ktinterf.server import presets

    assert options.preset is not None
    values = presets.parse_preset_args(words(presets.ARGS_OPTION, options.preset_args))
    argv = presets.preset_command(
        options.preset,
        values,
        port=PORT_SLOT,
        max_tokens=options.max_tokens,
        cores=len(options.server_cpus) if pinned and options.server_cpus else None,
    )
    return " ".join(port if word == str(PORT_SLOT) else shlex.quote(word) for word in argv)


PORT_SLOT = 65531  # a number presets accept as a port; the argv word that is exactly it becomes "{port}"


@contextlib.contextmanager
def _docker(options: Options, log_dir: Path, say: Say | None) -> Iterator[ServerHandle]:
    """The docker backend with the options' image, command or preset, volumes, GPUs."""
    from pytest_ktinterf.server.docker import docker_server, parse_environment, parse_volumes
    from pytest_ktinterf.system.docker_engine import engine_is_local

    image, command, shm_size, gpus = (
        options.docker_image,
        options.docker_cmd,
        options.docker_shm_size,
        options.docker_gpus,
    )
    found = None
    workdir = None
    cpus = options.server_cpus if (engine_is_local() or options.server_cpus_given) else None
    if options.preset is not None:
        from pytest_ktinterf.server import presets

        preset = presets.PRESETS.get(options.preset)
        command = command or _preset_command(options, pinned=cpus is not None)
        if preset is not None:
            image = image or preset.image
            shm_size = shm_size or preset.shm_size
            gpus = gpus or ("all" if preset.needs_gpu else None)
            workdir = preset.workdir
    elif command is None:
        found = assets.resolve(options.llama_server, options.model)
    with docker_server(
        image=image,
        command=command,
        assets=found,
        cpus=cpus,
        threads=options.server_threads,
        parallel=options.parallel,
        context_per_slot=options.prompt_tokens + options.max_tokens + 64,
        log_dir=log_dir,
        ready_timeout=options.ready_timeout,
        environment=parse_environment(options.docker_env),
        volumes=parse_volumes(options.docker_volumes),
        gpus=gpus,
        shm_size=shm_size,
        workdir=workdir,
        say=say,
        port=free_port(),
        cpu_quota=options.server_cpu_quota,
    ) as handle:
        yield handle
