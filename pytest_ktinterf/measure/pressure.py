"""A condition's actor over the trials it serves: started for a condition trial, stopped after it,
or kept running into the next condition trial when the pairs are counterbalanced.

Counterbalanced pairs run in the order B C | C B | B C | C B ... (``measure.compare``): two
condition trials meet at every other pair boundary, and one actor serves both. Starting an actor
is the dearest part of a pair for the actors that hold memory (the RAM filler writes half of what
is available; KT's co-runner loads a model), so this halves the starts and stops without giving
the baseline any pressure: the actor is stopped before every baseline trial, as before.

An actor's evidence is frozen when it stops (``Actor.evidence``), so a trial served by a kept
actor gets it then; a trial recorded before an error still gets it when the actor is stopped on
the way out (:meth:`Pressure.stop` runs in the comparison's ``finally``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.measure.comparison import Comparison, Trial

Condition = Callable[[], contextlib.AbstractContextManager[Actor | None]]


class Pressure:
    """The condition's actor, running between :meth:`start` and :meth:`stop`, timed in ``result``."""

    def __init__(self, result: Comparison, condition: Condition) -> None:
        self.result = result
        self.condition = condition
        self.actor: Actor | None = None
        self._stack: contextlib.ExitStack | None = None
        self._served: list[Trial] = []

    def start(self) -> Actor | None:
        """The running actor, started first (timed as ``actor_start``: until its pressure is proven)."""
        if self._stack is None:
            starting = time.monotonic()
            with contextlib.ExitStack() as stack:
                self.actor = stack.enter_context(self.condition())
                self._stack = stack.pop_all()
            self.result.add_time("actor_start", time.monotonic() - starting)
        return self.actor

    def served(self, trial: Trial) -> None:
        """``trial`` ran under this actor: it gets the actor's evidence when the actor stops."""
        self._served.append(trial)

    def stop(self) -> None:
        """Stop the actor if it runs (timed as ``actor_stop``, with its settling); hand out its evidence."""
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        actor, self.actor = self.actor, None
        served, self._served = self._served, []
        stopping = time.monotonic()
        try:
            stack.close()
        finally:
            self.result.add_time("actor_stop", time.monotonic() - stopping)
        # Taken after stop: evidence is frozen then, with what only a stopped actor can report.
        evidence = actor.evidence() if actor is not None else None
        for trial in served:
            trial.actor = evidence
