"""The order of a comparison's trials, for scripted probes that answer by call number.

``compare`` counterbalances its pairs: B C | C B | B C | C B ... (``measure/compare.py``), after
one warm-up round. Spelled out here on its own, not imported from the code under test, so that a
change of order shows up as failing tests rather than as fakes that silently follow it.
"""

from __future__ import annotations


def trial_of_call(calls: int, rounds: int = 1) -> tuple[int, bool]:
    """``(pair, is_condition)`` of the trial that ``probe.measure`` call number ``calls`` belongs to.

    Call 1 is the warm-up round (reported as pair -1, baseline); settling rounds are ``warm``
    calls and not counted here.
    """
    if calls <= 1:
        return -1, False
    trial = (calls - 2) // rounds
    pair, second = divmod(trial, 2)
    return pair, bool(second) != bool(pair % 2)
