"""What makes two sessions comparable: the hardware, the cores, the backend and the workload.

A baseline is only a yardstick for sessions measured under the same conditions, so each
baseline file is keyed by a *fingerprint*: the facts that set the level of the figures it
holds. Those are the machine (CPU model, sockets, cores, RAM in whole GiB, NUMA nodes, GPUs
with their memory and driver), the cores the server and the actors were pinned to, the server
backend, and the workload (API, prompt and completion lengths, streams). Two sessions that
differ in any of these are different experiments, and comparing them would report the
difference in set-up as a regression; the file name (:attr:`Fingerprint.slug`) and an equality
check on the stored fingerprint keep them apart, and :meth:`Fingerprint.differences` says which
field differs when someone expected them to match.

Readings that vary from boot to boot or minute to minute (host name, kernel, load average,
free memory, current clock) are stored with each session (:func:`unstable`) but never keyed:
they explain an odd session, they do not make it a different experiment. RAM is rounded to
whole GiB for the same reason: the kernel's reservations move the exact total by a few MiB.

The server's identity (binary or image digest, model file hash, launch flags) is deliberately
*not* keyed. The question a baseline answers is "did this server get slower on this machine and
workload?"; gating an upgrade means comparing the new server against the old one under the
same fingerprint. Keying the identity would put every new build in a fresh, empty baseline and
the gate could never fire. The identity is recorded with each session instead and shown next to
the verdict ("server: X -> Y"), since it is what is being gated.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import hashlib
import json
import os
import platform
import re
import statistics
from dataclasses import dataclass
from typing import Any

import psutil

SLUG_PREFIX_MAX = 100  # characters before the hash: readable, and short enough for any file system
_MISSING = object()


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def _cpuinfo_field(rows: list[str], name: str) -> list[str]:
    pairs = (row.split(":", 1) for row in rows if ":" in row)
    return [value.strip() for key, value in pairs if key.strip() == name]


def _gpus() -> list[dict[str, Any]]:
    """Model, memory and driver of each NVIDIA GPU; [] when there is none or NVML cannot be used."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no device, a container without the library: no GPU to key on
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            found.append(
                {
                    "model": name.decode() if isinstance(name, bytes) else str(name),
                    "vram_mib": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20),
                    "driver": driver,
                }
            )
        return found
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def hardware() -> dict[str, Any]:
    """The keyed hardware facts of this machine (see the module docstring for what and why)."""
    rows = _cpuinfo()
    models = _cpuinfo_field(rows, "model name")
    logical = psutil.cpu_count() or 1
    nodes = glob.glob("/sys/devices/system/node/node[0-9]*")
    return {
        "cpu_model": models[0] if models else (platform.processor() or "unknown"),
        "sockets": len(set(_cpuinfo_field(rows, "physical id"))) or 1,
        "physical_cores": psutil.cpu_count(logical=False) or logical,
        "logical_cpus": logical,
        "ram_gib": round(psutil.virtual_memory().total / 2**30),
        "numa_nodes": len(nodes) or 1,  # no NUMA in sysfs: the machine is one node
        "gpus": _gpus(),
    }


def unstable() -> dict[str, Any]:
    """Readings stored with a session but never keyed: they explain an odd session, nothing more."""
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    mhz = [float(x) for x in _cpuinfo_field(_cpuinfo(), "cpu MHz") if _is_number(x)]
    if not mhz:
        try:
            mhz = [f.current for f in psutil.cpu_freq(percpu=True) or [] if f.current]
        except Exception:  # psutil raises on some virtual machines without cpufreq
            mhz = []
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "load_average": load,
        "mem_available_gib": round(psutil.virtual_memory().available / 2**30, 2),
        "cpu_mhz": round(statistics.fmean(mhz), 1) if mhz else None,
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def cpu_list(cores: list[int]) -> str:
    """``[0, 1, 3]`` as ``"0-1,3"``: the form people write in --kt-server-cpus."""
    ordered = sorted(set(cores))
    runs: list[str] = []
    for core in ordered:
        if runs and core - 1 in ordered:
            runs[-1] = f"{runs[-1].split('-')[0]}-{core}"
        else:
            runs.append(str(core))
    return ",".join(runs)


def _words(text: Any) -> str:
    """Lower-case words joined by dashes, with marketing marks and clock speeds dropped."""
    text = str(text).lower()
    text = re.sub(r"\((r|tm|c)\)|@.*$|\bcpu\b|\bprocessor\b", " ", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def canonical_json(value: Any) -> str:
    """One text per value (sorted keys, no spaces): what the slug's hash is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


@dataclass(frozen=True)
class Fingerprint:
    """The keyed facts of a set-up; equal fingerprints mean comparable sessions.

    ``keyed`` is normalised through JSON on creation, so a fingerprint read back from a file
    equals the one it was written from (tuples become lists, keys become strings).
    """

    keyed: dict[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyed", json.loads(canonical_json(self.keyed)))

    def __hash__(self) -> int:  # the generated hash would hash the dict and fail
        return hash(canonical_json(self.keyed))

    @property
    def digest(self) -> str:
        """8 hex digits of a sha256 over the canonical JSON: distinct set-ups get distinct files."""
        return hashlib.sha256(canonical_json(self.keyed).encode()).hexdigest()[:8]

    @property
    def slug(self) -> str:
        """A readable, file-name-safe stem: the main facts, then the digest that makes it unique.

        Only ``[a-z0-9-]``, at most ``SLUG_PREFIX_MAX + 9`` characters. The readable part may
        collide for set-ups that differ only in a fact it leaves out (the actor cores, the GPU
        driver); the digest does not.
        """
        keyed, workload = self.keyed, self.keyed.get("workload") or {}
        gpus = keyed.get("gpus") or []
        gpu = "nogpu"
        if gpus:
            model = str(gpus[0].get("model", "gpu") if isinstance(gpus[0], dict) else gpus[0])
            gpu = f"{len(gpus)}x-{_words(model.replace('NVIDIA', ''))[:24]}"
        server_cpus = str(keyed.get("server_cpus") or "")
        parts = [
            _words(keyed.get("cpu_model", "cpu"))[:40] or "cpu",
            f"{keyed.get('logical_cpus', 0)}cpu",
            f"{keyed.get('ram_gib', 0)}gib",
            gpu,
            _words(keyed.get("backend", ""))[:20],
            f"srv{len(_expand(server_cpus))}" if server_cpus else "",
            *(
                f"{letter}{_words(workload[key])[:12]}"
                for letter, key in (("p", "prompt_tokens"), ("d", "max_tokens"), ("s", "streams"))
                if isinstance(workload, dict) and key in workload
            ),
        ]
        prefix = re.sub(r"-+", "-", "-".join(p for p in parts if p)).strip("-")[:SLUG_PREFIX_MAX].strip("-")
        return f"{prefix}-{self.digest}" if prefix else self.digest

    def differences(self, other: Fingerprint) -> list[str]:
        """Every keyed field that differs, ``self`` being the baseline and ``other`` this session.

        Nested fields are named with dots (``workload.prompt_tokens``, ``gpus.0.driver``).
        """
        found: list[str] = []
        _diff(self.keyed, other.keyed, "", found)
        return found


def _expand(cpus: str) -> list[int]:
    """``"0-1,3"`` back to ``[0, 1, 3]`` (for the slug's count; anything unreadable counts as none)."""
    found: list[int] = []
    for part in cpus.split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            found.extend(range(int(first), int(last or first) + 1))
    return found


def _show(value: Any) -> str:
    return "absent" if value is _MISSING else repr(value)


def _diff(base: Any, here: Any, prefix: str, found: list[str]) -> None:
    if isinstance(base, dict) and isinstance(here, dict):
        for key in sorted(set(base) | set(here), key=str):
            _diff(base.get(key, _MISSING), here.get(key, _MISSING), f"{prefix}{key}.", found)
    elif isinstance(base, list) and isinstance(here, list) and len(base) == len(here):
        for index, (a, b) in enumerate(zip(base, here, strict=True)):
            _diff(a, b, f"{prefix}{index}.", found)
    elif base != here:
        found.append(f"{prefix.rstrip('.')}: {_show(base)} in the baseline, {_show(here)} here")


def make(
    *,
    backend: str,
    server_cpus: list[int],
    actor_cpus: list[int],
    workload: dict[str, Any],
    hardware_facts: dict[str, Any] | None = None,
) -> Fingerprint:
    """The fingerprint of a session: this machine's hardware (or ``hardware_facts``) plus its set-up.

    ``workload`` should hold what sets the figures' level: ``api``, ``prompt_tokens``,
    ``max_tokens`` and ``streams``; not the model's name (that is part of the server's identity).
    """
    facts = hardware() if hardware_facts is None else dict(hardware_facts)
    return Fingerprint(
        {
            **facts,
            "server_cpus": cpu_list(server_cpus),
            "actor_cpus": cpu_list(actor_cpus),
            "backend": backend,
            "workload": dict(workload),
        }
    )
