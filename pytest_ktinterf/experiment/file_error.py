"""The error of a malformed experiment file: the file, the key, what is expected there, the fix.

A :class:`~pytest_ktinterf.errors.KtInterfError`, so it is rendered like every other mistake a
user can make: one line ending in ``-- fix: ...`` (before, it was a plain ``Exception`` whose fix
was optional, so most file mistakes said what was wrong but not what to do). Kept out of
``schema.py`` so that module stays a readable list of the rules.
"""

from __future__ import annotations

from pathlib import Path

from pytest_ktinterf.errors import KtInterfError


def default_fix(key: str, problem: str, expected: str) -> str:
    """What to do when the raiser named no fix: derived from the problem, so it reads as an action."""
    if problem.startswith("is not a known"):
        return f"remove [{key}] or correct its spelling"
    if problem.startswith(("is missing", "has no ")):
        return f"add [{key}]: {expected}"
    return f"change [{key}] to {expected}"


class ExperimentFileError(KtInterfError):
    """A mistake in an experiment file: which file, which key, what is expected.

    ``str()`` and :meth:`line` read ``<file>: [<key>] <problem>; expected <expected> -- fix: <fix>``.
    """

    def __init__(self, path: Path | str, key: str, problem: str, expected: str, fix: str = "") -> None:
        self.path, self.key, self.problem, self.expected = Path(path), key, problem, expected
        shown = key or '""'  # TOML allows an empty key; "[]" would name nothing
        super().__init__(
            f"{path}: [{shown}] {problem}; expected {expected}", fix or default_fix(shown, problem, expected)
        )
