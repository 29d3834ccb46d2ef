"""The GPU as the GPU actors see it: whether one is usable here, which NVML device, its readings.

Availability is decided without importing torch or CuPy (pytest's own process stays free of their
import time and of any CUDA initialisation) and without a GPU: :func:`gpu_unavailable_reason`
says why not, on CI too. The child process picks its device by CUDA index; NVML, which measures
it independently of the child's word, is opened on the same device (:func:`nvml_selector`), and
the two identities are compared once the child is ready (:func:`same_gpu`). :class:`Sampler`
keeps reading NVML while an actor lives, so its evidence covers the whole alive window.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.monitor import Gpu

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


def require_gpu(actor: str) -> None:
    """Raise, before ``actor`` starts anything, why this machine cannot give it a GPU."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise KtInterfError(f"{actor} cannot start: {reason}", _unavailable_fix(reason))


# --- which NVML device is the child's ----------------------------------------------------------


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
