"""How a report section is written, as the sections that ``report.text`` places see it.

A protocol, so those sections (``time_text``, ``server_text``) need not import ``report.text``,
which imports them: aligned text for the terminal or Markdown, decided there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Style(Protocol):
    """A section's title and table writers (``report.text.TEXT`` or ``report.text.MARKDOWN``)."""

    @property
    def title(self) -> Callable[[str], str]: ...

    @property
    def table(self) -> Callable[[list[str], list[list[str]]], list[str]]: ...
