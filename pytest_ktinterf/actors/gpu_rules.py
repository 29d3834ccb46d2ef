"""The GPU actors' decisions, as small pure functions so they are tested everywhere (CI has no GPU).

What a memory request may ask of a device's free VRAM, which duty cycles and matrix sizes are
valid, and when a measurement proves the pressure: memory held (per process, as NVML attributes
it) and utilisation averaged over a window of samples.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from pytest_ktinterf.errors import KtInterfError

MIB = 2**20
GIB = 2**30
MARGIN_MIB = 256  # left free on the device when refusing a memory request
HOLD_FRACTION = 0.9  # share of the memory target that proves the pressure
UTIL_FRACTION = 0.8  # share of the duty cycle that NVML utilisation must reach


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
