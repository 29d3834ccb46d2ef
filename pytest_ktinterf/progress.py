"""How the plugin talks to the user while it works: a ``Say`` is a callable taking one line.

Long waits (a server loading a 200 GB model, a filler growing, a lock held by another session)
must show progress; every layer takes a ``Say`` rather than printing, so the plugin decides
where the line goes (pytest's terminal, with capture suspended) and tests can collect lines.
"""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]
