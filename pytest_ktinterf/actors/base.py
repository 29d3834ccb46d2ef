"""The actor contract: pressure that is established before measuring and proven after.

An actor is a context manager. ``start()`` returns only once the pressure is real (measured), or
raises saying what was asked and what was measured. ``check()`` after a measurement window raises
if the pressure weakened. ``evidence()`` says what the actor achieved over its whole alive window
(frozen at ``stop()``), so a comparison can refuse a verdict when the pressure was not there
(measurement note 3: an actor that died half-way hides in the median).

Every evidence record carries ``kind``, ``target``, ``achieved`` and ``unit`` so reports can print
"asked X, got Y" for any actor without knowing its type.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_ktinterf.errors import KtInterfError


@dataclass
class Window:
    """When an actor was alive and under full pressure (``time.perf_counter`` seconds)."""

    started: float | None = None
    stopped: float | None = None

    def covers(self, t_start: float, t_end: float) -> bool:
        return (
            self.started is not None
            and self.started <= t_start
            and (self.stopped is None or t_end <= self.stopped)
        )


def wait_for(
    probe: Callable[[], tuple[bool, str]],
    *,
    timeout_s: float,
    asked: str,
    fix: str,
    interval_s: float = 0.1,
    detail: Callable[[], str] | None = None,
    progress: Callable[[str], None] | None = None,
    note_every_s: float = 10.0,
) -> str:
    """Poll ``probe`` (returning ``(done, what was measured)``) until done or the deadline.

    Returns the last measurement. On timeout raises :class:`KtInterfError` naming what was asked
    and what was measured last, so an actor that cannot establish its pressure never hangs and
    never silently passes. ``progress`` is told every ``note_every_s`` on long waits.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    next_note = started + note_every_s
    measured = "nothing measured yet"
    while True:
        done, measured = probe()
        if done:
            return measured
        now = time.monotonic()
        if now >= deadline:
            raise KtInterfError(
                f"{asked}; measured {measured} after {timeout_s:.0f} s",
                fix,
                detail=detail() if detail is not None else "",
            )
        if progress is not None and now >= next_note:
            progress(f"{asked}: {measured} ({now - started:.0f} s / {timeout_s:.0f} s)")
            next_note = now + note_every_s
        time.sleep(interval_s)


@dataclass
class Actor:
    """Base class: subclasses implement ``_start``, ``_stop``, ``check`` and ``_live_evidence``.

    Evidence is frozen here, once for every actor: ``stop()`` reads the live record while the
    pressure is still there (``_pressure_alive``) and before ``_stop()`` gives the resource back,
    and ``evidence()`` returns that record from then on. Read any later, it would describe the
    release (a terminated filler holds nothing), not the alive window the measurements ran in.
    """

    name: str = "actor"
    window: Window = field(default_factory=Window)
    _frozen: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        self._start()
        self.window.started = time.perf_counter()

    def stop(self) -> None:
        """Idempotent: safe to call twice, after a failed start, and from fixture teardown."""
        if self.window.started is not None and self.window.stopped is None:
            self.window.stopped = time.perf_counter()
        try:
            if self._frozen is None and self._pressure_alive():
                self._settle_evidence()
                self._frozen = self._live_evidence()
        finally:
            self._stop()

    def check(self) -> None:
        """Raise if the pressure is no longer there (called after a measurement window)."""

    def evidence(self) -> dict[str, Any]:
        """What the actor achieved: over its whole alive window once stopped, live until then."""
        return self._frozen if self._frozen is not None else self._live_evidence()

    def _live_evidence(self) -> dict[str, Any]:
        """The record as measured now (``kind``, ``target``, ``achieved``, ``unit`` and details)."""
        return {"name": self.name}

    def _pressure_alive(self) -> bool:
        """Whether, at ``stop()``, the live record still describes the pressure, so it is frozen.

        True while the pressure is in place (its process alive, its limit set). The default,
        False, freezes nothing: such an actor's evidence stays live after stop, for figures that
        exist only once it has ended (stress-ng prints its own metrics at exit).
        """
        return False

    def _settle_evidence(self) -> None:
        """Bring the live record up to date just before it is frozen (default: nothing to do).

        A last reading (which fails quietly: a weakened pressure shows in the record), or stopping
        a sampler, so that nothing read during the release can count as the alive window.
        """

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Actor:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
