"""How the plugin talks to the user while it works: a ``Say`` is a callable taking one line.

Long waits (a server loading a 200 GB model, a filler growing, a lock held by another session)
must show progress; every layer takes a ``Say`` rather than printing, so the plugin decides
where the line goes (pytest's terminal, with capture suspended) and tests can collect lines.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import pytest

Say = Callable[[str], None]


def say_to(config: pytest.Config) -> Say:
    """Progress lines for the user, on the terminal, even while pytest captures the test's output.

    pytest captures fd 1 during a test, so a plain write is swallowed unless ``-s`` is given: the
    user of a 20-minute experiment would see only dots. The line is written through the terminal
    reporter with capture suspended, as pytest's own live logging does, starting on a line of its
    own after the dots. ``-q -q`` asks for quiet: nothing is said. An xdist worker's reporter
    writes where no one reads (execnet's channel owns the worker's stdout), but the worker's
    stderr is the controller's: there the line goes, named by worker, with capture suspended.
    Where there is no terminal reporter (``-p no:terminal``) the line goes to the terminal writer.
    """
    if config.get_verbosity() <= -2:
        return lambda message: None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    worker = getattr(config, "workerinput", {}).get("workerid")

    def say(message: str) -> None:
        line = f"ktinterf: {message}"
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            if worker is not None:
                sys.stderr.write(f"[{worker}] {line}\n")
                sys.stderr.flush()
            elif reporter is None:
                config.get_terminal_writer().line(line)
            else:
                reporter.write_line(line)

    return say
