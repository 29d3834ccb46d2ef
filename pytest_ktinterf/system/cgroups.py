"""Memory cgroups we create around a server, and always remove (v1 or v2, as root).

A memory cgroup is how RAM overflow happens *safely*: the limit applies to the server alone, its
evicted pages (KT's mmapped GGUF experts, llama.cpp's weights) are re-read from disk as major
faults, and nothing else on the host is at risk. The server is *started* inside it (unlimited),
because pages are charged to the cgroup of the process that first touches them and current
kernels no longer move charges with a process (v1's ``move_charge_at_immigrate`` is a no-op
since Linux 6.x). The cgroup is a child of ours (limits above still apply), and a registry record
lets the next session remove it if this one is killed. :class:`Cgroup` is that shared part, which
the CPU cgroup of ``--kt-server-cpu-quota`` (``system/cpu_quota.py``) reuses.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.registry import write_record

_FILES = {
    1: {"limit": "memory.limit_in_bytes", "usage": "memory.usage_in_bytes", "anon": "rss", "file": "cache"},
    2: {"limit": "memory.max", "usage": "memory.current", "anon": "anon", "file": "file"},
}
_C = TypeVar("_C", bound="Cgroup")
ROOT_HINT = "run pytest as root (cgroups need it) with the memory controller mounted"


def mounts() -> list[tuple[str, str, list[str]]]:
    """The cgroup hierarchies mounted: (mount point, "cgroup" or "cgroup2", mount options)."""
    rows = []
    with open("/proc/mounts") as handle:
        for row in handle:
            parts = row.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                rows.append((parts[1], parts[2], parts[3].split(",")))
    return rows


def v1_directory(pid: int, controller: str) -> Path | None:
    """The cgroup v1 directory of ``controller`` that ``pid`` lives in, or None where v1 lacks it."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, rel = line.split(":", 2)
        if controller in controllers.split(","):
            for mount, fstype, opts in mounts():
                if fstype == "cgroup" and controller in opts:
                    return Path(mount + rel)
    return None


def locate(pid: int, controller: str = "memory") -> tuple[int, Path]:
    """(version, directory) of the ``controller`` cgroup ``pid`` lives in; raises if there is none.

    v1 first: on a hybrid host (v1 controllers beside an empty v2 ``unified`` mount) the
    controller is only usable in its v1 hierarchy.
    """
    try:
        found = v1_directory(pid, controller)
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        mounted = mounts()
    except OSError as exc:
        raise KtInterfError(f"cannot read the cgroup of process {pid} ({exc})", ROOT_HINT) from exc
    if found is not None:
        return 1, found
    for line in lines:
        if line.startswith("0::"):
            for mount, fstype, _ in mounted:
                if fstype == "cgroup2":
                    return 2, Path(mount + line[3:])
    other = ", or use host overflow" if controller == "memory" else ""
    raise KtInterfError(
        f"no {controller} cgroup controller is mounted on this host",
        f"mount cgroup v1 '{controller}' or cgroup v2 with the {controller} controller{other}",
    )


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def read_stat(directory: Path) -> dict[str, int]:
    stat: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for row in (directory / "memory.stat").read_text().splitlines():
            key, _, value = row.partition(" ")
            with contextlib.suppress(ValueError):
                stat[key] = int(value)
    return stat


def pids_in(directory: Path) -> list[int]:
    """The processes in the cgroup ``directory`` itself (not in its children); [] if unreadable."""
    try:
        return [int(x) for x in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _evacuate_and_remove(path: Path, home: Path, timeout_s: float = 10.0) -> None:
    """Move every process in ``path`` to ``home`` and remove ``path`` (retrying while busy)."""
    deadline = time.monotonic() + timeout_s
    while path.exists():
        for pid in pids_in(path):
            with contextlib.suppress(OSError):  # it may have exited meanwhile
                _write(home / "cgroup.procs", str(pid))
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise KtInterfError(
                    f"cannot remove cgroup {path} ({exc.strerror})",
                    f"move its processes out (echo PID > {home}/cgroup.procs) and rmdir it",
                ) from exc
            time.sleep(0.05)


_SCOPE_HINT = {"memory": "MemoryMax", "cpu": "CPUQuota"}  # the systemd way around a v2 without delegation


@dataclass
class Cgroup:
    """A cgroup directory of ours in one controller's hierarchy, recorded for the reaper.

    The generic part shared by the memory and the CPU cgroups around a server: made as a child
    of the cgroup a process lives in (limits above still apply), recorded in the registry so the
    next session removes it if this one is killed, and removed with its record at the end.
    """

    path: Path
    version: int
    home: Path
    record: Path | None = None

    @classmethod
    def make(cls: type[_C], controller: str, near_pid: int, name: str, version: int | None = None) -> _C:
        """A new child of the ``controller`` cgroup ``near_pid`` lives in (not yet holding anything).

        ``version=1`` takes only a v1 hierarchy (e.g. ``cpuacct`` beside ``cpu``), never v2.
        """
        if version == 1:
            found = v1_directory(near_pid, controller)
            if found is None:
                raise KtInterfError(f"no cgroup v1 '{controller}' hierarchy is mounted", ROOT_HINT)
            version, home = 1, found
        else:
            version, home = locate(near_pid, controller)
        if version == 2 and controller not in (home / "cgroup.subtree_control").read_text().split():
            raise KtInterfError(
                f"cgroup v2 at {home} does not delegate the {controller} controller to children",
                f"echo +{controller} > {home}/cgroup.subtree_control (needs a cgroup without processes), "
                f"or start the server in a systemd scope with {_SCOPE_HINT.get(controller, controller)}",
            )
        path = home / f"ktinterf-{name}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        try:
            path.mkdir()
        except OSError as exc:
            raise KtInterfError(f"cannot create cgroup {path} ({exc.strerror})", ROOT_HINT) from exc
        group = cls(path=path, version=version, home=home)
        group.record = write_record(
            path.name, {"kind": "cgroup", "path": str(path), "home": str(home), "name": name}
        )
        return group

    def add(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                _write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return pids_in(self.path)

    def write(self, name: str, value: str) -> None:
        """Set one of the group's control files (``cpu.max``, ``memory.limit_in_bytes`` ...)."""
        _write(self.path / name, value)

    def remove(self) -> None:
        """Processes back home, directory removed, record dropped. Idempotent."""
        _evacuate_and_remove(self.path, self.home)
        if self.record is not None:
            self.record.unlink(missing_ok=True)


@dataclass
class MemoryCgroup(Cgroup):
    """A memory cgroup of ours: created next to a process, limited, and removed."""

    @classmethod
    def create(cls, near_pid: int, name: str) -> MemoryCgroup:
        """A new child of the memory cgroup ``near_pid`` lives in (not yet holding anything)."""
        group = cls.make("memory", near_pid, name)
        if group.version == 1:  # bring the processes' existing pages along when they move in
            with contextlib.suppress(OSError):
                _write(group.path / "memory.move_charge_at_immigrate", "3")
        return group

    @classmethod
    def try_create(cls, name: str) -> tuple[MemoryCgroup | None, str]:
        """A new cgroup next to this process, or ``(None, why not)`` where there can be none."""
        if os.geteuid() != 0:
            return None, "not root: memory cgroups need root"
        try:
            return cls.create(os.getpid(), name), "created"
        except (KtInterfError, OSError) as exc:
            return None, str(exc)

    def _file(self, key: str) -> Path:
        return self.path / _FILES[self.version][key]

    def set_limit(self, limit: int) -> None:
        """Set the limit; the kernel reclaims down to it at once or refuses with EBUSY."""
        try:
            _write(self._file("limit"), str(limit))
        except OSError as exc:
            raise KtInterfError(
                f"memory limit {limit / 2**20:.0f} MiB on {self.path} refused ({exc.strerror}): it is "
                f"below what the kernel can evict (anonymous memory {self.anon() / 2**20:.0f} MiB, no swap)",
                "raise the limit or the working-set fraction of the contained overflow",
            ) from exc

    def unlimit(self) -> None:
        """No limit again (the state the server was started in)."""
        _write(self._file("limit"), "-1" if self.version == 1 else "max")

    def usage(self) -> int:
        return int(self._file("usage").read_text())

    def stat(self) -> dict[str, int]:
        return read_stat(self.path)

    def anon(self) -> int:
        return self.stat().get(_FILES[self.version]["anon"], 0)

    def file_pages(self) -> int:
        return self.stat().get(_FILES[self.version]["file"], 0)

    def major_faults(self) -> int:
        return self.stat().get("pgmajfault", 0)


def drop_file_cache(path: Path) -> None:
    """Evict ``path``'s unmapped pages from the page cache, so the next reader is charged for them.

    A model file read before (by ``fetch``'s checksum, an earlier server) sits in the page cache
    charged to whoever read it; a server started in a fresh cgroup would map those pages without
    being charged, and no limit could ever evict them.
    """
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())  # dirty pages (a fresh copy) cannot be dropped until written
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def reap_cgroup(record: dict[str, object]) -> list[str]:
    """Remove a cgroup a dead session left behind; its processes (if any) go back home."""
    path, home = Path(str(record["path"])), Path(str(record.get("home", "")))
    if not path.exists():
        return []
    _evacuate_and_remove(path, home if home.is_dir() else path.parent)
    return [f"cgroup {path.name} ({record.get('name', '?')})"]
