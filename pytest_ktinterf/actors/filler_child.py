"""The RAM filler's child process: hold N bytes with every page touched, then idle or stream.

Run as ``python -m pytest_ktinterf.actors.filler_child --bytes N --status FILE [--active] [--mlock]``.
It is a separate process (not a thread of pytest) so that its memory is its own RSS, its own
OOM score (set to the maximum: if anything is killed for memory, it is the filler) and dies with
its process group. Progress and proof go to the status file as one line, replaced atomically:

* ``filling <bytes touched>`` while pages are being written;
* ``ready <bytes>`` once every page is touched (and locked, with ``--mlock``);
* ``streaming <bytes/s>`` every second in active mode: the rate it moves memory at.

With ``--grow FILE`` an idle filler also takes more when asked: the host-overflow actor writes a
larger size there until swap use shows the overflow is real (what the kernel can reclaim is more
than ``MemAvailable`` says, so no size computed up front is exact).

With ``--swap-bytes N`` (the host overflow) the last N bytes, and everything grown later, are
touched only after as many of the filler's oldest bytes were paged out to swap by the filler
itself (``MADV_PAGEOUT``). Left to the kernel, a fill past RAM at full speed leaves it nothing
inactive to swap (every page was just touched), and it OOM-kills the filler with swap still
free: seen here with 5 GiB of swap free and 68 MiB of it used.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import mmap
import os
import time
from pathlib import Path

from pytest_ktinterf.datafile import write_atomic

CHUNK = 64 * 2**20
POPULATE_CHUNK = 256 * 2**20
_MCL_CURRENT = 1
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14: fault pages in writable, in the kernel, without a copy
_MADV_PAGEOUT = 21  # Linux >= 5.4: reclaim these pages now (anonymous ones go to swap)


def _status(path: Path, text: str) -> None:
    """Atomically: the parent polls this file and must never read half a word."""
    write_atomic(path, text)


def _touch(buf: mmap.mmap, offset: int, end: int, block: memoryview) -> None:
    """Back ``[offset, end)`` with real pages holding data, like a real job's memory.

    Pages are faulted in by the kernel first (fast), then overwritten with random bytes. Zero-filled
    pages are not real pressure on current kernels: swap-out of a zero page takes no swap slot
    (``swpout_zero``) and underused zero huge pages are split and freed, so a zero filler "holds"
    memory that the host does not miss.
    """
    with contextlib.suppress(OSError):  # older kernels: the writes below fault the pages in
        buf.madvise(_MADV_POPULATE_WRITE, offset, end - offset)
    for start in range(offset, end, CHUNK):
        stop = min(start + CHUNK, end)
        buf[start:stop] = block[: stop - start]


def _huge(buf: mmap.mmap) -> None:
    """Ask for transparent huge pages (kernels with THP in ``madvise`` mode give none unasked).

    Each of the filler's bytes is written, so a huge page is as much pressure as 512 small ones;
    but it is faulted in, and given back, at once: this child filled 11 GiB in 4-15 s instead of
    21-29 s, freed in 0.03 s instead of 0.7, on this 2-core VM, where the idle-RAM row fills that
    8 times.
    Not for the host overflow (``--swap-bytes``), which pages its memory out in its own order.
    """
    with contextlib.suppress(OSError, AttributeError):  # a kernel or platform without THP
        buf.madvise(mmap.MADV_HUGEPAGE)


def _fill(buf: mmap.mmap, size: int, status: Path, done: int = 0) -> None:
    """Touch every page, reporting progress: a 24 GiB fill takes tens of seconds."""
    block = memoryview(os.urandom(CHUNK))
    for offset in range(0, size, POPULATE_CHUNK):
        end = min(offset + POPULATE_CHUNK, size)
        _touch(buf, offset, end, block)
        _status(status, f"filling {done + end}")


class _Swapper:
    """Pages the filler's oldest memory out, in order, to make room for each new chunk past RAM."""

    def __init__(self, first: mmap.mmap) -> None:
        self.regions: list[mmap.mmap] = [first]
        self.region = 0
        self.offset = 0

    def page_out(self, nbytes: int) -> None:
        while nbytes > 0 and self.region < len(self.regions):
            buf = self.regions[self.region]
            step = min(nbytes, len(buf) - self.offset)
            with contextlib.suppress(OSError):  # kernels before 5.4: the kernel's reclaim decides
                buf.madvise(_MADV_PAGEOUT, self.offset, step)
            nbytes -= step
            self.offset += step
            if self.offset >= len(buf):
                self.region, self.offset = self.region + 1, 0


def _fill_past_ram(buf: mmap.mmap, start: int, swapper: _Swapper, status: Path, done: int) -> None:
    """Touch ``buf[start:]`` a chunk at a time, each after as much old memory went to swap."""
    block = memoryview(os.urandom(CHUNK))
    for offset in range(start, len(buf), CHUNK):
        end = min(offset + CHUNK, len(buf))
        swapper.page_out(end - offset)
        buf[offset:end] = block[: end - offset]
        _status(status, f"filling {done + end}")


def _stream(buf: mmap.mmap, size: int, status: Path) -> None:
    """Move memory around for ever: reads and writes the whole region, as an inferring job does."""
    moved = 0
    started = time.monotonic()
    offset = 0
    chunk = min(CHUNK, size // 2)
    while True:
        dest = (offset + chunk) % (size - chunk + 1)
        buf.move(dest, offset, chunk)
        moved += 2 * chunk  # read once, written once
        offset = dest
        now = time.monotonic()
        if now - started >= 1.0:
            _status(status, f"streaming {moved / (now - started):.0f}")
            moved, started = 0, now


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--active", action="store_true")
    parser.add_argument("--mlock", action="store_true")
    parser.add_argument("--grow", type=Path, default=None)
    parser.add_argument("--swap-bytes", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):  # first in line for the OOM killer, never the server
        Path("/proc/self/oom_score_adj").write_text("1000")
    size = max(args.bytes, 2 * mmap.PAGESIZE)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    swapper = _Swapper(buf) if args.swap_bytes > 0 else None
    if swapper is None:
        _huge(buf)
    _status(args.status, "filling 0")
    in_ram = max(0, size - args.swap_bytes) if swapper else size
    _fill(buf, in_ram, args.status)
    if swapper:
        _fill_past_ram(buf, in_ram, swapper, args.status, 0)
    if args.mlock:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlockall(_MCL_CURRENT) != 0:
            error = ctypes.get_errno()
            _status(args.status, f"failed mlockall: {os.strerror(error)}")
            raise SystemExit(3)
    _status(args.status, f"ready {size}")
    if args.active:
        _stream(buf, size, args.status)
    extra: list[mmap.mmap] = []
    while True:
        wanted = _wanted(args.grow)
        if wanted > size:
            more = mmap.mmap(-1, wanted - size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            if swapper:
                swapper.regions.append(more)
                _fill_past_ram(more, 0, swapper, args.status, size)
            else:
                _huge(more)
                _fill(more, wanted - size, args.status, size)
            extra.append(more)
            size = wanted
            _status(args.status, f"ready {size}")
        time.sleep(0.1 if args.grow else 3600)


def _wanted(control: Path | None) -> int:
    if control is None:
        return 0
    try:
        return int(control.read_text())
    except (OSError, ValueError):
        return 0


if __name__ == "__main__":
    main()
