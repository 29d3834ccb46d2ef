"""What server this is: binary or image, model file, launch flags -- the thing an upgrade changes.

A baseline session records it and the gate shows it ("server: llama-server 3f2a... -> 9c1b...")
because that difference is what is being gated. It is never part of the fingerprint that picks
the baseline file (``baseline/fingerprint.py``): a KT upgrade must be compared with the old KT on
the same machine, not refused as "another machine".

Files are identified by a SHA-256. A KT model is hundreds of GB, so files over
``FULL_HASH_LIMIT`` are identified by their size and the hash of their first and last 16 MiB:
enough to tell two quantisations or two downloads apart in seconds, said as such in the record.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.server.base import ServerHandle

FULL_HASH_LIMIT = 4 * 2**30
SAMPLE = 16 * 2**20


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """The file's digest (cached by path, size and mtime: a session asks more than once)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(2**20), b""):
                sha.update(block)
            return f"sha256:{sha.hexdigest()}"
        sha.update(handle.read(SAMPLE))
        handle.seek(size - SAMPLE)
        sha.update(handle.read(SAMPLE))
    return f"sha256-ends:{sha.hexdigest()} size:{size}"


def file_digest(path: str | os.PathLike[str]) -> str | None:
    """``sha256:...`` of a readable file, None when it cannot be read (a remote path)."""
    with contextlib.suppress(OSError):
        stat = Path(path).stat()
        return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    return None


def _model_arg(argv: list[str]) -> str | None:
    """The model path in a llama.cpp or KT command line (``-m``, ``--model``, ``--model_path``)."""
    for flag in ("-m", "--model", "--model-path", "--model_path", "--gguf_path"):
        if flag in argv[:-1]:
            return argv[argv.index(flag) + 1]
    return None


def identify(handle: ServerHandle) -> dict[str, Any]:
    """The server's identity as far as this host can see it."""
    meta = handle.meta
    argv = [str(a) for a in meta.get("argv") or []] if isinstance(meta.get("argv"), list) else []
    found: dict[str, Any] = {
        "backend": handle.backend,
        "description": handle.description,
        **{k: meta[k] for k in ("image", "threads", "parallel", "model", "cpu_quota") if k in meta},
    }
    procs = handle.processes()
    if procs:
        with contextlib.suppress(psutil.Error):
            argv = argv or procs[0].cmdline()
            exe = procs[0].exe()
            found["binary"] = {"path": exe, "digest": file_digest(exe)}
    if argv:
        found["argv"] = argv
        model = _model_arg(argv)
        if model is not None:
            found["model_file"] = {"name": Path(model).name, "digest": file_digest(model)}
    return found


def describe(identity: dict[str, Any]) -> str:
    """One short line: backend, binary digest, model digest, quota (for 'server: A -> B')."""
    parts = [str(identity.get("backend", "?"))]
    for key in ("binary", "model_file"):
        entry = identity.get(key) or {}
        digest = str(entry.get("digest") or "")
        if digest:
            parts.append(f"{key.split('_')[0]} {digest.split(':', 1)[-1][:10]}")
    if identity.get("image"):
        parts.append(f"image {identity['image']}")
    if identity.get("cpu_quota"):
        parts.append(f"cpu quota {identity['cpu_quota']}")
    return ", ".join(parts)
