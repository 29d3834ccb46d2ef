"""Soak: the seed report's CPU and RAM conditions back to back; does anything stay behind?

Run: ``python -m tests.benchmarks.bench_soak --minutes 30`` (as root, after ``python -m
pytest_ktinterf fetch``). Child pytest sessions run ``experiments/seed_report.toml -k "cpu_spare
or cpu_server or ram_idle or ram_active"`` against the embedded server, one after another, in a
fresh project folder, until the minutes are spent (a session started in time runs to its end).
Unattended CI runs the plugin for hours on machines that cost money; one leaked stress-ng or a
weights copy per session is invisible in one run and fatal in a week. After every session and at
the end it counts:

* **leaked processes** -- a llama-server, stress-ng or RAM-filler child of the session (seen in
  its process tree while it ran, or naming the project folder) still running after it exited;
* **leaked memory** -- host ``MemAvailable`` before the soak minus after it, beyond the noise:
  the larger of ``--memory-tolerance-mib`` and 3x the spread of the samples taken before (page
  cache and other tenants move it by tens of MiB; a leaked filler holds GiBs);
* **disk growth** under the project's ``.ktinterf/`` -- bytes before and after, and the bytes
  that are neither the report (``report.json``/``.md``/``.svg``) nor the logs that the log
  retention keeps by design (``*.log`` in at most 20 dead sessions' folders): weights copies,
  temporary files, xdist outcome folders. Only those count;
* **failed cleanups** -- registry records a session left behind it (records in the machine's
  state directory whose owner is that session), and what the next session had to reap (its
  ``reaped leftover`` and ``removed the weights copy`` lines, and those of a short probe session
  after the last one; the first session's lines are shown but predate the soak);
* **session errors** -- exit codes other than 0 and 1 (1 is a failed claim: with few pairs on a
  busy machine a verdict may fail; that is the experiments' business, not the soak's).

Prints one table; exits 1 when any counted figure is not zero, 2 when it cannot run. The state
directory is the machine's shared one, so the machine lock keeps the soak's measurements apart
from any other session's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pytest_ktinterf.system.assets import llama_server_path, model_path
from pytest_ktinterf.system.registry import registry_dir
from tests.child_sessions import child_process

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "experiments" / "seed_report.toml"
CONDITIONS = "cpu_spare or cpu_server or ram_idle or ram_active"
WATCHED = ("llama-server", "stress-ng", "pytest_ktinterf.actors.filler_child")
REPORT_FILES = re.compile(r"report\.(json|md)$|\.svg$")
REAPED = re.compile(r"ktinterf: (reaped leftover .*|removed the weights copy .*)")
MIB = 2**20


@dataclass
class Tally:
    """The soak's figures, summed over its sessions."""

    sessions: int = 0
    exit_codes: list[int] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    records_left: list[str] = field(default_factory=list)
    reaped: list[str] = field(default_factory=list)
    reaped_before_soak: list[str] = field(default_factory=list)


def watched_name(proc: psutil.Process) -> str | None:
    """Which of :data:`WATCHED` ``proc`` is (the server, a stressor, a RAM filler), if any."""
    try:
        words = " ".join([proc.name(), *proc.cmdline()[:4]])
    except psutil.Error:
        return None
    return next((name for name in WATCHED if name in words), None)


def watched(proc: psutil.Process) -> bool:
    """A process the plugin starts: the server, a stressor, a RAM filler."""
    return watched_name(proc) is not None


def survivors(seen: Iterable[psutil.Process], project: Path) -> list[str]:
    """Watched processes still alive: seen in a session's tree, or naming the project folder."""
    found = {p.pid: p for p in seen if p.is_running() and watched(p)}
    for proc in psutil.process_iter():  # re-parented before we saw them, but naming our project
        with_project = False
        with contextlib.suppress(psutil.Error):
            with_project = str(project) in " ".join(proc.cmdline())
        if with_project and watched(proc):
            found[proc.pid] = proc
    out = []
    for proc in found.values():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]}")
        except psutil.Error:
            continue
    return out


def records_of(owner: int) -> list[str]:
    """Registry records (process groups, cgroups) the session ``owner`` left."""
    left = []
    for path in sorted(registry_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("owner_pid") == owner:
            left.append(f"{path.name}: {record.get('name') or record.get('path')}")
    return left


def mem_available(samples: int = 5, every_s: float = 0.4) -> list[int]:
    out = []
    for _ in range(samples):
        out.append(psutil.virtual_memory().available)
        time.sleep(every_s)
    return out


def disk(project: Path) -> tuple[int, int, list[str]]:
    """(bytes under .ktinterf/, bytes of anything but the report and the kept logs, those files)."""
    base = project / ".ktinterf"
    total = unexplained = 0
    other = []
    for path in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
        size = path.lstat().st_size
        total += size
        relative = path.relative_to(base)
        is_report = len(relative.parts) == 1 and REPORT_FILES.search(path.name)
        is_log = relative.parts[:1] == ("logs",) and path.suffix == ".log"
        if not (is_report or is_log):
            unexplained += size
            other.append(f"{relative} ({size} B)")
    return total, unexplained, other


def run_session(project: Path, n: int, args: argparse.Namespace, tally: Tally) -> None:
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rs",
        SEED.name, "-k", args.conditions, f"--kt-max-tokens={args.max_tokens}",
        "--kt-report-json=.ktinterf/report.json",
    ]  # fmt: skip
    started = time.monotonic()
    with child_process(
        argv, cwd=project, env=dict(os.environ), log_path=project / f"session-{n}.out"
    ) as child:
        while child.popen.poll() is None:
            child.descendants()  # remember the tree: a leftover is re-parented once pytest exits
            if time.monotonic() - started > args.session_timeout:
                tally.exit_codes.append(-1)
                print(f"session {n}: still running after {args.session_timeout:.0f} s; killed")
                return
            time.sleep(0.5)
        code = child.popen.returncode
        time.sleep(2.0)  # what the session stopped has a moment to go
        leaked = survivors(child.seen.values(), project)
        left = records_of(child.pid)
        output = child.output()
    reaped = REAPED.findall(output)
    tally.sessions += 1
    tally.exit_codes.append(code)
    tally.leaked += leaked
    tally.records_left += left
    (tally.reaped if n > 1 else tally.reaped_before_soak).extend(reaped)
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    print(
        f"session {n}: exit {code} in {time.monotonic() - started:.0f} s ({summary}); "
        f"leaked {len(leaked)}, records left {len(left)}, reaped {len(reaped)}",
        flush=True,
    )
    for line in [*leaked, *left, *reaped]:
        print(f"  {line}")
    if code not in (0, 1):
        print(output[-3000:])


PROBE = "def test_probe(kt_log_dir):\n    pass\n"  # activates the plugin: it reaps, and says what


def probe_reaping(project: Path) -> list[str]:
    """What a new session finds to reap after the soak's last one: the last session's cleanup."""
    (project / "test_soak_probe.py").write_text(PROBE)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-q",
        "test_soak_probe.py",
    ]
    with child_process(argv, cwd=project, env=dict(os.environ), log_path=project / "probe.out") as child:
        child.popen.wait(timeout=300)
        return REAPED.findall(child.output())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="start sessions until then (default 30)")
    parser.add_argument("--conditions", default=CONDITIONS, help=f"-k expression (default {CONDITIONS!r})")
    parser.add_argument("--max-tokens", type=int, default=64, help="--kt-max-tokens (default 64)")
    parser.add_argument("--memory-tolerance-mib", type=float, default=256.0)
    parser.add_argument("--session-timeout", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--keep", action="store_true", help="keep the project folder")
    args = parser.parse_args(argv)
    if not (llama_server_path().is_file() and model_path().is_file() and shutil.which("stress-ng")):
        print("needs llama-server and the model (python -m pytest_ktinterf fetch) and stress-ng")
        return 2
    project = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    shutil.copy(SEED, project / SEED.name)
    print(f"soak: {args.minutes:g} min of -k {args.conditions!r} in {project}", flush=True)
    before_mem = mem_available()
    before_disk = disk(project)[0]
    tally = Tally()
    started = time.monotonic()
    deadline = started + 60 * args.minutes
    n = 0
    while n == 0 or time.monotonic() < deadline:
        n += 1
        run_session(project, n, args, tally)
    tally.reaped += probe_reaping(project)
    tally.leaked += [f"at the end: {line}" for line in survivors([], project)]
    elapsed = time.monotonic() - started
    after_mem = mem_available()
    settle_until = time.monotonic() + 30
    noise = max(before_mem) - min(before_mem)
    tolerance = max(args.memory_tolerance_mib * MIB, 3 * noise)
    while (
        statistics.median(before_mem) - statistics.median(after_mem) > tolerance
        and time.monotonic() < settle_until
    ):
        after_mem = mem_available()  # the kernel may take a moment to hand freed memory back
    drop = statistics.median(before_mem) - statistics.median(after_mem)
    leaked_mem = max(0.0, drop - tolerance)
    after_disk, unexplained, other = disk(project)
    errors = [c for c in tally.exit_codes if c not in (0, 1)]
    rows = [
        ("sessions (exit codes)", f"{tally.sessions} ({', '.join(map(str, tally.exit_codes))})", "-", 0),
        ("session errors (exit not 0/1)", str(len(errors)), "0", len(errors)),
        ("leaked processes", str(len(tally.leaked)), "0", len(tally.leaked)),
        (
            "leaked memory (MemAvailable)",
            f"{leaked_mem / MIB:.0f} MiB (before {statistics.median(before_mem) / MIB:.0f}, after "
            f"{statistics.median(after_mem) / MIB:.0f} MiB; drop {drop / MIB:+.0f} MiB, noise "
            f"{noise / MIB:.0f} MiB, tolerance {tolerance / MIB:.0f} MiB)",
            "0",
            int(leaked_mem),
        ),
        (
            "disk growth under .ktinterf/",
            f"{unexplained} B beyond the report and kept logs (before {before_disk} B, after {after_disk} B)",
            "0",
            unexplained,
        ),
        ("registry records left", str(len(tally.records_left)), "0", len(tally.records_left)),
        ("reaped by the next session", str(len(tally.reaped)), "0", len(tally.reaped)),
    ]
    print(f"\nsoak: {tally.sessions} session(s) in {elapsed / 60:.1f} min")
    width = max(len(r[0]) for r in rows)
    print(f"{'figure'.ljust(width)} | must be | value")
    for name, value, must, _ in rows:
        print(f"{name.ljust(width)} | {must.ljust(7)} | {value}")
    for line in other:
        print(f"  not report or log: {line}")
    for line in tally.reaped_before_soak:
        print(f"  reaped by the first session (before the soak): {line}")
    if args.keep:
        print(f"project kept: {project}")
    else:
        shutil.rmtree(project, ignore_errors=True)
    return 1 if any(count for *_, count in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
