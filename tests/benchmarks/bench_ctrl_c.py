"""Ctrl-C mid-experiment: how long until the session is gone, and what it leaves behind.

Run: ``python -m tests.benchmarks.bench_ctrl_c --repeats 6`` (as root, after ``python -m
pytest_ktinterf fetch``). Issue 13 asks that Ctrl-C end a running session within 10 s, leaving
nothing. The tests prove the "leaving nothing" (``test_cleanup.py``, ``test_leftovers.py``) with
generous deadlines, as a test must on a loaded machine; how long it takes is a timing claim, so it
is measured here and printed, not asserted in a test.

Each repeat starts a child pytest session on ``experiments/seed_report.toml`` for one condition
(in turn: CPU stress, the idle RAM filler, the contained overflow with its cgroup limit) against
the embedded server. The child runs as a terminal's foreground job would: a process group of its
own, SIGINT at its default disposition. Once the server process appears, the benchmark waits a
delay drawn uniformly from ``[0, --spread]`` seconds (seeded), so the signal lands in the server's
warm-up, a baseline trial, an actor's start, a condition trial or an actor's stop (the line says
which processes were running), then sends SIGINT to the group, as the terminal does. It measures:

* **exit**: seconds from the signal until pytest has exited (the target: at most 10 s);
* **quiet**: seconds until the last process the session was seen with is gone as well;
* **left**: the plugin's leftover listing (``system/leftovers.py``) for the project folder right
  after, with no new session started: a Ctrl-C'd session must clean up after itself, and the
  reaper of the next session is only the second line of defence.

Prints one line per repeat and a summary; exits 1 if a session outlived 10 s or left anything.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pytest_ktinterf.system.assets import llama_server_path, model_path
from pytest_ktinterf.system.leftovers import list_leftovers
from tests.benchmarks.bench_soak import SEED, survivors, watched, watched_name
from tests.child_sessions import Child, child_process

CONDITIONS = ("cpu_spare", "ram_idle", "overflow_contained")
TARGET_S = 10.0  # issue 13: "Ctrl-C ends a running session within 10 s"


@dataclass
class Outcome:
    """One interrupted session: when it was signalled, how long it took to go, what it left."""

    condition: str
    delay_s: float
    at_signal: list[str] = field(default_factory=list)
    exit_s: float = 0.0
    quiet_s: float = 0.0
    left: list[str] = field(default_factory=list)
    last_line: str = ""
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error or self.left) or self.exit_s > TARGET_S


def running(child: Child) -> list[str]:
    """The plugin's processes in the session's tree now: the server, stress-ng, a RAM filler."""
    return sorted({name for proc in child.descendants() if (name := watched_name(proc)) is not None})


def one_repeat(project: Path, n: int, condition: str, delay_s: float, max_tokens: int) -> Outcome:
    """Start a session on ``condition``, SIGINT it ``delay_s`` after its server appears; measure."""
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
        SEED.name, "-k", condition, f"--kt-max-tokens={max_tokens}",
    ]  # fmt: skip
    got = Outcome(condition, delay_s)
    log = project / f"session-{n}.out"
    with child_process(argv, cwd=project, env=dict(os.environ), log_path=log) as child:
        deadline = time.monotonic() + 600
        while "llama-server" not in running(child):
            if child.popen.poll() is not None or time.monotonic() > deadline:
                got.error = f"no server appeared: {child.output()[-800:]}"
                return got
            time.sleep(0.1)
        end_delay = time.monotonic() + delay_s
        while time.monotonic() < end_delay:
            child.descendants()  # remember the tree until the signal
            time.sleep(0.1)
        got.at_signal = running(child)
        if child.popen.poll() is not None:
            got.error = "the session ended before the signal: use a smaller --spread"
            return got
        signalled = time.monotonic()
        os.killpg(child.pid, signal.SIGINT)
        try:
            child.popen.wait(timeout=120)
        except subprocess.TimeoutExpired:  # killed on leaving the block
            got.error = "still running 120 s after SIGINT"
            return got
        got.exit_s = time.monotonic() - signalled
        seen = [p for p in child.seen.values() if watched(p)]
        while survivors(seen, project) and time.monotonic() - signalled < 120:
            time.sleep(0.05)
        got.quiet_s = time.monotonic() - signalled
        got.left = list_leftovers(project) + survivors(seen, project)
        got.last_line = (child.output().strip().splitlines() or [""])[-1]
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_ctrl_c", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=6, help="sessions to interrupt (default 6)")
    parser.add_argument("--spread", type=float, default=40.0, help="max delay after the server starts, s")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-tokens", type=int, default=64, help="--kt-max-tokens (default 64)")
    args = parser.parse_args(argv)
    if not (llama_server_path().is_file() and model_path().is_file() and shutil.which("stress-ng")):
        print("needs llama-server and the model (python -m pytest_ktinterf fetch) and stress-ng")
        return 2
    draw = random.Random(args.seed)
    project = Path(tempfile.mkdtemp(prefix="bench-ctrl-c-"))
    shutil.copy(SEED, project / SEED.name)
    print(f"ctrl-c: {args.repeats} sessions in {project}, SIGINT 0..{args.spread:g} s after the server start")
    exits: list[float] = []
    bad = 0
    for n in range(1, args.repeats + 1):
        condition = CONDITIONS[(n - 1) % len(CONDITIONS)]
        got = one_repeat(project, n, condition, draw.uniform(0, args.spread), args.max_tokens)
        bad += got.failed
        if got.error:
            print(f"{n}. {condition}: {got.error}")
            continue
        exits.append(got.exit_s)
        print(
            f"{n}. {condition}: SIGINT {got.delay_s:.1f} s after the server started, with "
            f"{', '.join(got.at_signal)} running; pytest exited in {got.exit_s:.2f} s, its processes "
            f"gone in {got.quiet_s:.2f} s; left {got.left or 'nothing'} ({got.last_line})",
            flush=True,
        )
    if exits:
        print(
            f"exit after SIGINT: median {statistics.median(exits):.2f} s, max {max(exits):.2f} s "
            f"(target {TARGET_S:g} s) over {len(exits)} sessions; {bad} failed"
        )
    shutil.rmtree(project, ignore_errors=True)
    return 1 if bad or not exits else 0


if __name__ == "__main__":
    sys.exit(main())
