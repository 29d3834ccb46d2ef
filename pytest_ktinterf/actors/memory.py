"""RAM pressure: a filler that holds memory (idle or streaming through it) and the host overflow.

The report's rows "co-runner holds RAM, idle" and "co-runner infers on CPU/RAM" differ only in
whether the held memory is also being read and written. One child process (``filler_child``)
does both; ``overflow.py`` pushes the same filler past what the host has.

Safety comes first: a filler may never push the host's available memory below a reserve
(``--kt-memory-reserve``), because below it the OOM killer picks victims -- the server, pytest,
or the user's shell. Only the overflow actor may go past it, and only where that is contained:
swap that can absorb the overflow, or an explicit ``--kt-allow-host-overflow``. The child's OOM
score is the maximum, so if the kernel must kill something, it kills the filler.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.actors.base import Actor, wait_for
from pytest_ktinterf.datafile import remove_with_temporaries, write_atomic
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.processes import Child, spawn, terminate

GIB = 2**30
MIB = 2**20
TOLERANCE = 0.10  # achieved pressure must be within 10% of the target


def default_reserve_bytes(total: int | None = None) -> int:
    """The RAM kept available by default: 5% of the host, at least 1 GiB."""
    total = psutil.virtual_memory().total if total is None else total
    return max(GIB, int(0.05 * total))


def fmt_gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def plan_fill(
    *,
    available: int,
    reserve: int,
    hold: int | None = None,
    leave_available: int | None = None,
) -> int:
    """Bytes a filler must hold; raises when that would leave less than ``reserve`` available.

    Exactly one of ``hold`` (N bytes) and ``leave_available`` (fill until X bytes are left) is
    given. Pure, so the safety rule is tested exhaustively without touching memory.
    """
    if (hold is None) == (leave_available is None):
        raise KtInterfError(
            "RAM filler needs exactly one of gib=N (hold N GiB) and leave_available_gib=X",
            "pass one of them",
        )
    if hold is not None:
        if hold <= 0:
            raise KtInterfError(f"RAM filler asked to hold {fmt_gib(hold)}", "ask for a positive size")
        size = hold
        asked = f"RAM filler asked to hold {fmt_gib(hold)}"
    else:
        assert leave_available is not None
        size = available - leave_available
        asked = f"RAM filler asked to leave {fmt_gib(leave_available)} available"
        if size <= 0:
            raise KtInterfError(
                f"{asked}, but only {fmt_gib(available)} is available now",
                "ask to leave less available, or hold a fixed size with gib=N",
            )
    if available - size < reserve:
        room = max(0, available - reserve)
        raise KtInterfError(
            f"{asked}: that leaves {fmt_gib(available - size)} of {fmt_gib(available)} available, "
            f"below the {fmt_gib(reserve)} reserve (--kt-memory-reserve) that keeps the OOM killer "
            "away from the server and pytest",
            f"ask for at most {fmt_gib(room)}, lower --kt-memory-reserve, or use the RAM overflow "
            "actor (contained in a cgroup, or host overflow with swap / --kt-allow-host-overflow)",
        )
    return size


def proc_status_bytes(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (``VmRSS``, ``VmSwap``) in bytes; 0 if absent."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for row in handle:
                if row.startswith(key + ":"):
                    return int(row.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


@dataclass
class RamFiller(Actor):
    """Holds ``gib`` GiB (or all but ``leave_available_gib``), every page touched; idle or active.

    Active mode streams through the memory continuously (the "co-runner infers" row); idle mode
    only holds it (the "holds RAM, idle" row). Proof: the child's resident memory reaches the
    target within 10%, and in active mode it reports the rate at which it moves memory.
    """

    gib: float | None = None
    leave_available_gib: float | None = None
    active: bool = False
    mlock: bool = False
    reserve_bytes: int | None = None
    cpus: list[int] | None = None
    log_dir: Path = Path(".ktinterf/logs")
    start_timeout_s: float | None = None
    progress: Callable[[str], None] | None = None
    name: str = "ram-filler"
    child: Child | None = None
    target_bytes: int = 0
    _achieved: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "ram-filler-active" if self.active else "ram-filler-idle"

    def plan(self) -> int:
        """The bytes to hold, checked against the reserve (overridden by the overflow actor)."""
        reserve = default_reserve_bytes() if self.reserve_bytes is None else self.reserve_bytes
        return plan_fill(
            available=psutil.virtual_memory().available,
            reserve=reserve,
            hold=None if self.gib is None else int(self.gib * GIB),
            leave_available=None if self.leave_available_gib is None else int(self.leave_available_gib * GIB),
        )

    @property
    def _status_path(self) -> Path:
        return self.log_dir / f"{self.name}-{id(self):x}.status"

    def _read_status(self) -> tuple[str, float]:
        try:
            word, _, value = self._status_path.read_text().partition(" ")
            return word, float(value)
        except (OSError, ValueError):
            return "starting", 0.0

    def held_bytes(self) -> int:
        """What the child holds: resident plus swapped out (both are memory it took)."""
        if self.child is None:
            return 0
        return proc_status_bytes(self.child.pid, "VmRSS") + proc_status_bytes(self.child.pid, "VmSwap")

    def resident_bytes(self) -> int:
        return proc_status_bytes(self.child.pid, "VmRSS") if self.child is not None else 0

    def _established(self) -> tuple[bool, str]:
        """(target held, what was measured); raises if the child died or failed."""
        assert self.child is not None
        if not self.child.alive():
            raise KtInterfError(
                f"{self.name} exited with code {self.child.popen.returncode} while filling "
                f"{fmt_gib(self.target_bytes)}",
                "the kernel may have killed it for memory (dmesg); ask for less",
                detail=self.child.log_tail(),
            )
        word, value = self._read_status()
        held = self.held_bytes()
        measured = f"{word} {fmt_gib(value)}, holds {fmt_gib(held)}"
        if word == "failed":
            raise KtInterfError(f"{self.name} failed: {self._status_path.read_text()}", "see its log")
        if word not in ("ready", "streaming") or held < (1 - TOLERANCE) * self.target_bytes:
            return False, measured
        if self.active and word != "streaming":
            return False, measured + ", not streaming yet"
        if self.leave_available_gib is not None:
            return self._left_as_asked(measured)
        return True, measured

    def _left_as_asked(self, measured: str) -> tuple[bool, str]:
        """Grow until what is available is what was asked to be left (within half the tolerance).

        ``MemAvailable`` is the kernel's estimate, and it under-counts what it can reclaim (page
        cache and slab beyond the estimate), so a size computed up front can leave more than asked.
        Growing never goes below what was asked, which the plan already checked against the reserve.
        """
        assert self.leave_available_gib is not None
        leave = int(self.leave_available_gib * GIB)
        available = psutil.virtual_memory().available
        measured += f", {fmt_gib(available)} available"
        if available <= (1 + TOLERANCE / 2) * leave:
            return True, measured
        word, value = self._read_status()
        if word == "ready" and value >= self.target_bytes:
            self.target_bytes += available - leave
            write_atomic(self._grow_path, str(self.target_bytes))
        return False, measured

    def _start(self) -> None:
        self.target_bytes = self.plan()
        argv = [
            sys.executable, "-m", "pytest_ktinterf.actors.filler_child",
            "--bytes", str(self.target_bytes),
            "--status", str(self._status_path),
        ]  # fmt: skip
        if self.active:
            argv.append("--active")
        if self.mlock:
            argv.append("--mlock")
        argv += self._extra_args()
        self._status_path.unlink(missing_ok=True)
        log_path = self.log_dir / f"actor-{self.name}.log"
        self.child = spawn(argv, name=self.name, log_path=log_path, cpus=self.cpus)
        timeout = self.start_timeout_s or 30.0 + 5.0 * self.target_bytes / GIB
        wait_for(
            self._established,
            timeout_s=timeout,
            asked=f"{self.name} asked to hold {fmt_gib(self.target_bytes)}"
            + (" and stream through it" if self.active else ""),
            fix="the host may be short of memory or swapping heavily; ask for less",
            detail=self.child.log_tail,
            progress=self.progress,
            interval_s=0.05,
        )
        self._achieved = self._measure()

    @property
    def _grow_path(self) -> Path:
        return self._status_path.with_suffix(".grow")

    def _grows(self) -> bool:
        """Whether the target is only known once measured (leave-available; host overflow)."""
        return self.leave_available_gib is not None

    def _extra_args(self) -> list[str]:
        if not self._grows():
            return []
        write_atomic(self._grow_path, str(self.target_bytes))
        return ["--grow", str(self._grow_path)]

    def _measure(self) -> dict[str, Any]:
        word, value = self._read_status()
        return {
            "held_mib": self.held_bytes() / MIB,
            "resident_mib": self.resident_bytes() / MIB,
            "stream_gb_per_s": value / 1e9 if word == "streaming" else None,
        }

    def check(self) -> None:
        if self.child is None or not self.child.alive():
            raise KtInterfError(
                f"{self.name} died during the measurement window",
                "the kernel may have killed it for memory (dmesg); the verdict is refused",
                detail=self.child.log_tail() if self.child else "",
            )
        achieved = self._measure()
        if achieved["held_mib"] * MIB < (1 - TOLERANCE) * self.target_bytes:
            raise KtInterfError(
                f"{self.name} holds {achieved['held_mib']:.0f} MiB of {self.target_bytes / MIB:.0f} MiB",
                "the measurement is refused: the memory pressure was not there",
            )
        if self.active and not achieved["stream_gb_per_s"]:
            raise KtInterfError(f"{self.name} stopped streaming through its memory", "see its log")
        self._achieved = achieved

    def _live_evidence(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target_bytes / MIB,
            "achieved": self._achieved.get("held_mib"),
            "unit": "MiB",
            "mlock": self.mlock,
            **self._achieved,
        }

    def _pressure_alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def _settle_evidence(self) -> None:
        """A last reading; if the pressure weakened, the record keeps the last one that held."""
        with contextlib.suppress(KtInterfError):
            self.check()

    def _stop(self) -> None:
        if self.child is not None:
            terminate(self.child)
        for path in (self._status_path, self._grow_path):
            remove_with_temporaries(path)  # the child may have been killed mid-write
