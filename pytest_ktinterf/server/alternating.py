"""Two servers taking turns on one machine: same-session A/B where both cannot be resident.

A KT box holds one copy of its model (a 200 GB DeepSeek fills its RAM), so the current and the
candidate server cannot both be up. With ``--kt-candidate-residency alternate`` each is started
for its trials and stopped before the other starts; only one is ever resident.

What it costs: every switch is a server start (process start, model load, readiness) and one
warm-up round, each timed and kept in the comparison's record (``server_starts``).

How the pairing stays honest (``measure.compare``): every pair starts with the server that is
already resident, so the order alternates by itself (current-candidate, candidate-current, ...).
Each start then serves two trials, one of each of two neighbouring pairs; n pairs take n
switches, each pair's two trials are consecutive (separated only by the switch), and each
server is measured about as often right after its warm-up as one trial later, so a start-up
transient (cold page cache, first allocations) cannot masquerade as a difference between them.
The stopped server's whole process tree must be gone before the other starts (else a
``ServerError``): two resident is what taking turns is for.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import psutil

from pytest_ktinterf.errors import ServerError
from pytest_ktinterf.measure.compare import Arm
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.server.base import Say, ServerHandle

Starter = Callable[[], contextlib.AbstractContextManager[ServerHandle]]
STOP_GRACE_S = 5.0  # how long a stopped server's processes may take to be gone before the next starts


class Alternating:
    """Named servers (the current, the candidate) of which at most one is resident at a time.

    ``make_probe`` calibrates a probe on a server's first start; later starts reuse it with the
    new URL (the workload, hence the calibration, does not change between starts).
    ``on_start`` is told of every start (the testbed records the server's identity).
    """

    def __init__(
        self,
        starters: dict[str, Starter],
        make_probe: Callable[[ServerHandle], Probe],
        say: Say | None = None,
        on_start: Callable[[str, ServerHandle], None] | None = None,
    ) -> None:
        self._starters = starters
        self._make_probe = make_probe
        self._say = say
        self._on_start = on_start
        self._probes: dict[str, Probe] = {}
        self._stack: contextlib.ExitStack | None = None
        self._resident: tuple[str, ServerHandle] | None = None
        self.starts = 0

    def handle(self, name: str) -> ServerHandle:
        """``name``'s server, made resident (the other stopped first) if it is not."""
        if self._resident is None or self._resident[0] != name:
            self._switch(name)
        assert self._resident is not None
        return self._resident[1]

    def probe(self, name: str) -> Probe:
        """``name``'s probe, calibrated on its first start."""
        self.handle(name)
        return self._probes[name]

    def arm(self, name: str) -> Arm:
        """The comparison arm of ``name``'s server: it takes its turn before each trial.

        The server is started (and its probe calibrated) only if it never was: which one is
        resident when the pairs begin decides their order, not a start made here.
        """
        if name not in self._probes:
            self.handle(name)
        return Arm(self._probes[name], processes=lambda: self._processes(name), turns=self, name=name)

    def holds(self, name: str) -> bool:
        """Whether ``name``'s server is the resident one."""
        return self._resident is not None and self._resident[0] == name

    def take(self, name: str, streams: int) -> dict[str, Any] | None:
        """Make ``name`` resident for a trial at ``streams``: what the switch cost, or None (no switch)."""
        if self.holds(name):
            return None
        started = time.monotonic()
        left_running = self._switch(name)
        ready = time.monotonic()
        self._probes[name].measure(streams)  # warm-up: the first requests after a start pay one-off costs
        done = time.monotonic()
        return {
            "server": name,
            "start_s": round(ready - started, 3),
            "warm_up_s": round(done - ready, 3),
            "left_running": left_running,  # the stopped server's processes alive after it (always none)
        }

    def error_detail(self) -> str:
        """The resident server's state and log tail (for an error part-way through a trial)."""
        if self._resident is None:
            return "(no server was resident)"
        name, handle = self._resident
        return f"the {name} server: {handle.error_detail()}"

    def stop(self) -> None:
        """Stop the resident server, if any (the testbed's close calls this too)."""
        stack, self._stack, self._resident = self._stack, None, None
        if stack is not None:
            stack.close()

    def _switch(self, name: str) -> list[int]:
        """Stop the resident server, start ``name``'s; the old server's pids still alive (none, or a bug)."""
        old = self._resident
        before = old[1].processes() if old is not None else []
        self.stop()
        _, alive = psutil.wait_procs(before, timeout=STOP_GRACE_S)
        left = [p.pid for p in alive]
        if old is not None and left:  # never two resident: that is what taking turns is for
            raise ServerError(
                f"the {old[0]} server's processes {left} still run {STOP_GRACE_S:.0f} s after its stop, "
                f"so the {name} server was not started beside it",
                f"stop them (kill {' '.join(map(str, left))}) and run again",
            )
        if self._say is not None and self.starts:
            self._say(f"starting the {name} server (its turn; the other is stopped)")
        stack = contextlib.ExitStack()
        with contextlib.ExitStack() as on_error:
            on_error.callback(stack.close)
            handle = stack.enter_context(self._starters[name]())
            self.starts += 1
            if self._on_start is not None:
                self._on_start(name, handle)
            probe = self._probes.get(name)
            if probe is None:
                self._probes[name] = self._make_probe(handle)
            else:
                probe.url = handle.url
            on_error.pop_all()
        self._stack, self._resident = stack, (name, handle)
        return left

    def _processes(self, name: str) -> list[psutil.Process]:
        """The processes of ``name``'s server while it is resident (none while it is stopped)."""
        return self._resident[1].processes() if self._resident and self._resident[0] == name else []
