"""RAM overflow, two ways: contained in a memory cgroup around the server, or on the host.

The report's worst row: RAM overflows and prefill and decode both collapse. KT's expert weights
are mmapped GGUF files living in the page cache, so overflow does not need swap: once the pages
are evicted they are re-read from disk on every token (major faults). Two safe ways to make it
happen, both proven while they run by rising major faults / swap-ins:

* :class:`ContainedOverflow` puts the server's own processes in a memory cgroup whose limit is
  below its working set. Only the server feels it; the rest of the host is untouched.
* :class:`HostOverflow` fills the host past its RAM, which is refused unless swap can take the
  overflow (or ``--kt-allow-host-overflow`` says the user accepts the OOM killer's risk).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import psutil

from pytest_ktinterf.actors.base import Actor, wait_for
from pytest_ktinterf.actors.memory import GIB, MIB, TOLERANCE, RamFiller, default_reserve_bytes, fmt_gib
from pytest_ktinterf.datafile import write_atomic
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.monitor import vmstat
from pytest_ktinterf.server.base import LimitableMemory
from pytest_ktinterf.system.cgroups import MemoryCgroup


def plan_host_overflow(
    *, available: int, swap_free: int, overflow: int, reserve: int, allow_without_swap: bool
) -> int:
    """Bytes a filler must hold to push ``overflow`` bytes past RAM; refuses when unsafe.

    With swap, the overflow lands there and swap must keep ``reserve`` free afterwards. Without
    swap, nothing can absorb anonymous memory: only file pages (mmapped weights, KT's case) are
    evicted, and past them the OOM killer acts. That is allowed only on explicit opt-in, and the
    filler then takes all but ``reserve / 4`` of what is available.
    """
    if overflow <= 0:
        raise KtInterfError(f"host overflow asked for {fmt_gib(overflow)}", "ask for a positive overflow")
    if swap_free > 0:
        if overflow + reserve > swap_free:
            raise KtInterfError(
                f"host overflow of {fmt_gib(overflow)} into swap with {fmt_gib(swap_free)} of swap free "
                f"would leave less than the {fmt_gib(reserve)} reserve (--kt-memory-reserve) in swap",
                f"ask for at most {fmt_gib(max(0, swap_free - reserve))} of overflow or add swap "
                "(a swap file: fallocate, mkswap, swapon)",
            )
        return available + overflow
    if not allow_without_swap:
        raise KtInterfError(
            "host overflow refused: this host has no swap, so filling past its RAM would wake the "
            "OOM killer rather than overflow",
            "add swap (fallocate -l 4G /swapfile && mkswap /swapfile && swapon /swapfile), use the "
            "contained overflow (a memory cgroup around the server), or opt in with "
            "--kt-allow-host-overflow",
        )
    return max(0, available - reserve // 4)


@dataclass
class ContainedOverflow(Actor):
    """The server's memory cgroup limited below its working set for the actor's lifetime.

    The server must have been started inside ``cgroup`` (the plugin's backends do this as root):
    only then are its pages charged there. The limit is the server's anonymous memory (which
    cannot be evicted without swap) plus ``working_set_fraction`` of its file pages (the weights),
    or ``limit_mib`` if given. Proof: the cgroup's usage sits at the limit (within 10%), and
    ``check()`` demands that the cgroup's major faults rose during the window -- the weights
    really were re-read from disk. ``stop()`` lifts the limit again.
    """

    cgroup: MemoryCgroup | LimitableMemory | None = None
    why_no_cgroup: str = "the server was not started by the plugin"
    working_set_fraction: float = 0.5
    limit_mib: float | None = None
    start_timeout_s: float = 30.0
    name: str = "contained-overflow"
    limit_bytes: int = 0
    _limited: bool = False
    _before: dict[str, int] = field(default_factory=dict)
    _faults_at_start: int = 0
    _achieved: dict[str, Any] = field(default_factory=dict)

    def plan_limit(self, anon: int, file_pages: int) -> int:
        if self.limit_mib is not None:
            return int(self.limit_mib * MIB)
        if not 0 < self.working_set_fraction < 1:
            raise KtInterfError(
                f"working_set_fraction={self.working_set_fraction} is outside (0, 1)",
                "keep a fraction of the server's file pages, e.g. 0.5",
            )
        if file_pages < 8 * MIB:
            raise KtInterfError(
                f"the server's cgroup holds only {file_pages / MIB:.0f} MiB of file pages to evict",
                "its weights are not mmapped (llama.cpp --no-mmap?) or were already in the page cache "
                "when it started (charged elsewhere: echo 1 > /proc/sys/vm/drop_caches, then restart "
                "it); or give limit_mib explicitly",
            )
        return anon + int(self.working_set_fraction * file_pages)

    def _start(self) -> None:
        if self.cgroup is None:
            raise KtInterfError(
                f"contained RAM overflow needs the server inside a memory cgroup, and it is not: "
                f"{self.why_no_cgroup}",
                "run pytest as root and let the plugin start the server (embedded, --kt-server-cmd, "
                "docker); an external --kt-url server cannot be contained from here",
            )
        cgroup = self.cgroup
        anon, file_pages = cgroup.anon(), cgroup.file_pages()
        self._before = {"usage": cgroup.usage(), "anon": anon, "file": file_pages}
        self.limit_bytes = self.plan_limit(anon, file_pages)
        cgroup.set_limit(self.limit_bytes)
        self._limited = True

        def at_limit() -> tuple[bool, str]:
            usage = cgroup.usage()
            measured = f"usage {usage / MIB:.0f} MiB of a {self.limit_bytes / MIB:.0f} MiB limit"
            return (1 - TOLERANCE) * self.limit_bytes <= usage <= self.limit_bytes, measured

        wait_for(
            at_limit,
            timeout_s=self.start_timeout_s,
            asked=f"{self.name}: the server's memory held at a {self.limit_bytes / MIB:.0f} MiB limit "
            f"(it used {self._before['usage'] / MIB:.0f} MiB)",
            fix="pass limit_mib explicitly, below what the server uses",
        )
        self._faults_at_start = cgroup.major_faults()
        self._achieved = self._measure()

    def _measure(self) -> dict[str, Any]:
        assert self.cgroup is not None
        return {
            "limit_mib": self.limit_bytes / MIB,
            "usage_mib": self.cgroup.usage() / MIB,
            "usage_before_mib": self._before.get("usage", 0) / MIB,
            "anon_mib": self._before.get("anon", 0) / MIB,
            "file_pages_before_mib": self._before.get("file", 0) / MIB,
            "file_pages_mib": self.cgroup.file_pages() / MIB,
            "major_faults": self.cgroup.major_faults() - self._faults_at_start,
            "cgroup": str(self.cgroup.path),
            "cgroup_version": self.cgroup.version,
        }

    def check(self) -> None:
        if self.cgroup is None or not self.cgroup.pids():
            raise KtInterfError(
                f"{self.name}: the server's cgroup is empty: the server died during the window",
                "see the server log: the kernel may have OOM-killed it; raise the working-set fraction",
            )
        achieved = self._measure()
        if achieved["major_faults"] <= 0:
            raise KtInterfError(
                f"{self.name}: no major faults in the cgroup during the window "
                f"(usage {achieved['usage_mib']:.0f} of {achieved['limit_mib']:.0f} MiB)",
                "the server's working set fits under the limit: lower the working-set fraction",
            )
        self._achieved = achieved

    def _live_evidence(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "ram-overflow-contained",
            "target": self.limit_bytes / MIB,
            "achieved": self._achieved.get("usage_mib"),
            "unit": "MiB",
            **self._achieved,
        }

    def _pressure_alive(self) -> bool:
        return self.cgroup is not None and self._limited and bool(self.cgroup.pids())

    def _settle_evidence(self) -> None:
        """A last reading; if the pressure weakened, the record keeps the last one that held."""
        with contextlib.suppress(KtInterfError, OSError):
            self.check()

    def _stop(self) -> None:
        if self.cgroup is None or not self._limited:
            return
        self.cgroup.unlimit()
        self._limited = False


def grow_step(target: int, *, wanted: int, pushed: int, ceiling: int) -> int:
    """The filler's next size: what swap still lacks of the overflow is added, never past ``ceiling``.

    MemAvailable under-counts what the kernel can reclaim, so the planned size may push less than
    asked into swap; each step adds only the shortfall seen, so the filler cannot run ahead of
    the swap reading it answers, and it stops growing once swap shows the overflow.
    """
    if pushed >= wanted:
        return target
    return max(target, min(ceiling, target + wanted - pushed))


@dataclass
class HostOverflow(RamFiller):
    """Pushes the host ``overflow_gib`` past its RAM: into swap, or (opted in) past page cache.

    Proof of overflow while it runs: host swap use rose by the overflow (within 10%), and the
    monitor records swap-in and major-fault rates in every sample of the window.
    """

    overflow_gib: float = 1.0
    allow_without_swap: bool = False
    name: str = "host-overflow"
    _swap_before: int = 0
    _ceiling: int = 0
    _vm_before: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "ram-overflow-host"

    def plan(self) -> int:
        reserve = default_reserve_bytes() if self.reserve_bytes is None else self.reserve_bytes
        swap = psutil.swap_memory()
        self._swap_before = swap.used
        self._vm_before = vmstat()
        size = plan_host_overflow(
            available=psutil.virtual_memory().available,
            swap_free=swap.free,
            overflow=int(self.overflow_gib * GIB),
            reserve=reserve,
            allow_without_swap=self.allow_without_swap,
        )
        # The most it may ever hold: what swap can take beyond the overflow, minus the reserve.
        self._ceiling = size + max(0, swap.free - reserve - int(self.overflow_gib * GIB))
        self._into_swap = swap.free > 0  # the mode plan_host_overflow chose, decided once here
        return size

    @property
    def ceiling_bytes(self) -> int:
        """The most the filler may ever hold: swap free beyond the overflow, less the reserve."""
        return self._ceiling

    def _grows(self) -> bool:
        return True

    def _extra_args(self) -> list[str]:
        """With swap, the filler itself pages out what goes past RAM (see ``filler_child``)."""
        args = super()._extra_args()
        if self._into_swap:
            args += ["--swap-bytes", str(int(self.overflow_gib * GIB))]
        return args

    def _overflowed(self) -> int:
        return psutil.swap_memory().used - self._swap_before

    def _established(self) -> tuple[bool, str]:
        """Held the planned size; with swap, grow until swap use shows the overflow (capped)."""
        done, measured = super()._established()
        if not done or psutil.swap_memory().total == 0:
            return done, measured
        wanted = int(self.overflow_gib * GIB)
        pushed = self._overflowed()
        measured += f", swap use +{fmt_gib(pushed)}"
        if pushed >= wanted:  # all of it at start, so drift in the window stays within tolerance
            return True, measured
        grown = grow_step(self.target_bytes, wanted=wanted, pushed=pushed, ceiling=self._ceiling)
        if grown > self.target_bytes:  # the kernel found more to reclaim than MemAvailable said
            self.target_bytes = grown
            write_atomic(self._grow_path, str(grown))
        elif self.target_bytes >= self._ceiling:
            measured += (
                f", at the most it may hold ({fmt_gib(self._ceiling)}: swap free minus the reserve); "
                "add swap or lower --kt-memory-reserve"
            )
        return False, measured

    def _measure(self) -> dict[str, Any]:
        now = vmstat()
        return {
            **super()._measure(),
            "overflow_mib": self._overflowed() / MIB,
            "swap_in_pages": now.get("pswpin", 0) - self._vm_before.get("pswpin", 0),
            "swap_out_pages": now.get("pswpout", 0) - self._vm_before.get("pswpout", 0),
            "major_faults": now.get("pgmajfault", 0) - self._vm_before.get("pgmajfault", 0),
        }

    def check(self) -> None:
        super().check()
        if psutil.swap_memory().total > 0 and self._overflowed() < (1 - TOLERANCE) * self.overflow_gib * GIB:
            raise KtInterfError(
                f"{self.name}: swap use is only +{fmt_gib(self._overflowed())} of the "
                f"{fmt_gib(self.overflow_gib * GIB)} overflow asked for",
                "the measurement is refused: the host was not overflowing during the window",
            )

    def _live_evidence(self) -> dict[str, Any]:
        record = super()._live_evidence()
        record.update(target=self.overflow_gib * GIB / MIB, achieved=self._achieved.get("overflow_mib"))
        return record
