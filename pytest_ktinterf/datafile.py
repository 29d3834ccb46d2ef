"""Files as data: reading users' files (one line when it breaks) and writing shared ones atomically.

Experiment files (TOML) and baseline files and session records (JSON) are written by people
and by other tools; a file saved in Latin-1 or UTF-16, or a binary file given by mistake,
used to escape as a ``UnicodeDecodeError`` traceback. They are read here, as bytes decoded as
UTF-8 (what TOML and JSON require, whatever the locale says; a leading BOM, as Windows
editors write it, is dropped), and a failure is a
:class:`DataFileError`: the file, what is wrong, and the fix.

Files that another process or session reads are written by :func:`write_atomic`, the one
place that writes them (``tests/test_safety.py`` holds every other module to that).
"""

from __future__ import annotations

import os
import shutil
import threading
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


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path``'s content with ``text`` so that no reader ever sees half of it.

    Everything another process reads while we may be writing it goes through here: registry
    records (a starting session deletes a record it cannot parse, and a dropped record is a
    process never reaped), baseline files, the JSON/Markdown/SVG report, xdist outcomes, and the
    status files between an actor and its child. The text goes to a temporary file in the same
    folder (so the rename cannot cross file systems), then ``os.replace`` swaps it in: a reader
    opens the old file or the new one, and a writer killed half-way leaves the old file and a
    temporary one, never a truncated file. The temporary name carries the pid and thread, so
    two writers never share it; on any error it is removed. No fsync: the readers are other
    processes on a running machine, not a reboot.
    """
    tmp = _temporary(Path(path))
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` (content and mode) so that it appears whole or not at all.

    For the built ``llama-server`` in the shared cache: copied in place, another session could
    find it half-written or not yet executable, and overwriting a binary that a running server
    executes fails with "Text file busy"; a rename swaps the name and leaves that server its file.
    """
    tmp = _temporary(Path(target))
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def remove_with_temporaries(path: Path) -> None:
    """Delete ``path`` and any temporary file a writer killed mid-write left beside it."""
    path = Path(path)
    for leftover in [path, *path.parent.glob(f".{path.name}.*.tmp")]:
        leftover.unlink(missing_ok=True)


def _temporary(path: Path) -> Path:
    """A name beside ``path`` that no other writer (process or thread) uses at the same time."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
