"""Reading the files users give us as data: one place for the rule, one line when it breaks.

Experiment files (TOML) and baseline files and session records (JSON) are written by people
and by other tools; a file saved in Latin-1 or UTF-16, or a binary file given by mistake,
used to escape as a ``UnicodeDecodeError`` traceback. They are read here, as bytes decoded as
UTF-8 (what TOML and JSON require, whatever the locale says; a leading BOM, as Windows
editors write it, is dropped), and a failure is a
:class:`DataFileError`: the file, what is wrong, and the fix.
"""

from __future__ import annotations

from pathlib import Path

from pytest_ktinterf.errors import KtInterfError


class DataFileError(KtInterfError):
    """A user's data file that cannot be read or decoded.

    ``problem`` reads after the file's name ("is not UTF-8: ..."), ``expected`` names what
    should be there, so a caller with its own error format (experiment files) can restate it.
    """

    def __init__(self, path: Path, problem: str, expected: str, fix: str) -> None:
        self.path, self.problem, self.expected = Path(path), problem, expected
        super().__init__(f"{path} {problem}", fix)


def read_text(path: Path) -> str:
    """The file's text, decoded as UTF-8; raises :class:`DataFileError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataFileError(
            path, f"cannot be read: {exc.strerror or exc}", "a readable file", "check the path"
        ) from None
    try:
        return data.decode("utf-8-sig")  # a BOM (Windows editors) is not an error
    except UnicodeDecodeError as exc:
        raise DataFileError(
            path,
            f"is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} ({exc.reason})",
            "UTF-8 text",
            "save it as UTF-8",
        ) from None


def peek_text(path: Path) -> str | None:
    """The file's text with undecodable bytes replaced, None if unreadable: for recognising a file.

    Recognising must never fail (pytest offers us every ``.toml`` file, most of them not ours);
    the file we then claim is read with :func:`read_text`, which names the bad byte.
    """
    try:
        return Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    except OSError:
        return None
