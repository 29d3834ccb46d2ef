"""The actor contract: pressure that is established before measuring and proven after.

An actor is a context manager. ``start()`` returns only once the pressure is real (measured), or
raises saying what was asked and what was measured. ``evidence()`` afterwards says what the
actor achieved over its whole alive window, so a comparison can refuse a verdict when the
pressure was not there (measurement note 3: an actor that died half-way hides in the median).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class Actor:
    """Base class: subclasses implement ``_start``, ``_stop`` and ``evidence``."""

    name: str = "actor"
    window: Window = field(default_factory=Window)

    def start(self) -> None:
        self._start()
        self.window.started = time.perf_counter()

    def stop(self) -> None:
        if self.window.started is not None and self.window.stopped is None:
            self.window.stopped = time.perf_counter()
        self._stop()

    def check(self) -> None:
        """Raise if the pressure is no longer there (called after a measurement window)."""

    def evidence(self) -> dict[str, Any]:
        return {"name": self.name}

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
