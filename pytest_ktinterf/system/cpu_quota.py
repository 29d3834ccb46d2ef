"""The CPU cap of ``--kt-server-cpu-quota``: a slowdown of known size, made on purpose.

A regression gate is trusted only once it has caught a regression whose size is known. CFS
bandwidth control makes one on any Linux box: a cgroup allowed ``fraction x cores x period`` of CPU
time per period lets the server use at most ``fraction`` of its pinned cores' time, so a CPU-bound
server gets slower by a known amount while nothing else on the host is touched (as root; cgroup v1
``cpu.cfs_quota_us`` or v2 ``cpu.max``). The groups are :class:`cgroups.Cgroup` s, so they are
recorded and reaped exactly like the server's memory cgroup.

Unlike memory pages, CPU time is charged to the cgroup a thread is in *when it runs*, so the
server may be moved in right after it is spawned (``server/process.py`` does) and nothing it did
before counts against anyone. Evidence that the cap acts is read from the kernel while the server
runs (:func:`cpu_evidence`): ``cpu.stat``'s periods and throttled periods, and the group's CPU time
(v2 ``usage_usec``; v1 ``cpuacct.usage``, from a ``cpuacct`` group beside the ``cpu`` one where
the two hierarchies are mounted apart, as on many hybrid hosts).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.cgroups import Cgroup, v1_directory

PERIOD_US = 100_000  # the kernel's default CFS period; the quota is refilled once per period
MIN_QUOTA_US = 1_000  # the kernel refuses a smaller quota per period
OPTION = "--kt-server-cpu-quota"


def parse_fraction(value: str | None, backend: str, option: str = OPTION) -> float | None:
    """The option's value checked at start-up: a fraction in (0, 1], for a server we start.

    Here rather than in ``options.py`` so the cap's rules live in one module; checked before any
    server starts, so a typo costs a second, not a model load.
    """
    if value is None:
        return None
    try:
        fraction = float(value)
    except ValueError:
        fraction = math.nan
    if not 0 < fraction <= 1:  # NaN fails too
        raise KtInterfError(
            f"{option}={value!r} is not a fraction in (0, 1]",
            f"give the share of its pinned cores' time the server may use, e.g. {option}=0.8",
        )
    if backend == "external":
        raise KtInterfError(
            f"{option} needs a server the plugin starts; an external server's CPU is not ours to cap",
            f"drop {option}, or drop --kt-url and let the plugin start the server "
            "(embedded, --kt-server-cmd or --kt-preset)",
        )
    return fraction


def quota_us(fraction: float, cores: int) -> int:
    """CPU time per period for ``fraction`` of ``cores`` cores' time (refused below the kernel's 1 ms)."""
    quota = round(fraction * cores * PERIOD_US)
    if quota < MIN_QUOTA_US:
        raise KtInterfError(
            f"{OPTION}={fraction:g} of {cores} core(s) is {quota} us per {PERIOD_US} us period, below "
            f"the kernel's minimum of {MIN_QUOTA_US} us",
            f"give {OPTION} of at least {MIN_QUOTA_US / (cores * PERIOD_US):g}",
        )
    return quota


@dataclass
class CpuCgroup:
    """The CPU cgroup(s) around a server we start: capped at creation, removed with the server."""

    groups: list[Cgroup]  # the cpu (or v2) group first, then a v1 cpuacct group where mounted apart
    fraction: float
    cores: int
    quota_us: int

    @classmethod
    def create(cls, name: str, fraction: float, cores: int) -> CpuCgroup:
        """New capped group(s) next to this process, empty; raises (one line) where there can be none.

        Unlike the memory cgroup (made where possible, for actors that may never run) this one
        was asked for: running the server uncapped would measure the wrong thing, so it refuses.
        """
        quota = quota_us(fraction, cores)
        if os.geteuid() != 0:
            raise KtInterfError(
                f"{OPTION} needs root: the cap is a CPU cgroup around the server",
                f"run pytest as root, or drop {OPTION}",
            )
        groups: list[Cgroup] = []
        try:
            cpu = Cgroup.make("cpu", os.getpid(), f"{name}-cpu")
            groups.append(cpu)
            if cpu.version == 2:
                cpu.write("cpu.max", f"{quota} {PERIOD_US}")
            else:
                cpu.write("cpu.cfs_period_us", str(PERIOD_US))
                cpu.write("cpu.cfs_quota_us", str(quota))
                apart = not (cpu.path / "cpuacct.usage").exists()
                if apart and v1_directory(os.getpid(), "cpuacct") is not None:
                    groups.append(Cgroup.make("cpuacct", os.getpid(), f"{name}-cpuacct", version=1))
        except (KtInterfError, OSError) as exc:
            for group in reversed(groups):
                group.remove()
            if isinstance(exc, KtInterfError):
                raise
            raise KtInterfError(
                f"{OPTION}: cannot cap the server's CPU at {quota} us per {PERIOD_US} us ({exc})",
                f"check that the cgroup above ({groups[0].home if groups else '?'}) allows that much, "
                f"or lower {OPTION}",
            ) from exc
        return cls(groups=groups, fraction=fraction, cores=cores, quota_us=quota)

    @property
    def paths(self) -> list[Path]:
        return [group.path for group in self.groups]

    def add(self, pids: list[int]) -> None:
        """Move processes (each with all its threads) into every group."""
        for group in self.groups:
            group.add(pids)

    def pids(self) -> list[int]:
        return self.groups[0].pids()

    def meta(self) -> dict[str, object]:
        """What the server's handle records (``meta``), so reports and callers can find the cap."""
        return {"cpu_quota": self.fraction, "cpu_cgroup": [str(path) for path in self.paths]}

    def describe(self) -> str:
        return (
            f"CPU capped at {self.fraction:g} of {self.cores} core(s): {self.quota_us} us per "
            f"{PERIOD_US} us period in {self.paths[0]}"
        )

    def evidence(self) -> dict[str, float]:
        return cpu_evidence(self.paths)

    def remove(self) -> None:
        """Processes back home, directories removed, records dropped. Idempotent."""
        for group in reversed(self.groups):
            group.remove()


def _keyed(path: Path) -> dict[str, int]:
    """A ``key value`` per line file (``cpu.stat``) as a dict."""
    stat: dict[str, int] = {}
    for row in path.read_text().splitlines():
        key, _, value = row.partition(" ")
        if value.strip().lstrip("-").isdigit():
            stat[key] = int(value)
    return stat


def cpu_evidence(paths: Sequence[str | Path]) -> dict[str, float]:
    """What the kernel says the cap has done so far, read from the group's directories.

    ``paths`` is ``handle.meta["cpu_cgroup"]`` (or :attr:`CpuCgroup.paths`). Counters run from the
    group's creation: ``nr_periods`` (periods in which it ran), ``nr_throttled`` (those in which
    it used up its quota and was stopped), ``throttled_s``, ``usage_s`` (its CPU time; NaN on a v1
    host without ``cpuacct``). ``quota_cores`` is the cap in cores and ``at_s`` the monotonic time
    of the reading, so that two readings give a usage rate (:func:`usage_rate`).
    """
    first = Path(paths[0])
    stat = _keyed(first / "cpu.stat")
    if (first / "cpu.max").exists():
        quota, period = (first / "cpu.max").read_text().split()
        usage, throttled = stat["usage_usec"] / 1e6, stat.get("throttled_usec", 0) / 1e6
    else:
        quota = (first / "cpu.cfs_quota_us").read_text().strip()
        period = (first / "cpu.cfs_period_us").read_text().strip()
        acct = next((Path(p) / "cpuacct.usage" for p in paths if (Path(p) / "cpuacct.usage").exists()), None)
        usage = int(acct.read_text()) / 1e9 if acct is not None else math.nan
        throttled = stat.get("throttled_time", 0) / 1e9
    at = time.monotonic()  # right after the usage was read
    return {
        "nr_periods": stat.get("nr_periods", 0),
        "nr_throttled": stat.get("nr_throttled", 0),
        "throttled_s": throttled,
        "usage_s": usage,
        "quota_cores": math.inf if quota in ("max", "-1") else int(quota) / int(period),
        "at_s": at,
    }


def usage_rate(before: dict[str, float], after: dict[str, float]) -> float:
    """The group's CPU use between two :func:`cpu_evidence` readings, in cores (1.0 = one core busy)."""
    return (after["usage_s"] - before["usage_s"]) / (after["at_s"] - before["at_s"])
