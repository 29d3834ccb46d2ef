"""What the baseline gate is asked to do this session, resolved from the ``--kt-baseline-*`` options.

Kept apart from ``options.py`` (which parses it) and from ``session.py`` (which acts on it) so
that both can import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BaselineSettings:
    """What the baseline gate does this session (``baseline/gatekeeper.py`` acts on it)."""

    save: bool = False
    compare: bool = False
    update: bool = False
    strict: bool = False
    directory: str = "baselines"
    file: str | None = None
    thresholds: dict[str, float] = field(default_factory=lambda: {"*": 0.10})
    sessions: int = 3

    @property
    def active(self) -> bool:
        return self.save or self.compare or self.update
