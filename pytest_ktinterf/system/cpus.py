"""Core lists in the kernel's syntax ('0-3,8'): parsed from options, printed in reports and cpusets.

Here, not in ``options.py``, because actors, the docker backend and the report use them too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator

from pytest_ktinterf.errors import KtInterfError

# Above any kernel's NR_CPUS (at most 8192): a typo such as '0-99999999' must be refused, not
# expanded into a set of a hundred million cores.
MAX_CORE = 65535


def parse_cpu_list(text: str, option: str = "--kt-server-cpus", check_available: bool = True) -> list[int]:
    """Parse the kernel's cpu-list syntax ('0-3,8') into sorted core numbers.

    ``check_available``: the cores must be ones this process may use (not so for the cores of a
    remote Docker engine's host, which the engine checks itself).
    """
    cores: set[int] = set()
    try:
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if not 0 <= lo <= hi <= MAX_CORE:
                    raise ValueError(part)
                cores.update(range(lo, hi + 1))
            elif not 0 <= int(part) <= MAX_CORE:
                raise ValueError(part)
            else:
                cores.add(int(part))
    except ValueError as exc:
        raise KtInterfError(
            f"{option}={text!r} is not a core list (core numbers 0 to {MAX_CORE})",
            "write cores like '1' or '0-3,8'",
        ) from exc
    available = sorted(os.sched_getaffinity(0))
    missing = sorted(cores - set(available)) if check_available else []
    if not cores or missing:
        raise KtInterfError(
            f"{option}={text!r} names cores {missing or 'none'} that this process cannot use "
            f"(available: {format_cpu_list(available)})",
            f"choose cores from {format_cpu_list(available)}",
        )
    return sorted(cores)


def format_cpu_list(cores: list[int]) -> str:
    """The inverse of :func:`parse_cpu_list`, compacting runs ('0-3,8')."""
    ordered = sorted(set(cores))
    runs: list[str] = []
    start = 0
    for i, core in enumerate(ordered):
        if i + 1 == len(ordered) or ordered[i + 1] != core + 1:
            first = ordered[start]
            runs.append(str(first) if first == core else f"{first}-{core}")
            start = i + 1
    return ",".join(runs)


@contextlib.contextmanager
def off_cores(cores: Collection[int]) -> Iterator[frozenset[int]]:
    """Run the calling thread off ``cores`` inside the block when it may run elsewhere; yields where.

    The probe's work (stamping each token as it arrives) must not take time from the server it
    measures: a probe scheduled onto the server's core delays both. Linux applies
    ``sched_setaffinity(0)`` to the calling thread only, so the rest of the process (and the
    actors it starts outside the block) keep their cores. When every allowed core is the
    server's, nothing changes: a probe has to run somewhere.
    """
    before = frozenset(os.sched_getaffinity(0))
    allowed = before - frozenset(cores)
    if not allowed or allowed == before:
        yield before
        return
    os.sched_setaffinity(0, allowed)
    try:
        yield allowed
    finally:
        os.sched_setaffinity(0, before)
