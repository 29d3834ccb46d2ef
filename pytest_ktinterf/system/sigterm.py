"""SIGTERM is Ctrl-C while the plugin is in use.

A CI runner's timeout, ``docker stop``, systemd and ``kill`` send SIGTERM. Python's default for
it is to die at once, skipping every teardown: the server, the actors and their cgroups would be
left to the next session's reaper, and a 200 GB model's server would keep its RAM until then.
Raising ``KeyboardInterrupt`` instead makes pytest do what it does for Ctrl-C: stop the test,
tear the session's fixtures down (server and actors stopped, their records removed) and exit
with code 2 (interrupted).

Only the default disposition is replaced: a handler someone installed, or an inherited "ignore",
is theirs to keep. After the first SIGTERM further ones are ignored, so that a runner repeating
its signal cannot cut the teardown short (SIGKILL still can; the next session reaps what it
leaves). The previous disposition is restored when pytest unconfigures.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the teardown short
    raise KeyboardInterrupt("SIGTERM: stopping the session's server and actors")


def sigterm_as_ctrl_c() -> Callable[[], None]:
    """Make SIGTERM raise ``KeyboardInterrupt`` in the main thread; returns the undo.

    A no-op (whose undo does nothing) off the main thread, where signals cannot be handled, and
    when SIGTERM already has a disposition other than the default.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, _interrupt)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) in (_interrupt, signal.SIG_IGN):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return undo
