"""Parsers of single ``--kt-*`` option values: each bad value is one line naming the option and the fix.

Kept apart from ``options.py`` (which options exist and how they combine) so that file stays a
readable list of the settings.
"""

from __future__ import annotations

import math
import shlex
from urllib.parse import urlsplit

from pytest_ktinterf.errors import KtInterfError


def integer(name: str, value: str | None, minimum: int = 1, maximum: int = 2**31 - 1) -> int | None:
    """A whole number in [minimum, maximum]; the cap keeps a run of zeros from overflowing
    ``float()`` later (the timeouts are floats) and a port within 65535."""
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise KtInterfError(f"--kt-{name}={value!r} is not valid", f"give an integer >= {minimum}")
    if number > maximum:
        raise KtInterfError(f"--kt-{name}={value!r} is too large", f"give an integer <= {maximum}")
    return number


def gib(name: str, value: str | None) -> float | None:
    """A size in GiB, 0 or more: NaN and inf are refused (every comparison with NaN is false)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < math.inf:
        raise KtInterfError(f"--kt-{name}={value!r} is not valid", "give a size in GiB, e.g. 2 or 0.5")
    return number


def yes_no(name: str, value: str | None) -> bool:
    text = (value or "no").strip().lower()
    if text in ("yes", "true", "1", "on"):
        return True
    if text in ("no", "false", "0", "off"):
        return False
    raise KtInterfError(f"--kt-{name}={value!r} is not valid", "give yes or no")


def choice(name: str, value: str | None, choices: tuple[str, ...]) -> str:
    text = (value or choices[0]).strip().lower()
    if text not in choices:
        raise KtInterfError(f"--kt-{name}={value!r} is not valid", f"give one of {', '.join(choices)}")
    return text


_HOST_PORT_FIX = "give the server's host and port, e.g. --kt-url http://127.0.0.1:8080"


def parse_url(value: str | None) -> str | None:
    """``--kt-url`` checked at start: ``127.0.0.1:9`` would otherwise fail later, blaming the server.

    Without a scheme httpx reads ``localhost`` of ``localhost:8080`` as the scheme, and the
    external backend then says "check that it is an OpenAI-compatible server" about a typo.
    """
    if value is None:
        return None
    text = value.strip().rstrip("/")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # an unclosed "[" of an IPv6 host
        raise KtInterfError(f"--kt-url={value!r} cannot be read ({exc})", _HOST_PORT_FIX) from None
    try:
        port_ok = parts.port != 0
    except ValueError:  # not a number, or above 65535
        port_ok = False
    if "://" not in text and parts.scheme.lower() not in ("http", "https"):
        problem, fix = "has no scheme", f"add http://, e.g. --kt-url http://{text}"
    elif parts.scheme.lower() not in ("http", "https"):
        problem, fix = "is not an HTTP URL", f"use http:// or https://, e.g. --kt-url http://{parts.netloc}"
    elif not parts.hostname or not port_ok:
        problem = "has no host" if not parts.hostname else "has an invalid port"
        fix = _HOST_PORT_FIX
    else:
        return text
    raise KtInterfError(f"--kt-url={value!r} {problem}", fix)


def words(option: str, text: str | None) -> list[str]:
    """``text`` split as a shell splits it (the options that hold several words or a command).

    An unclosed quote made ``shlex`` raise ``ValueError`` when the server started: a traceback
    for a typo. Here it is one line naming the option.
    """
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise KtInterfError(
            f"{option}={text!r} cannot be split into words ({exc})",
            "close the quote, or escape a literal quote with a backslash",
        ) from None
