"""CPU pressure: stress-ng ``--cpu`` workers pinned to an explicit core list.

Pinning is what makes the report's two CPU rows distinct experiments: stress on the server's own
cores versus on the spare ones. Workers on the server's cores share them with the server, so
the proof of pressure is a *share* of each core (default at least 30%), not a full core.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.options import format_cpu_list
from pytest_ktinterf.processes import Child, spawn, terminate

SAFETY_TIMEOUT_S = 3600  # a leftover that escaped every reaper still ends on its own


@dataclass
class CpuStress(Actor):
    """``len(cores) * workers_per_core`` stress-ng CPU workers restricted to ``cores``."""

    cores: list[int] = field(default_factory=list)
    workers_per_core: int = 1
    load_percent: int | None = None
    stress_ng: str = "stress-ng"
    log_dir: Path = Path(".ktinterf/logs")
    min_share: float = 0.3
    start_timeout_s: float = 15.0
    name: str = "cpu-stress"
    child: Child | None = None
    _cpu_at_start: float = 0.0
    _wall_at_start: float = 0.0
    _final_share: float | None = None

    @property
    def workers(self) -> int:
        return len(self.cores) * self.workers_per_core

    def argv(self, binary: str) -> list[str]:
        argv = [
            binary,
            "--cpu", str(self.workers),
            "--taskset", format_cpu_list(self.cores),
            "--timeout", f"{SAFETY_TIMEOUT_S}s",
            "--metrics-brief",
        ]  # fmt: skip
        if self.load_percent is not None:
            argv += ["--cpu-load", str(self.load_percent)]
        return argv

    def _expected_share(self) -> float:
        share = self.min_share
        if self.load_percent is not None:
            share = min(share, 0.8 * self.load_percent / 100)
        return share

    def _workers_procs(self) -> list[psutil.Process]:
        assert self.child is not None
        return [p for p in self.child.tree()[1:] if p.status() != psutil.STATUS_ZOMBIE]

    def _cpu_seconds(self, procs: list[psutil.Process]) -> float:
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        return total

    def _start(self) -> None:
        if not self.cores:
            raise KtInterfError("CPU stress actor asked for no cores", "pass a non-empty core list")
        binary = shutil.which(self.stress_ng)
        if binary is None:
            raise KtInterfError(
                f"stress-ng not found (--kt-stress-ng={self.stress_ng})",
                "install it (apt-get install stress-ng) or pass --kt-stress-ng /path/to/stress-ng",
            )
        self.child = spawn(
            self.argv(binary),
            name=self.name,
            log_path=self.log_dir / "actor-cpu-stress.log",
            cpus=self.cores,
        )
        deadline = time.monotonic() + self.start_timeout_s
        measured = "no workers yet"
        while time.monotonic() < deadline:
            if not self.child.alive():
                raise KtInterfError(
                    f"stress-ng exited with code {self.child.popen.returncode} at start",
                    "check the stress-ng arguments in the log tail below",
                    detail=self.child.log_tail(),
                )
            procs = self._workers_procs()
            if len(procs) >= self.workers:
                cpu0, t0 = self._cpu_seconds(procs), time.monotonic()
                time.sleep(0.5)
                share = (self._cpu_seconds(procs) - cpu0) / (time.monotonic() - t0) / self.workers
                measured = f"{len(procs)} workers at {share:.0%} of a core each"
                if share >= self._expected_share():
                    self._check_affinity(procs)
                    self._cpu_at_start = self._cpu_seconds(procs)
                    self._wall_at_start = time.monotonic()
                    return
            else:
                time.sleep(0.1)
        raise KtInterfError(
            f"CPU stress on cores {format_cpu_list(self.cores)} asked for {self.workers} workers at "
            f">= {self._expected_share():.0%} of a core each; measured {measured} after "
            f"{self.start_timeout_s:.0f} s",
            "the cores may be busy with higher-priority work or the machine is throttled",
            detail=self.child.log_tail(),
        )

    def _check_affinity(self, procs: list[psutil.Process]) -> None:
        for proc in procs:
            allowed = set(proc.cpu_affinity() or [])
            if not allowed <= set(self.cores):
                raise KtInterfError(
                    f"stress-ng worker {proc.pid} may run on cores {sorted(allowed)}, "
                    f"outside the requested {format_cpu_list(self.cores)}",
                    "this stress-ng ignores --taskset; use a newer stress-ng",
                )

    def achieved_share(self) -> float:
        """Mean share of a core each worker got since pressure was established (until stop)."""
        if self._final_share is not None:
            return self._final_share
        if self.child is None or not self._wall_at_start:
            return 0.0
        procs = self._workers_procs()
        wall = time.monotonic() - self._wall_at_start
        used = self._cpu_seconds(procs) - self._cpu_at_start
        return used / wall / self.workers if wall > 0 else 0.0

    def check(self) -> None:
        if self.child is None or not self.child.alive():
            raise KtInterfError(
                "stress-ng died during the measurement window",
                "see its log; a verdict without the pressure would be meaningless",
                detail=self.child.log_tail() if self.child else "",
            )
        alive = len(self._workers_procs())
        share = self.achieved_share()
        if alive < self.workers or share < self._expected_share():
            raise KtInterfError(
                f"CPU stress weakened during the window: {alive}/{self.workers} workers alive, "
                f"{share:.0%} of a core each (need >= {self._expected_share():.0%})",
                "the measurement is refused; check what else runs on these cores",
            )

    def evidence(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cores": self.cores,
            "workers": self.workers,
            "load_percent": self.load_percent,
            "achieved_core_share": self.achieved_share(),
        }

    def _stop(self) -> None:
        if self.child is not None:
            if self._final_share is None and self.child.alive():
                self._final_share = self.achieved_share()
            terminate(self.child)
