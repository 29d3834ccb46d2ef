"""GPU pressure: a co-located process that holds VRAM, or keeps the SMs busy at a duty cycle.

An LLM server that offloads to the GPU (KTransformers keeps attention and KV cache there) loses
throughput when another tenant takes device memory (smaller KV cache, fewer concurrent requests)
or compute time. These actors reproduce the two, each in a child process
(:mod:`pytest_ktinterf.actors.gpu_child`) started through :func:`~pytest_ktinterf.system.processes.spawn`
so it dies with the session and releases everything when its group is killed.

As with every actor, the pressure is *measured*, not assumed -- through NVML, independently of the
child's own word:

* memory: NVML's per-process ``usedGpuMemory`` for the child (its CUDA context included: that is
  memory the server loses too); inside containers NVML reports host pids that do not match ours,
  so the fallback is the device's used-memory increase since just before the start. ``start()``
  returns once at least 90% of the target is held.
* compute: NVML's utilisation (share of time a kernel was running) averaged over ``sample_s``
  must reach 80% of the duty cycle.

A background sampler keeps measuring while the actor lives, so ``check()`` judges the last
measurement window and ``evidence()`` the whole alive window (frozen at ``stop()``).

This module imports, and its actors construct, on machines with no GPU, no driver and neither
torch nor CuPy (CI is such a machine): :func:`gpu_unavailable_reason` says why, and ``start()``
raises it as a :class:`~pytest_ktinterf.errors.KtInterfError` before starting anything. The
decisions (free-VRAM refusal, duty validation, averaging: ``gpu_rules.py``; which NVML device:
``gpu_device.py``) are small pure functions so they are tested everywhere.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_ktinterf.actors import gpu_rules
from pytest_ktinterf.actors.base import Actor, wait_for
from pytest_ktinterf.actors.gpu_device import (
    NvmlDevice,
    Sampler,
    gpu_unavailable_reason,
    require_gpu,
    same_gpu,
)
from pytest_ktinterf.actors.gpu_rules import GIB, HOLD_FRACTION, MARGIN_MIB, MIB, UTIL_FRACTION
from pytest_ktinterf.datafile import remove_with_temporaries
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.processes import Child, spawn, terminate

__all__ = ["GpuCompute", "GpuMemoryHog", "gpu_unavailable_reason"]

SAFETY_TIMEOUT_S = 3600.0  # a leftover that escaped every reaper still ends on its own
CHILD_MODULE = "pytest_ktinterf.actors.gpu_child"


@dataclass(kw_only=True)
class _GpuActor(Actor):
    """Shared plumbing: availability, the child process, its ready file, the sampler."""

    device: int = 0
    log_dir: Path = Path(".ktinterf/logs")
    start_timeout_s: float = 120.0
    backend: str = "auto"  # "auto", "torch" or "cupy"
    safety_timeout_s: float = SAFETY_TIMEOUT_S
    sample_interval_s: float = 0.1
    child: Child | None = None
    _nvml: NvmlDevice | None = field(default=None, init=False, repr=False)
    _ready_path: Path | None = field(default=None, init=False, repr=False)
    _ready: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _sampler: Sampler | None = field(default=None, init=False, repr=False)
    _established_at: float | None = field(default=None, init=False, repr=False)
    _last_check_at: float | None = field(default=None, init=False, repr=False)

    kind = "gpu"
    unit = ""

    def _child_args(self) -> list[str]:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        assert self._ready_path is not None
        return [
            sys.executable, "-m", CHILD_MODULE, *self._child_args(),
            "--device", str(self.device),
            "--backend", self.backend,
            "--max-seconds", str(self.safety_timeout_s),
            "--ready-file", str(self._ready_path),
        ]  # fmt: skip

    def _open(self) -> NvmlDevice:
        require_gpu(self.name)
        if self.backend not in ("auto", "torch", "cupy"):
            raise KtInterfError(
                f"{self.name}: unknown GPU backend {self.backend!r}", "pass auto, torch or cupy"
            )
        self._nvml = NvmlDevice(self.device)
        return self._nvml

    def _spawn(self) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._ready_path = self.log_dir / f"actor-{self.name}-{uuid.uuid4().hex[:8]}.ready"
        env = {**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "PYTHONUNBUFFERED": "1"}
        self.child = spawn(
            self._argv(), name=self.name, log_path=self.log_dir / f"actor-{self.name}.log", env=env
        )
        return self.child

    def _child_gone(self, when: str) -> KtInterfError:
        assert self.child is not None
        return KtInterfError(
            f"{self.name} child exited with code {self.child.popen.returncode} {when}",
            "see the child's log below (a CUDA or framework error, or another process took the GPU)",
            detail=self.child.log_tail(),
        )

    def _poll_ready(self) -> bool:
        """True once the child has written its ready record; raises if it died first."""
        assert self.child is not None and self._ready_path is not None
        if self._ready is None:
            try:
                self._ready = json.loads(self._ready_path.read_text())
            except (OSError, ValueError):
                if not self.child.alive():
                    raise self._child_gone("before it was ready") from None
                return False
            assert self._nvml is not None
            if same_gpu(self._ready, self._nvml.identity()) is False:
                raise KtInterfError(
                    f"{self.name}: the child's GPU ({self._ready}) is not NVML's GPU {self.device} "
                    f"({self._nvml.identity()}), so its pressure cannot be measured",
                    "check CUDA_VISIBLE_DEVICES: the device index must name the same GPU for CUDA "
                    "(in PCI bus order) and for nvidia-smi",
                )
        if not self.child.alive():
            raise self._child_gone("while setting up its pressure")
        return True

    def _start_sampler(self, read: Callable[[], float]) -> None:
        if self._sampler is None:
            self._sampler = Sampler(read, self.sample_interval_s).start()

    def _require_alive(self) -> None:
        if self.child is None or not self.child.alive():
            if self.child is None:
                raise KtInterfError(f"{self.name} was never started", "start the actor first")
            raise self._child_gone("during the measurement window")

    def _window_values(self) -> list[float]:
        """Samples since the last check (or the start), at least the last ``sample_s`` of them."""
        assert self._sampler is not None and self._established_at is not None
        since = self._last_check_at if self._last_check_at is not None else self._established_at
        now = time.monotonic()
        self._last_check_at = now
        return gpu_rules.window_values(self._sampler.samples, since, self._min_window_s(), now)

    def _min_window_s(self) -> float:
        return 0.0

    def _achieved_now(self) -> float:
        raise NotImplementedError

    def achieved(self) -> float:
        """The evidence figure: frozen at stop, 0.0 when the pressure was never established."""
        return float(self.evidence()["achieved"])

    def _target(self) -> float:
        raise NotImplementedError

    def _live_evidence(self) -> dict[str, Any]:
        established = self._sampler is not None and self._established_at is not None
        return {
            "name": self.name,
            "kind": self.kind,
            "device": self.device,
            "target": self._target(),
            "achieved": self._achieved_now() if established else 0.0,
            "unit": self.unit,
            "backend": (self._ready or {}).get("backend"),
        }

    def _pressure_alive(self) -> bool:
        """Established: from then on the samples are the pressure's record, frozen at stop.

        Whatever the child's state: a child that died in the window shows in the samples.
        """
        return self._sampler is not None and self._established_at is not None

    def _settle_evidence(self) -> None:
        """Stop sampling first: the frozen record holds every sample of the alive window, none of the kill."""
        assert self._sampler is not None
        self._sampler.stop()

    def _stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()  # before the kill, so the dying child is never sampled
        if self.child is not None:
            terminate(self.child)
        if self._ready_path is not None:
            remove_with_temporaries(self._ready_path)  # the child may have been killed mid-write


@dataclass(kw_only=True)
class GpuMemoryHog(_GpuActor):
    """Holds ``gib`` GiB of plain device memory on GPU ``device`` until stopped."""

    gib: float
    margin_mib: float = MARGIN_MIB
    name: str = "gpu-memory"
    _target_bytes: int = field(default=0, init=False, repr=False)
    _used_before: int = field(default=0, init=False, repr=False)
    _source: str = field(default="", init=False, repr=False)

    kind = "gpu-memory"
    unit = "MiB"

    def _child_args(self) -> list[str]:
        return ["memory", "--bytes", str(self._target_bytes)]

    def _target(self) -> float:
        return self.gib * GIB / MIB

    def held_bytes(self) -> int:
        """What the child holds now: NVML per-process, else the device's used-memory increase."""
        assert self._nvml is not None and self.child is not None
        processes = self._nvml.processes()
        if processes is not None:
            pids = {proc.pid for proc in self.child.tree()} or {self.child.pid}
            mine = gpu_rules.process_memory(processes, pids)
            if mine is not None:
                self._source = "NVML per-process"
                return mine
        _, used = self._nvml.memory()
        self._source = "device used-memory increase"
        return max(0, used - self._used_before)

    def _start(self) -> None:
        gpu_rules.validate_gib(self.gib, self.device)
        nvml = self._open()
        free, self._used_before = nvml.memory()
        self._target_bytes = gpu_rules.check_vram_request(
            self.gib, free, device=self.device, margin_mib=self.margin_mib
        )
        self._spawn()

        def probe() -> tuple[bool, str]:
            if not self._poll_ready():
                return False, "the child still setting up (importing its framework, allocating)"
            held = self.held_bytes()
            measured = f"{held / MIB:.0f} MiB held ({self._source})"
            return gpu_rules.memory_reached(held, self._target_bytes), measured

        wait_for(
            probe,
            timeout_s=self.start_timeout_s,
            asked=(
                f"{self.name} asked for {self.gib:g} GiB ({self._target_bytes / MIB:.0f} MiB) on GPU "
                f"{self.device}, >= {HOLD_FRACTION:.0%} of it held"
            ),
            fix="see the child's log below; another process may be allocating or freeing on this GPU",
            detail=lambda: self.child.log_tail() if self.child else "",
        )
        self._established_at = time.monotonic()
        self._start_sampler(lambda: float(self.held_bytes()))

    def _achieved_now(self) -> float:
        """The least held since established (MiB): pressure is only as strong as its weakest moment."""
        assert self._sampler is not None and self._established_at is not None
        values = self._sampler.values_since(self._established_at)
        return min(values) / MIB if values else 0.0

    def check(self) -> None:
        self._require_alive()
        held_now = float(self.held_bytes())
        least = min([*self._window_values(), held_now])
        if self._sampler is not None:  # this reading is evidence too
            self._sampler.samples.append((time.monotonic(), held_now))
        if not gpu_rules.memory_reached(least, self._target_bytes):
            raise KtInterfError(
                f"{self.name} weakened during the window: held as little as {least / MIB:.0f} MiB of "
                f"the {self._target_bytes / MIB:.0f} MiB asked on GPU {self.device} "
                f"(need >= {HOLD_FRACTION:.0%}; {self._source})",
                "the measurement is refused; check what else allocates or frees on this GPU",
                detail=self.child.log_tail() if self.child else "",
            )

    def _live_evidence(self) -> dict[str, Any]:
        return {**super()._live_evidence(), "source": self._source or None}


@dataclass(kw_only=True)
class GpuCompute(_GpuActor):
    """Matrix products on GPU ``device`` for ``duty_percent`` of every ``period_ms``, until stopped."""

    duty_percent: int = 100
    matrix_size: int = 4096
    dtype: str = "float16"
    period_ms: float = 100.0
    sample_s: float = 1.5
    name: str = "gpu-compute"

    kind = "gpu-compute"
    unit = "%"

    def _child_args(self) -> list[str]:
        return [
            "compute",
            "--duty", str(self.duty_percent),
            "--size", str(self.matrix_size),
            "--dtype", self.dtype,
            "--period-ms", f"{self.period_ms:g}",
        ]  # fmt: skip

    def _target(self) -> float:
        return float(self.duty_percent)

    def _min_window_s(self) -> float:
        return self.sample_s

    def _start(self) -> None:
        gpu_rules.validate_duty(self.duty_percent)
        gpu_rules.validate_matrix_size(self.matrix_size)
        if self.dtype not in ("float16", "float32"):
            raise KtInterfError(f"{self.name}: dtype {self.dtype!r}", "pass float16 or float32")
        nvml = self._open()
        self._spawn()
        ready_at: list[float] = []

        def probe() -> tuple[bool, str]:
            if not self._poll_ready():
                return False, "the child still setting up (importing its framework, calibrating)"
            if not ready_at:
                ready_at.append(time.monotonic())
                self._start_sampler(nvml.utilisation)
            assert self._sampler is not None
            now = time.monotonic()
            if now - ready_at[0] < self.sample_s:
                return False, "utilisation not yet sampled for long enough"
            values = self._sampler.values_since(now - self.sample_s)
            mean = gpu_rules.mean_utilisation(values)
            measured = f"{mean:.0f}% mean GPU utilisation over the last {self.sample_s:g} s"
            return gpu_rules.utilisation_reached(mean, self.duty_percent), measured

        wait_for(
            probe,
            timeout_s=self.start_timeout_s,
            asked=(
                f"{self.name} asked for a {self.duty_percent}% duty cycle on GPU {self.device}, "
                f"NVML utilisation >= {UTIL_FRACTION * self.duty_percent:.0f}%"
            ),
            fix=(
                "see the child's log below; the matrices may be too small to fill this GPU "
                "(raise matrix_size) or another process competes for it"
            ),
            detail=lambda: self.child.log_tail() if self.child else "",
        )
        self._established_at = time.monotonic()

    def _achieved_now(self) -> float:
        """Mean NVML utilisation (%) since the pressure was established."""
        assert self._sampler is not None and self._established_at is not None
        return gpu_rules.mean_utilisation(self._sampler.values_since(self._established_at))

    def check(self) -> None:
        self._require_alive()
        values = self._window_values()
        mean = gpu_rules.mean_utilisation(values)
        if not gpu_rules.utilisation_reached(mean, self.duty_percent):
            last_error = self._sampler.last_error if self._sampler else None
            error = f"; last NVML error: {last_error}" if last_error else ""
            raise KtInterfError(
                f"{self.name} weakened during the window: {mean:.0f}% mean GPU utilisation over "
                f"{len(values)} samples, asked {self.duty_percent}% (need >= "
                f"{UTIL_FRACTION * self.duty_percent:.0f}%){error}",
                "the measurement is refused; check what else runs on this GPU",
                detail=self.child.log_tail() if self.child else "",
            )
