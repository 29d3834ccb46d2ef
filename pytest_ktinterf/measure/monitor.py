"""Resource monitor: what the machine looked like while a measurement ran.

Samples host RAM, swap, the server's RSS (children included: KT is a process tree), per-core CPU
use, major page faults, and -- through NVML, when a GPU exists -- VRAM and GPU utilisation. The
summary is the report's memory table, and the per-core figures are how an actor's pressure is
shown to have been real during the window.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

ProcessSource = Callable[[], list[psutil.Process]]


@dataclass
class Snapshot:
    t: float
    ram_used_mib: float
    ram_available_mib: float
    swap_used_mib: float
    server_rss_mib: float | None
    cpu_percent: list[float]
    major_faults: int | None
    swap_in_pages: int | None = None
    swap_out_pages: int | None = None
    vram_used_mib: float | None = None
    gpu_util_percent: float | None = None


class Gpu:
    """NVML access that degrades to 'absent' (with the reason) instead of raising."""

    def __init__(self) -> None:
        self.absent_reason: str | None = None
        self._handles: list[Any] = []
        self._nvml: Any = None
        try:
            import pynvml  # type: ignore[import-untyped]

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
            if not self._handles:
                self.absent_reason = "NVML reports no GPU"
        except ImportError:
            self.absent_reason = "nvidia-ml-py is not installed"
        except Exception as exc:  # pynvml raises NVMLError subclasses for missing drivers
            self.absent_reason = f"NVML unavailable ({exc})"

    @property
    def present(self) -> bool:
        return self.absent_reason is None

    def names(self) -> list[str]:
        """Every GPU's product name (``NVIDIA GeForce RTX 3090``), or none without NVML."""
        if not self.present:
            return []
        found = []
        for handle in self._handles:
            try:  # a device NVML cannot name is left out, as an absent GPU is: never an error here
                name = self._nvml.nvmlDeviceGetName(handle)
            except Exception:
                continue
            found.append(name.decode() if isinstance(name, bytes) else str(name))
        return found

    def read(self) -> tuple[float | None, float | None]:
        """(VRAM used MiB, mean utilisation %) over all GPUs, or (None, None)."""
        if not self.present:
            return None, None
        used = util = 0.0
        for handle in self._handles:
            used += self._nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
            util += self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        return used, util / len(self._handles)


VMSTAT_KEYS = ("pgmajfault", "pswpin", "pswpout")


def vmstat(keys: tuple[str, ...] = VMSTAT_KEYS) -> dict[str, int]:
    """Counters from ``/proc/vmstat``: major page faults and swap-in/out pages since boot.

    Rising major faults or swap-ins are the proof that RAM overflowed (weights re-read from disk
    or swap), which RSS alone cannot show: mmapped weights live in the page cache.
    """
    found: dict[str, int] = {}
    try:
        with open("/proc/vmstat") as handle:
            for row in handle:
                key, _, value = row.partition(" ")
                if key in keys:
                    found[key] = int(value)
    except (OSError, ValueError):
        return {}
    return found


def _rss_mib(processes: list[psutil.Process]) -> float | None:
    if not processes:
        return None
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


@dataclass
class ResourceMonitor:
    """Context manager that samples in a background thread every ``interval_s``."""

    processes: ProcessSource = field(default=lambda: [])
    interval_s: float = 0.25
    snapshots: list[Snapshot] = field(default_factory=list)
    gpu: Gpu = field(default_factory=Gpu)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> Snapshot:
        memory = psutil.virtual_memory()
        vram, util = self.gpu.read()
        counters = vmstat()
        return Snapshot(
            t=time.perf_counter(),
            ram_used_mib=(memory.total - memory.available) / 2**20,
            ram_available_mib=memory.available / 2**20,
            swap_used_mib=psutil.swap_memory().used / 2**20,
            server_rss_mib=_rss_mib(self.processes()),
            cpu_percent=psutil.cpu_percent(percpu=True),
            major_faults=counters.get("pgmajfault"),
            swap_in_pages=counters.get("pswpin"),
            swap_out_pages=counters.get("pswpout"),
            vram_used_mib=vram,
            gpu_util_percent=util,
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.snapshots.append(self.sample())

    def __enter__(self) -> ResourceMonitor:
        psutil.cpu_percent(percpu=True)  # prime: the first call has no interval to measure
        self.snapshots.append(self.sample())
        self._thread = threading.Thread(target=self._loop, name="ktinterf-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.snapshots.append(self.sample())

    def per_core_cpu(self) -> list[float]:
        """Mean utilisation of each core over the window (the first snapshot has no interval)."""
        rows = [s.cpu_percent for s in self.snapshots[1:]]
        if not rows:
            return []
        return [statistics.fmean(col) for col in zip(*rows, strict=False)]

    def summary(self) -> dict[str, Any]:
        """Peak/median figures for the report's memory table."""
        snaps = self.snapshots
        if not snaps:
            return {}

        def peak(values: list[float | None]) -> float | None:
            kept = [v for v in values if v is not None]
            return max(kept) if kept else None

        def delta(values: list[int | None]) -> int | None:
            kept = [v for v in values if v is not None]
            return kept[-1] - kept[0] if len(kept) >= 2 else None

        return {
            "samples": len(snaps),
            "window_s": snaps[-1].t - snaps[0].t,
            "ram_used_peak_mib": peak([s.ram_used_mib for s in snaps]),
            "ram_available_min_mib": min(s.ram_available_mib for s in snaps),
            "swap_used_peak_mib": peak([s.swap_used_mib for s in snaps]),
            "server_rss_peak_mib": peak([s.server_rss_mib for s in snaps]),
            "cpu_percent_per_core": self.per_core_cpu(),
            "major_faults": delta([s.major_faults for s in snaps]),
            "swap_in_pages": delta([s.swap_in_pages for s in snaps]),
            "swap_out_pages": delta([s.swap_out_pages for s in snaps]),
            "vram_used_peak_mib": peak([s.vram_used_mib for s in snaps]),
            "gpu_util_mean_percent": (
                statistics.fmean(u)
                if (u := [s.gpu_util_percent for s in snaps if s.gpu_util_percent is not None])
                else None
            ),
            "gpu": "present" if self.gpu.present else f"absent: {self.gpu.absent_reason}",
        }

    def to_record(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.snapshots]
