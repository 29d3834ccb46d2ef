"""A local image with no registry: llama-server and stress-ng with their shared libraries.

Where no registry can be reached (CI here, air-gapped GPU boxes), ``docker import`` of a root
filesystem we assemble ourselves is the one way to get an image. It holds:

* the embedded llama-server binary (``python -m pytest_ktinterf fetch``) -- the docker backend's
  default server, the same program the embedded backend runs, so the two can be compared;
* stress-ng, when installed -- the CPU and RAM actors run from it when they must live on the
  server's engine (a remote ``DOCKER_HOST``, ``actors/container.py``);
* ``cat`` -- to read the engine host's ``/proc/meminfo`` for the RAM actors' safety rule;
* every shared library ``ldd`` names for them, at the same paths.

The model is *not* baked in: it is mounted as a volume, like KT's model directories, so the
server's cgroup is charged for the weights when it reads them (contained overflow needs that).
The tag is a hash of the contents, so building twice is a no-op and a changed binary gets a new
tag.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.docker_engine import LABEL

REPOSITORY = "pytest-ktinterf/tools"
LLAMA_SERVER_IN_IMAGE = "/usr/local/bin/llama-server"
STRESS_NG_IN_IMAGE = "/usr/bin/stress-ng"
CAT_IN_IMAGE = "/bin/cat"
TOOLS_LABEL = f"{LABEL}.tools"
MODELS_IN_IMAGE = "/models"


@dataclass(frozen=True)
class ImageContents:
    """Host files and where they go in the image."""

    files: dict[str, Path]  # path in the image -> file on the host
    tools: tuple[str, ...]

    def digest(self) -> str:
        sha = hashlib.sha256()
        for inside in sorted(self.files):
            sha.update(inside.encode())
            sha.update(self.files[inside].read_bytes())
        return sha.hexdigest()[:16]


_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def shared_libraries(binary: Path) -> list[Path]:
    """The libraries (and the loader) ``ldd`` resolves for ``binary``; [] for a static one."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KtInterfError(
            f"cannot run ldd on {binary} ({exc})", "install libc-bin (it provides ldd)"
        ) from exc
    if "not a dynamic executable" in out.stdout + out.stderr:
        return []
    if out.returncode != 0:
        raise KtInterfError(f"ldd {binary} failed: {out.stderr.strip()[:200]}", "check the binary")
    missing = [row.split()[0] for row in out.stdout.splitlines() if "not found" in row]
    if missing:
        raise KtInterfError(
            f"{binary} needs libraries this host lacks: {', '.join(missing)}",
            "install them, or rebuild the binary (python -m pytest_ktinterf fetch)",
        )
    return [Path(match.group(1)) for match in map(_LDD_LINE.search, out.stdout.splitlines()) if match]


def contents(llama_server: Path, stress_ng: Path | None) -> ImageContents:
    """What the image holds: the binaries at fixed paths, their libraries where ldd found them."""
    files: dict[str, Path] = {LLAMA_SERVER_IN_IMAGE: llama_server}
    tools = ["llama-server"]
    if stress_ng is not None:
        files[STRESS_NG_IN_IMAGE] = stress_ng
        tools.append("stress-ng")
    cat = shutil.which("cat")
    if cat is not None:
        files[CAT_IN_IMAGE] = Path(cat)
        tools.append("cat")
    for binary in list(files.values()):
        for lib in shared_libraries(binary):
            files[str(lib)] = lib
    return ImageContents(files=files, tools=tuple(tools))


def _rootfs_tar(found: ImageContents) -> bytes:
    """A tar of the root filesystem: directories, the files (symlinks resolved), /tmp."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dirs = {"tmp", "etc", "proc", "sys", "dev", MODELS_IN_IMAGE.strip("/")}
        for inside in found.files:
            parts = Path(inside.lstrip("/")).parts[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        for name in sorted(dirs):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
        for inside, host in sorted(found.files.items()):
            real = host.resolve()
            info = tar.gettarinfo(str(real), arcname=inside.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(real, "rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def find_image(client: Any, tag: str) -> Any | None:
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def build(client: Any, llama_server: Path, stress_ng: Path | None, say: Any = print) -> str:
    """Import the tools image into ``client``'s engine unless it is there already; its tag."""
    found = contents(llama_server, stress_ng)
    tag = f"{REPOSITORY}:{found.digest()}"
    if find_image(client, tag) is not None:
        say(f"image {tag} is already on the engine ({', '.join(found.tools)})")
        return tag
    say(f"assembling a root filesystem for {tag}: {', '.join(found.tools)} and {len(found.files)} files")
    data = _rootfs_tar(found)
    say(f"importing {len(data) / 2**20:.0f} MiB into the engine (docker import, no registry)")
    repository, _, version = tag.partition(":")
    changes = [f'LABEL {TOOLS_LABEL}="{",".join(found.tools)}"', "WORKDIR /tmp"]
    client.api.import_image_from_data(data, repository=repository, tag=version, changes=changes)
    client.api.tag(tag, repository, "latest")
    if find_image(client, tag) is None:
        raise KtInterfError(
            f"docker import reported no error but {tag} is not on the engine", "see dockerd's log"
        )
    return tag


def image_tools(client: Any, tag: str) -> tuple[str, ...] | None:
    """The tools an image of ours holds (from its label); None when the engine lacks the image."""
    found = find_image(client, tag)
    if found is None:
        return None
    return tuple(tool for tool in (found.labels or {}).get(TOOLS_LABEL, "").split(",") if tool)


def default_tag() -> str:
    """The tag the docker backend uses when none is given: the newest import."""
    return f"{REPOSITORY}:latest"


def which_stress_ng(option: str = "stress-ng") -> Path | None:
    found = shutil.which(option)
    return Path(found) if found else None
