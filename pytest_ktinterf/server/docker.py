"""The ``docker`` backend: the server in a container, on a local or remote Docker engine.

Most KT users run KT's official image, so this backend is how the report's setup is reproduced:
a container with the user's image and command (or a KT preset, ``server/presets.py``), model
directories as volumes, GPUs as device requests, ``shm_size``, pinned with ``cpuset_cpus`` and on
the host's network (no bridge: the server is reached at ``127.0.0.1:{port}`` on the engine's
host). Like testcontainers, the container is a context manager with a wait strategy: it is
ready when ``/health`` (or ``/v1/models``) answers, it fails fast with the log tail when the
container exits, and it is always stopped and removed on the way out. Every container is
labelled (``docker_engine.labels``) so that a killed session's leftovers are reaped by the next.

The container is created with a memory limit far above the host's RAM (in effect none) so the
contained-overflow actor can later lower it through the engine's API (``mem_limit``), on a remote
engine too, and lift it again (:class:`ContainerMemory`).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.option_values import words
from pytest_ktinterf.server.base import Say, ServerHandle, free_port, wait_ready
from pytest_ktinterf.server.discover import container_tree
from pytest_ktinterf.server.embedded import llama_server_argv
from pytest_ktinterf.system import docker_engine
from pytest_ktinterf.system.assets import EmbeddedAssets
from pytest_ktinterf.system.cgroups import drop_file_cache
from pytest_ktinterf.system.cpu_quota import PERIOD_US, quota_us
from pytest_ktinterf.system.cpus import format_cpu_list, parse_cpu_list
from pytest_ktinterf.system.docker_engine import engine_is_local, labels
from pytest_ktinterf.system.image import LLAMA_SERVER_IN_IMAGE, MODELS_IN_IMAGE, default_tag


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start a server container (``{port}`` already substituted)."""

    image: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> {bind, mode}
    gpus: str | None = None  # None, "all", or device ids "0,1"
    shm_size: str | None = None
    cpuset_cpus: str | None = None
    workdir: str | None = None
    cpu_quota: float | None = None  # --kt-server-cpu-quota: the engine's cpu_quota per cpu_period


def parse_volumes(text: str | None, option: str = "--kt-docker-volumes") -> dict[str, dict[str, str]]:
    """``"HOST:CONTAINER[:ro|rw] ..."`` -> the SDK's volume mapping; host paths must exist locally."""
    volumes: dict[str, dict[str, str]] = {}
    for item in words(option, text):
        parts = item.split(":")
        if (
            len(parts) not in (2, 3)
            or not parts[0]
            or not parts[1]
            or (len(parts) == 3 and parts[2] not in ("ro", "rw"))
        ):
            raise KtInterfError(
                f"{option}: {item!r} is not HOST:CONTAINER[:ro|rw]",
                "write each volume like /data/models:/models:ro, separated by spaces",
            )
        if engine_is_local() and not Path(parts[0]).exists():
            raise KtInterfError(
                f"{option}: host path {parts[0]!r} does not exist",
                "give an existing directory with the model files",
            )
        volumes[parts[0]] = {"bind": parts[1], "mode": parts[2] if len(parts) == 3 else "rw"}
    return volumes


def parse_environment(text: str | None, option: str = "--kt-docker-env") -> dict[str, str]:
    """``"KEY=VALUE ..."`` -> a dict."""
    env: dict[str, str] = {}
    for item in words(option, text):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KtInterfError(
                f"{option}: {item!r} is not KEY=VALUE", "write variables like CUDA_VISIBLE_DEVICES=0"
            )
        env[key] = value
    return env


def device_requests(gpus: str | None) -> list[Any]:
    """``--gpus`` as the SDK's device requests: all GPUs, or the listed device ids."""
    if not gpus or gpus == "none":
        return []
    import docker.types

    if gpus == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    ids = [part.strip() for part in gpus.split(",") if part.strip()]
    return [docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]


@dataclass
class ContainerMemory:
    """A container's memory seen and limited through the engine's API (v1 or v2 cgroups).

    Implements what the contained-overflow actor needs (``server.base.LimitableMemory``). The
    limit is set with swap equal to memory, so anonymous memory stays in RAM and only file pages
    (the mmapped weights) are evicted -- the same overflow as a cgroup limit on a process.
    """

    container: Any
    unlimited: int  # what "no limit" is for this container: twice the engine's RAM
    version: str = "docker"

    @property
    def path(self) -> str:
        return f"docker:{self.container.name}"

    def _memory(self) -> dict[str, Any]:
        stats = self.container.stats(stream=False, one_shot=True)
        return dict(stats.get("memory_stats") or {})

    def _stat(self, *keys: str) -> int:
        stat = self._memory().get("stats") or {}
        for key in keys:
            if key in stat:
                return int(stat[key])
        return 0

    def pids(self) -> list[int]:
        self.container.reload()
        pid = int(self.container.attrs.get("State", {}).get("Pid") or 0)
        return [pid] if self.container.status == "running" and pid else []

    def usage(self) -> int:
        return int(self._memory().get("usage", 0))

    def anon(self) -> int:
        return self._stat("rss", "anon")  # v1, v2

    def file_pages(self) -> int:
        return self._stat("cache", "file")

    def major_faults(self) -> int:
        return self._stat("total_pgmajfault", "pgmajfault")

    def set_limit(self, limit: int) -> None:
        import docker.errors

        try:
            self.container.update(mem_limit=limit, memswap_limit=limit)
        except docker.errors.APIError as exc:
            raise KtInterfError(
                f"the engine refused a {limit / 2**20:.0f} MiB memory limit on {self.container.name} "
                f"({exc.explanation or exc}): it is below what the kernel can evict (anonymous "
                f"memory {self.anon() / 2**20:.0f} MiB)",
                "raise the limit or the working-set fraction of the contained overflow",
            ) from exc

    def unlimit(self) -> None:
        self.container.update(mem_limit=self.unlimited, memswap_limit=2 * self.unlimited)


def _exited(container: Any, pump: docker_engine.LogPump) -> str | None:
    """Why the container is gone (its log drained into the pump's file first), or None."""
    import docker.errors

    try:
        container.reload()
    except docker.errors.NotFound:
        return "container was removed"
    if container.status in ("exited", "dead"):
        return exit_reason(container.attrs["State"].get("ExitCode"), pump.tail(drain=True))
    return None


SIGILL_EXIT = 128 + 4


def exit_reason(code: int | None, log_tail: str) -> str:
    """Why the container ended, with KT's known ISA trap named (KT issues #484, #520)."""
    if code == SIGILL_EXIT or "Illegal instruction" in log_tail:
        return (
            f"container exited with code {code}, an illegal instruction: the image was built for "
            "a wider instruction set than this CPU has (KT's -AVX512 images on an AVX2 CPU, KT "
            "issues #484, #520); pick the image tag for this CPU, e.g. "
            "--kt-docker-image approachingai/ktransformers:v0.2.4post1-AVX2,"
        )
    return f"container exited with code {code}"


def _require_image(client: Any, image: str) -> None:
    """We never pull: a registry may be unreachable, and pulling is the user's decision."""
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        if image.startswith("pytest-ktinterf/"):
            fix = "build it on this engine: python -m pytest_ktinterf docker"
        else:
            fix = f"docker pull {image} (or docker load -i IMAGE.tar) on the engine first"
        raise KtInterfError(
            f"image {image!r} is not on the Docker engine at {docker_engine.engine_address()}", fix
        ) from None


@contextlib.contextmanager
def run_container(
    spec: ContainerSpec,
    *,
    port: int,
    log_dir: Path,
    ready_timeout: float,
    description: str,
    say: Say | None = None,
) -> Iterator[ServerHandle]:
    """Start ``spec``, wait until ``127.0.0.1:port`` is ready, yield the handle; always remove it."""
    client = docker_engine.connect()
    _require_image(client, spec.image)
    info = client.info()
    unlimited = 2 * int(info.get("MemTotal") or psutil.virtual_memory().total)
    pinned = parse_cpu_list(spec.cpuset_cpus, check_available=False) if spec.cpuset_cpus else None
    cores = len(pinned) if pinned else int(info.get("NCPU") or 1)  # unpinned: all the engine's
    quota = quota_us(spec.cpu_quota, cores) if spec.cpu_quota else None
    capped = f", CPU capped at {spec.cpu_quota:g} of {cores} core(s), {quota}/{PERIOD_US} us" if quota else ""
    if say is not None:
        say(f"starting {description} in a container ({spec.image}){capped}")
    container = client.containers.create(
        spec.image,
        # The command replaces the image's entrypoint: KT's images idle in ``tail -f /dev/null``.
        entrypoint=spec.command[:1],
        command=spec.command[1:],
        working_dir=spec.workdir,
        environment=spec.environment,
        volumes=spec.volumes,
        device_requests=device_requests(spec.gpus),
        shm_size=spec.shm_size,
        cpuset_cpus=spec.cpuset_cpus,
        cpu_period=PERIOD_US if quota else None,
        cpu_quota=quota,
        mem_limit=unlimited,
        memswap_limit=2 * unlimited,
        network_mode="host",
        labels=labels("server", port=str(port)),
        name=f"ktinterf-server-{psutil.Process().pid}-{port}",
        detach=True,
    )
    with docker_engine.removing(container):
        try:
            container.start()
        except Exception as exc:
            raise KtInterfError(
                f"the engine could not start {description} ({exc})",
                "check the image, command, volumes and --kt-docker-gpus (a GPU request needs the "
                "NVIDIA container toolkit on the engine)",
            ) from exc
        pump = docker_engine.LogPump(container, log_dir / "server-docker.log")
        local = engine_is_local()
        url = f"http://127.0.0.1:{port}" if local else _remote_url(port)
        wait_ready(
            url,
            ready_timeout,
            say=say,
            what=description,
            died=lambda: _exited(container, pump),
            tail=pump.tail,
        )
        handle = ServerHandle(
            url=url,
            backend="docker",
            description=description,
            cgroup=ContainerMemory(container, unlimited),
            tree=container_tree(container) if local else None,
            tail=pump.tail,
            pinned=pinned,
            log=pump.path,
        )
        handle.meta.update(
            {
                "container": container.name,
                "image": spec.image,
                "argv": spec.command,
                "memory_cgroup": f"docker:{container.name} (limited through the engine's API)",
                **({"cpu_quota": spec.cpu_quota, "cpu_cgroup": f"docker:{container.name}"} if quota else {}),
            }
        )
        try:
            yield handle
        finally:
            with contextlib.suppress(Exception):
                container.stop(timeout=10)
            pump.join()


def _remote_url(port: int) -> str:
    """A remote engine's server is reached at the engine's host name (host networking)."""
    address = docker_engine.engine_address()
    host = address.split("://", 1)[-1].rsplit("@", 1)[-1].split(":", 1)[0].strip("[]")
    return f"http://{host}:{port}"


@contextlib.contextmanager
def docker_server(
    *,
    image: str | None,
    command: str | Sequence[str] | None,
    assets: EmbeddedAssets | None,
    cpus: Sequence[int] | None,
    threads: int | None,
    parallel: int,
    context_per_slot: int,
    log_dir: Path,
    ready_timeout: float,
    environment: Mapping[str, str] | None = None,
    volumes: Mapping[str, dict[str, str]] | None = None,
    gpus: str | None = None,
    shm_size: str | None = None,
    workdir: str | None = None,
    say: Say | None = None,
    port: int | None = None,
    cpu_quota: float | None = None,
) -> Iterator[ServerHandle]:
    """The docker backend: the user's image and command, or llama-server from the tools image.

    With no command, the tools image's llama-server serves the embedded model from a private
    copy mounted at /models (the container's cgroup is then charged for the weights, which
    contained overflow needs); ``command`` may hold ``{port}``.
    """
    port = port or free_port()
    cpuset = format_cpu_list(list(cpus)) if cpus else None
    volumes = dict(volumes or {})
    private_dir: Path | None = None
    if command is None:
        if assets is None:
            raise KtInterfError(
                "the docker backend needs a command when the embedded model is unavailable",
                "pass --kt-docker-cmd or --kt-preset, or run python -m pytest_ktinterf fetch",
            )
        if not engine_is_local():
            raise KtInterfError(
                f"the default llama-server container mounts the embedded model from this host, and the "
                f"engine at {docker_engine.engine_address()} is remote",
                "give --kt-docker-cmd (or --kt-preset) and --kt-docker-volumes with paths on the "
                "engine's host",
            )
        private_dir = log_dir / f"docker-weights-{port}"
        private_dir.mkdir(parents=True, exist_ok=True)
        private = private_dir / assets.model.name
        shutil.copyfile(assets.model, private)
        drop_file_cache(private)
        volumes[str(private_dir)] = {"bind": MODELS_IN_IMAGE, "mode": "ro"}
        threads = threads or (len(cpus) if cpus else 1)
        inside = EmbeddedAssets(Path(LLAMA_SERVER_IN_IMAGE), Path(MODELS_IN_IMAGE, assets.model.name))
        argv = llama_server_argv(
            inside, port=port, threads=threads, parallel=parallel, context_per_slot=context_per_slot
        )
        description = f"llama-server container ({assets.model.name})"
    else:
        parts = words("--kt-docker-cmd", command) if isinstance(command, str) else list(command)
        if not parts:
            raise KtInterfError("--kt-docker-cmd is empty", "give the command the container runs")
        argv = [part.replace("{port}", str(port)) for part in parts]
        description = f"server container '{Path(argv[0]).name}'"
    spec = ContainerSpec(
        image=image or default_tag(),
        command=argv,
        environment=dict(environment or {}),
        volumes=volumes,
        gpus=gpus,
        shm_size=shm_size,
        cpuset_cpus=cpuset,
        workdir=workdir,
        cpu_quota=cpu_quota,
    )
    try:
        with run_container(
            spec, port=port, log_dir=log_dir, ready_timeout=ready_timeout, description=description, say=say
        ) as handle:
            handle.meta.update({"threads": threads, "parallel": parallel})
            if assets is not None and command is None:
                handle.meta["model"] = assets.model.name
            yield handle
    finally:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)
