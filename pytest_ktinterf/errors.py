"""The one error type users see.

A performance engineer running a long job on a GPU box wants to know, in one line, what went
wrong and what to do about it -- not a traceback through our internals. Every failure we can
anticipate is raised as :class:`KtInterfError` with a ``cause`` and a ``fix``; the plugin renders
it as that one line (plus an optional detail block such as a server log tail).
"""

from __future__ import annotations

from typing import Any

# Every character ``str.splitlines`` breaks at, written as its escape: a user's text inside a
# cause (a TOML key holding "\n", a server's reply) must not split the one line in two.
_LINE_BREAKS = {ord(c): c.encode("unicode_escape").decode() for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """``text`` with each line break written as its escape (``a\\nb``): the one line users see."""
    return text.translate(_LINE_BREAKS)


class KtInterfError(Exception):
    """A failure the user can act on.

    ``cause`` says what happened, ``fix`` what to do; ``detail`` (optional, multi-line) carries
    evidence such as the tail of a server log. ``comparison`` is set when the error stopped a
    comparison part-way: the partial ``Comparison`` (its finished pairs, marked aborted), which
    the ``kt_compare`` fixture records before the error fails the test.
    """

    comparison: Any = None

    def __init__(self, cause: str, fix: str, detail: str = "") -> None:
        self.cause = cause
        self.fix = fix
        self.detail = detail
        super().__init__(self.line())

    def add_detail(self, text: str) -> None:
        """Append an evidence block (kept after any detail the raiser already gave)."""
        text = text.rstrip()
        if text:
            self.detail = f"{self.detail.rstrip()}\n{text}" if self.detail.strip() else text

    def line(self) -> str:
        """The single line shown to the user: line breaks in the cause or fix are escaped, not kept."""
        return one_line(f"{self.cause} -- fix: {self.fix}")

    def render(self) -> str:
        """The line plus the detail block, if any."""
        if not self.detail:
            return self.line()
        indented = "\n".join("    " + row for row in self.detail.rstrip().splitlines())
        return f"{self.line()}\n{indented}"


class ServerError(KtInterfError):
    """The server failed, died, or answered what no valid measurement can come from.

    Raised by the probe; wherever the server is known (a comparison, the plugin's report hook)
    the server's log tail is attached as ``detail``, since that is where the cause is written.
    """


class InvalidMeasurement(ServerError):
    """A measurement that must not be trusted (prefix-cache hit, short decode, missing tokens)."""
