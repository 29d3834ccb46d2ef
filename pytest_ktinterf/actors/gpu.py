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
decisions (free-VRAM refusal, duty validation, averaging, which NVML device) are small pure
functions so they are tested everywhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_ktinterf.actors.base import Actor, wait_for
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.monitor import Gpu
from pytest_ktinterf.system.processes import Child, spawn, terminate

MIB = 2**20
GIB = 2**30
MARGIN_MIB = 256  # left free on the device when refusing a memory request
HOLD_FRACTION = 0.9  # share of the memory target that proves the pressure
UTIL_FRACTION = 0.8  # share of the duty cycle that NVML utilisation must reach
SAFETY_TIMEOUT_S = 3600.0  # a leftover that escaped every reaper still ends on its own
CHILD_MODULE = "pytest_ktinterf.actors.gpu_child"
FRAMEWORK_FIX = "pip install torch (a CUDA build) or cupy-cuda12x into the Python running pytest"


# --- is there a GPU we can use? ----------------------------------------------------------------


def torch_build_has_cuda(version_py: str) -> bool | None:
    """From the text of ``torch/version.py``: True for a CUDA build, False for CPU/ROCm-only.

    None when the file does not say. Reading the file instead of importing torch keeps pytest's
    own process free of torch's import time and of any CUDA initialisation.
    """
    match = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*(.+?)\s*$", version_py, re.MULTILINE)
    if match is None:
        return None
    return match.group(1) not in ("None", "''", '""')


def _torch_status() -> str | None:
    """None when a CUDA build of torch is installed, else why not."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError) as exc:
        return f"not importable ({exc})"
    if spec is None:
        return "not installed"
    for location in spec.submodule_search_locations or []:
        try:
            text = (Path(location) / "version.py").read_text()
        except OSError:
            continue
        if torch_build_has_cuda(text) is False:
            return "installed without CUDA (CPU-only build)"
        return None
    return None  # installed but unreadable: let the child find out, it reports clearly


def _cupy_status() -> str | None:
    try:
        spec = importlib.util.find_spec("cupy")
    except (ImportError, ValueError) as exc:
        return f"not importable ({exc})"
    return None if spec is not None else "not installed"


def gpu_unavailable_reason() -> str | None:
    """None when NVML sees an NVIDIA GPU and PyTorch-with-CUDA or CuPy is installed, else why not."""
    gpu = Gpu()
    if not gpu.present:
        return f"no NVIDIA GPU: {gpu.absent_reason}"
    torch_why, cupy_why = _torch_status(), _cupy_status()
    if torch_why is None or cupy_why is None:
        return None
    return (
        "GPU present but neither PyTorch with CUDA nor CuPy is importable "
        f"(torch: {torch_why}; cupy: {cupy_why}): {FRAMEWORK_FIX}"
    )


def _unavailable_fix(reason: str) -> str:
    if reason.startswith("no NVIDIA GPU"):
        return (
            "run on a machine with an NVIDIA GPU and its driver (nvidia-smi must work), or leave "
            "the GPU actors out of this run"
        )
    return FRAMEWORK_FIX


def _require_gpu(actor: str) -> None:
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise KtInterfError(f"{actor} cannot start: {reason}", _unavailable_fix(reason))


# --- pure decisions ----------------------------------------------------------------------------


def check_vram_request(gib: float, free_bytes: int, *, device: int, margin_mib: float = MARGIN_MIB) -> int:
    """The request in bytes, or :class:`KtInterfError` when the device cannot give it.

    Refuses anything above the free VRAM (as NVML measures it) minus ``margin_mib``: asking a
    card for more than it has makes the hog fail half-way, or -- with managed memory, which we
    never use -- hang the GPU.
    """
    validate_gib(gib, device)
    request = int(gib * GIB)
    allowed = free_bytes - int(margin_mib * MIB)
    if request > allowed:
        raise KtInterfError(
            f"GPU memory hog asked for {gib:g} GiB ({request / MIB:.0f} MiB) on GPU {device}, but "
            f"NVML measures {free_bytes / MIB:.0f} MiB free there and {margin_mib:g} MiB must stay "
            f"free, so at most {max(allowed, 0) / MIB:.0f} MiB can be held",
            f"ask for at most {max(allowed, 0) / GIB:.2f} GiB, or free the GPU first "
            "(nvidia-smi lists what holds it)",
        )
    return request


def validate_gib(gib: object, device: int = 0) -> float:
    """The memory request in GiB as a positive finite number, or :class:`KtInterfError`."""
    if isinstance(gib, bool) or not isinstance(gib, int | float) or not math.isfinite(gib) or gib <= 0:
        raise KtInterfError(
            f"GPU memory hog asked for {gib!r} GiB on GPU {device}", "pass a positive number of GiB"
        )
    return float(gib)


def validate_duty(duty_percent: object) -> int:
    """The duty cycle as an int in 1..100, or :class:`KtInterfError`."""
    if isinstance(duty_percent, bool) or not isinstance(duty_percent, int) or not 1 <= duty_percent <= 100:
        raise KtInterfError(
            f"GPU compute duty cycle must be a whole percentage in 1..100, got {duty_percent!r}",
            "pass duty_percent between 1 and 100 (100 keeps the GPU busy all the time)",
        )
    return duty_percent


def validate_matrix_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 64:
        raise KtInterfError(
            f"GPU compute matrix size must be an integer >= 64, got {size!r}",
            "pass matrix_size such as 4096 (larger keeps the GPU busier per launch)",
        )
    return size


def mean_utilisation(samples: Sequence[float]) -> float:
    """Mean of NVML utilisation samples (percent); 0.0 for none."""
    return statistics.fmean(samples) if samples else 0.0


def utilisation_reached(mean_percent: float, duty_percent: int, fraction: float = UTIL_FRACTION) -> bool:
    return mean_percent >= fraction * duty_percent


def memory_reached(held_bytes: float, target_bytes: int, fraction: float = HOLD_FRACTION) -> bool:
    return held_bytes >= fraction * target_bytes


def process_memory(processes: Iterable[Any], pids: Collection[int]) -> int | None:
    """Bytes NVML attributes to ``pids``, or None when none of them is listed (or reported)."""
    found: int | None = None
    for proc in processes:
        used = getattr(proc, "usedGpuMemory", None)
        if getattr(proc, "pid", None) in pids and used is not None:
            found = (found or 0) + int(used)
    return found


def window_values(
    samples: Sequence[tuple[float, float]], since: float, min_span_s: float, now: float
) -> list[float]:
    """Sample values taken since ``since``; if those span less than ``min_span_s``, the last ones that do."""
    start = min(since, now - min_span_s)
    return [value for t, value in samples if t >= start]


def nvml_selector(device: int, cuda_visible: str | None) -> int | str:
    """Which NVML device (index or UUID) CUDA device ``device`` is, given ``CUDA_VISIBLE_DEVICES``.

    The child runs with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, NVML's own order, so without
    ``CUDA_VISIBLE_DEVICES`` the indices agree.
    """
    if device < 0:
        raise KtInterfError(f"GPU index {device} is negative", "pass a device index such as 0")
    if cuda_visible is None:
        return device
    entries = [e.strip() for e in cuda_visible.split(",") if e.strip()]
    if device >= len(entries):
        raise KtInterfError(
            f"GPU {device} is not visible: CUDA_VISIBLE_DEVICES={cuda_visible!r} shows {len(entries)}",
            "pass a device index below the number of visible GPUs, or change CUDA_VISIBLE_DEVICES",
        )
    entry = entries[device]
    return int(entry) if entry.isdigit() else entry


def normalize_uuid(text: str) -> str | None:
    """A GPU UUID as 32 lowercase hex digits (from NVML's ``GPU-...`` or torch's form), or None."""
    digits = re.sub(r"^gpu-", "", text.strip().lower()).replace("-", "")
    return digits if re.fullmatch(r"[0-9a-f]{32}", digits) else None


def normalize_pci(text: str) -> str | None:
    """A PCI bus id as ``dddd:bb:dd.f`` whatever the domain width, or None."""
    match = re.fullmatch(r"([0-9a-f]+):([0-9a-f]+):([0-9a-f]+)\.([0-9a-f]+)", text.strip().lower())
    if match is None:
        return None
    domain, bus, dev, fn = (int(part, 16) for part in match.groups())
    return f"{domain:04x}:{bus:02x}:{dev:02x}.{fn:x}"


def same_gpu(child: dict[str, Any], nvml: dict[str, str]) -> bool | None:
    """Whether the child's device is the one NVML measures; None when it cannot be told."""
    for key, norm in (("uuid", normalize_uuid), ("pci", normalize_pci)):
        mine, theirs = norm(str(child.get(key, ""))), norm(str(nvml.get(key, "")))
        if mine is not None and theirs is not None:
            return mine == theirs
    return None


# --- NVML --------------------------------------------------------------------------------------


class NvmlDevice:
    """One GPU through NVML, chosen by the CUDA index the child will use."""

    def __init__(self, device: int) -> None:
        import pynvml  # type: ignore[import-untyped]

        self._nvml = pynvml
        selector = nvml_selector(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
        try:
            pynvml.nvmlInit()
            if isinstance(selector, int):
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(selector)
            else:
                self.handle = pynvml.nvmlDeviceGetHandleByUUID(selector)
        except pynvml.NVMLError as exc:
            raise KtInterfError(
                f"NVML cannot open GPU {device} (NVML device {selector!r}): {exc}",
                "pass a device index that nvidia-smi lists",
            ) from exc

    def memory(self) -> tuple[int, int]:
        """(free, used) bytes on the device."""
        info = self._nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return int(info.free), int(info.used)

    def utilisation(self) -> float:
        return float(self._nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def processes(self) -> list[Any] | None:
        """Compute processes on the device, or None when NVML cannot list them."""
        try:
            return list(self._nvml.nvmlDeviceGetComputeRunningProcesses(self.handle))
        except self._nvml.NVMLError:
            return None

    def identity(self) -> dict[str, str]:
        found: dict[str, str] = {}
        with contextlib.suppress(self._nvml.NVMLError):
            found["uuid"] = _text(self._nvml.nvmlDeviceGetUUID(self.handle))
        with contextlib.suppress(self._nvml.NVMLError):
            found["pci"] = _text(self._nvml.nvmlDeviceGetPciInfo(self.handle).busId)
        return found


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Sampler:
    """Reads a value every ``interval_s`` in a daemon thread; keeps ``(monotonic time, value)``."""

    def __init__(self, read: Callable[[], float], interval_s: float) -> None:
        self.read = read
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ktinterf-gpu-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                self.samples.append((time.monotonic(), self.read()))
            except Exception as exc:  # NVML hiccups must not kill the thread; check() reports gaps
                self.last_error = f"{type(exc).__name__}: {exc}"
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def values_since(self, t: float) -> list[float]:
        return [value for when, value in list(self.samples) if when >= t]


# --- the actors --------------------------------------------------------------------------------


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
    _final: float | None = field(default=None, init=False, repr=False)

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
        _require_gpu(self.name)
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
        return window_values(self._sampler.samples, since, self._min_window_s(), now)

    def _min_window_s(self) -> float:
        return 0.0

    def _achieved_now(self) -> float:
        raise NotImplementedError

    def achieved(self) -> float:
        """The evidence figure: frozen at stop, 0.0 when the pressure was never established."""
        if self._final is not None:
            return self._final
        if self._sampler is None or self._established_at is None:
            return 0.0
        return self._achieved_now()

    def _target(self) -> float:
        raise NotImplementedError

    def evidence(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "device": self.device,
            "target": self._target(),
            "achieved": self.achieved(),
            "unit": self.unit,
            "backend": (self._ready or {}).get("backend"),
        }

    def _stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()  # before the kill, so the dying child is not sampled
            if self._final is None and self._established_at is not None:
                self._final = self._achieved_now()
        if self.child is not None:
            terminate(self.child)
        if self._ready_path is not None:
            self._ready_path.unlink(missing_ok=True)
            self._ready_path.with_name(self._ready_path.name + ".tmp").unlink(missing_ok=True)


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
            mine = process_memory(processes, pids)
            if mine is not None:
                self._source = "NVML per-process"
                return mine
        _, used = self._nvml.memory()
        self._source = "device used-memory increase"
        return max(0, used - self._used_before)

    def _start(self) -> None:
        validate_gib(self.gib, self.device)
        nvml = self._open()
        free, self._used_before = nvml.memory()
        self._target_bytes = check_vram_request(
            self.gib, free, device=self.device, margin_mib=self.margin_mib
        )
        self._spawn()

        def probe() -> tuple[bool, str]:
            if not self._poll_ready():
                return False, "the child still setting up (importing its framework, allocating)"
            held = self.held_bytes()
            return memory_reached(held, self._target_bytes), f"{held / MIB:.0f} MiB held ({self._source})"

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
        if not memory_reached(least, self._target_bytes):
            raise KtInterfError(
                f"{self.name} weakened during the window: held as little as {least / MIB:.0f} MiB of "
                f"the {self._target_bytes / MIB:.0f} MiB asked on GPU {self.device} "
                f"(need >= {HOLD_FRACTION:.0%}; {self._source})",
                "the measurement is refused; check what else allocates or frees on this GPU",
                detail=self.child.log_tail() if self.child else "",
            )

    def evidence(self) -> dict[str, Any]:
        return {**super().evidence(), "source": self._source or None}


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
        validate_duty(self.duty_percent)
        validate_matrix_size(self.matrix_size)
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
            mean = mean_utilisation(values)
            measured = f"{mean:.0f}% mean GPU utilisation over the last {self.sample_s:g} s"
            return utilisation_reached(mean, self.duty_percent), measured

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
        return mean_utilisation(self._sampler.values_since(self._established_at))

    def check(self) -> None:
        self._require_alive()
        values = self._window_values()
        mean = mean_utilisation(values)
        if not utilisation_reached(mean, self.duty_percent):
            last_error = self._sampler.last_error if self._sampler else None
            error = f"; last NVML error: {last_error}" if last_error else ""
            raise KtInterfError(
                f"{self.name} weakened during the window: {mean:.0f}% mean GPU utilisation over "
                f"{len(values)} samples, asked {self.duty_percent}% (need >= "
                f"{UTIL_FRACTION * self.duty_percent:.0f}%){error}",
                "the measurement is refused; check what else runs on this GPU",
                detail=self.child.log_tail() if self.child else "",
            )
