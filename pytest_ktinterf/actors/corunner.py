"""Co-runner: a second workload on the same machine, by default a second llama-server with its own model.

The field report's interfering workload was not synthetic stress but another inference server beside
the one being measured, in two states: *idle*, holding its model in memory, and *busy*, inferring.
This actor runs any command as that workload, pinned to chosen cores in its own process group, and
proves the state before a measurement starts:

* busy (``request_loop``): a background thread keeps streaming completion requests (the probe's
  own, see ``corunner_load.py``) at the co-runner's loopback URL; the proof is that requests
  complete *and* that the co-runner's process tree burns at least ``min_cpu_share`` of a core (CPU
  seconds per wall second, summed over the tree), so a co-runner that answers but is starved, or
  loops on errors, never counts as pressure;
* idle holding memory (``min_rss_mib``): the proof is the tree's resident set size;
* any other command with neither: its tree's CPU share, so nothing starts without a measured proof.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.actors.base import Actor, wait_for
from pytest_ktinterf.actors.corunner_load import LoopCounts, RequestLoop, is_loopback_url
from pytest_ktinterf.actors.proc_tree import escaped_cores, tree_cpu_seconds, tree_rss_mib
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.server.base import Say, free_port, wait_ready
from pytest_ktinterf.server.embedded import llama_server_argv
from pytest_ktinterf.system.assets import EmbeddedAssets
from pytest_ktinterf.system.cpus import format_cpu_list
from pytest_ktinterf.system.processes import Child, spawn, terminate

__all__ = ["KIND", "CoRunner", "LoopCounts"]

KIND = "co-runner"


@dataclass
class CoRunner(Actor):
    """Any command as the interfering workload, pinned to ``cpus``, with a measured proof of pressure.

    ``cpu_share`` figures are CPU seconds per wall second summed over the co-runner's process tree,
    so ``min_cpu_share=0.5`` means half of one core, whatever the thread count.
    """

    argv: list[str] = field(default_factory=list)
    cpus: list[int] | None = None
    log_dir: Path = Path(".ktinterf/logs")
    url: str | None = None
    request_loop: bool = False
    api: str = "completions"
    model: str | None = None
    max_tokens: int = 32
    streams: int = 1
    request_timeout_s: float = 30.0
    min_cpu_share: float = 0.5
    min_rss_mib: float | None = None
    ready_timeout_s: float = 120.0
    start_timeout_s: float = 30.0
    share_window_s: float = 0.75
    stall_timeout_s: float = 5.0
    env: dict[str, str] | None = None
    say: Say | None = None
    name: str = "co-runner"
    child: Child | None = field(default=None, init=False, repr=False)
    _loop: RequestLoop | None = field(default=None, init=False, repr=False)
    _t0: float | None = field(default=None, init=False, repr=False)
    _cpu_at_t0: float = field(default=0.0, init=False, repr=False)
    _tokens_at_t0: int = field(default=0, init=False, repr=False)
    _start_share: float | None = field(default=None, init=False, repr=False)
    _mark: LoopCounts = field(default_factory=LoopCounts, init=False, repr=False)
    _final: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _terminated: bool = field(default=False, init=False, repr=False)

    # -- construction for the report's experiments --------------------------------------------------

    @classmethod
    def embedded_llama(
        cls,
        assets: EmbeddedAssets,
        cpus: list[int],
        log_dir: Path,
        *,
        busy: bool,
        threads: int | None = None,
        parallel: int = 1,
        context_per_slot: int = 512,
        max_tokens: int = 32,
        min_cpu_share: float = 0.5,
        min_rss_mib: float | None = None,
        ready_timeout_s: float = 120.0,
        start_timeout_s: float = 30.0,
        extra_args: Sequence[str] = (),
        say: Say | None = None,
        name: str | None = None,
    ) -> CoRunner:
        """A second llama-server with its own model on ``cpus``: busy (inferring) or idle (holding it).

        Busy keeps ``parallel`` streams of requests going (one per slot) and proves ``min_cpu_share``.
        Idle proves the model is resident: ``min_rss_mib`` defaults to the model file's size, which a
        server that loaded (and warmed up on) its weights exceeds by its own code and buffers (SmolLM2:
        ~137 MiB against 94), and which a server without its weights, or with them evicted, does not
        reach (~40 MiB).
        """
        port = free_port()
        argv = llama_server_argv(
            assets,
            port=port,
            threads=threads or len(cpus),
            parallel=parallel,
            context_per_slot=context_per_slot,
        ) + list(extra_args)
        if not busy and min_rss_mib is None:
            min_rss_mib = assets.model.stat().st_size / 2**20
        return cls(
            argv=argv,
            cpus=list(cpus),
            log_dir=log_dir,
            url=f"http://127.0.0.1:{port}",
            request_loop=busy,
            max_tokens=max_tokens,
            streams=parallel if busy else 1,
            min_cpu_share=min_cpu_share,
            min_rss_mib=None if busy else min_rss_mib,
            ready_timeout_s=ready_timeout_s,
            start_timeout_s=start_timeout_s,
            say=say,
            name=name or ("co-runner-busy" if busy else "co-runner-idle"),
        )

    # -- what is proven -----------------------------------------------------------------------------

    @property
    def proves_cpu(self) -> bool:
        """CPU share is the proof for a busy co-runner and for a command that claims no memory."""
        return self.request_loop or self.min_rss_mib is None

    @property
    def proves_rss(self) -> bool:
        return self.min_rss_mib is not None

    @property
    def log_path(self) -> Path:
        return self.log_dir / "actor-corunner.log"

    def _where(self) -> str:
        return f"cores {format_cpu_list(self.cpus)}" if self.cpus else "any core"

    def _procs(self) -> list[psutil.Process]:
        return self.child.tree() if self.child is not None else []

    def _log_tail(self) -> str:
        return self.child.log_tail() if self.child is not None else "(not started)"

    def _raise_if_dead(self, when: str) -> None:
        if self.child is None or not self.child.alive():
            code = self.child.popen.returncode if self.child is not None else None
            raise KtInterfError(
                f"co-runner {self.name} ({Path(self.argv[0]).name if self.argv else '?'}) exited with "
                f"code {code} {when} (log: {self.log_path})",
                "check the co-runner command in the log tail below",
                detail=self._log_tail(),
            )

    def _measure_share(self) -> float:
        """CPU share of the tree over one ``share_window_s`` (a measurement, not a wait)."""
        cpu0, t0 = tree_cpu_seconds(self._procs()), time.monotonic()
        time.sleep(self.share_window_s)
        cpu1, t1 = tree_cpu_seconds(self._procs()), time.monotonic()
        return max(0.0, cpu1 - cpu0) / (t1 - t0)

    # -- Actor --------------------------------------------------------------------------------------

    def _validate(self) -> None:
        if not self.argv:
            raise KtInterfError(f"co-runner {self.name} has no command", "pass argv=[program, args...]")
        if shutil.which(self.argv[0]) is None:
            raise KtInterfError(
                f"co-runner command '{self.argv[0]}' was not found",
                "give a full path or install it (for llama-server: python -m pytest_ktinterf fetch)",
            )
        if self.cpus is not None and not self.cpus:
            raise KtInterfError(
                f"co-runner {self.name} asked for no cores", "pass cpus=None (unpinned) or a core list"
            )
        if self.request_loop and self.url is None:
            raise KtInterfError(
                f"co-runner {self.name} has request_loop=True but no url",
                "pass the url of the OpenAI-compatible server its command starts",
            )
        if self.url is not None and not is_loopback_url(self.url):
            raise KtInterfError(
                f"co-runner url {self.url} is not a loopback address",
                "a co-runner is started on this machine; give it http://127.0.0.1:PORT",
            )
        if self.api not in ("completions", "chat"):
            raise KtInterfError(f"co-runner api {self.api!r} is unknown", "use 'completions' or 'chat'")

    def _asked(self) -> str:
        parts = []
        if self.request_loop:
            parts.append(f">= 1 completed request to {self.url}")
        if self.proves_cpu:
            parts.append(f">= {self.min_cpu_share:.2f} core share")
        if self.min_rss_mib is not None:
            parts.append(f">= {self.min_rss_mib:.0f} MiB RSS")
        return f"co-runner {self.name} on {self._where()} asked for {' and '.join(parts)}"

    def _probe(self) -> tuple[bool, str]:
        """One look at the proof; raises at once on a death or a failing request (no point waiting)."""
        self._raise_if_dead("before its pressure was established")
        done, measured = True, []
        if self._loop is not None:
            counts = self._loop.snapshot()
            if counts.errors:
                raise KtInterfError(
                    f"co-runner {self.name}: requests to {self.url}{self._loop.path} fail "
                    f"({counts.errors} so far; last: {counts.last_error})",
                    "check the co-runner's api/model settings and its log tail below",
                    detail=self._log_tail(),
                )
            measured.append(f"{counts.completed} requests completed, {counts.tokens} tokens")
            done = counts.completed >= 1
        if self.min_rss_mib is not None:
            rss = tree_rss_mib(self._procs())
            measured.append(f"RSS {rss:.0f} MiB")
            done = done and rss >= self.min_rss_mib
        if self.proves_cpu and done:  # the share window costs time: only once the rest holds
            self._start_share = self._measure_share()
            measured.append(f"{self._start_share:.2f} core share")
            done = self._start_share >= self.min_cpu_share
        return done, ", ".join(measured)

    def _start(self) -> None:
        self._validate()
        self.child = spawn(self.argv, name=self.name, log_path=self.log_path, cpus=self.cpus, env=self.env)
        try:
            if self.url is not None:
                try:
                    wait_ready(
                        self.url,
                        self.ready_timeout_s,
                        child=self.child,
                        say=self.say,
                        what=f"co-runner {self.name}",
                    )
                except KtInterfError as exc:
                    raise KtInterfError(
                        exc.cause,
                        "raise the co-runner's ready_timeout_s if its model is large, or see its log tail",
                        detail=exc.detail,
                    ) from exc
            self._check_affinity()
            if self.request_loop:
                assert self.url is not None
                self._loop = RequestLoop(
                    self.url,
                    api=self.api,
                    model=self.model,
                    max_tokens=self.max_tokens,
                    streams=self.streams,
                    timeout_s=self.request_timeout_s,
                    name=self.name,
                )
                self._loop.start()
            wait_for(
                self._probe,
                timeout_s=self.start_timeout_s,
                asked=self._asked(),
                fix="give the co-runner more cores or time, or lower the target; see its log tail",
                detail=self._log_tail,
                progress=self.say,
            )
            self._t0 = time.monotonic()
            self._cpu_at_t0 = tree_cpu_seconds(self._procs())
            self._mark = self._loop.snapshot() if self._loop is not None else LoopCounts()
            self._tokens_at_t0 = self._mark.tokens
        except BaseException:
            self._stop()  # a bare start() that fails leaves nothing running either
            raise

    def _check_affinity(self) -> None:
        if not self.cpus:
            return
        escaped = escaped_cores(self._procs(), self.cpus)
        if escaped is not None:
            pid, allowed = escaped
            raise KtInterfError(
                f"co-runner {self.name} process {pid} may run on cores {allowed}, "
                f"outside the requested {format_cpu_list(self.cpus)}",
                "the command changes its own CPU affinity; remove its pinning options",
            )

    def check(self) -> None:
        """Refuse the last window if the co-runner died, its requests failed or stalled, or RSS fell.

        Progress means a streamed token or a completed request since the previous ``check`` (or
        the start); a window shorter than one token gets ``stall_timeout_s`` to show some.
        """
        self._raise_if_dead("during the measurement window")
        if self._loop is not None:
            loop, mark = self._loop, self._mark
            counts = loop.snapshot()
            if counts.errors > mark.errors:
                raise KtInterfError(
                    f"co-runner {self.name}: {counts.errors - mark.errors} requests failed during the "
                    f"window (last: {counts.last_error})",
                    "the measurement is refused: the co-runner's load was not steady; see its log",
                    detail=self._log_tail(),
                )

            def progressed() -> tuple[bool, str]:
                self._raise_if_dead("during the measurement window")
                now = loop.snapshot()
                moved = now.completed > mark.completed or now.tokens > mark.tokens
                return moved, f"{now.completed - mark.completed} requests, {now.tokens - mark.tokens} tokens"

            wait_for(
                progressed,
                timeout_s=self.stall_timeout_s,
                asked=f"co-runner {self.name} made no progress since the last check (a token or a request)",
                fix="the measurement is refused: the co-runner stalled; see its log",
                interval_s=0.05,
                detail=self._log_tail,
            )
            self._mark = loop.snapshot()
        if self.min_rss_mib is not None:
            rss = tree_rss_mib(self._procs())
            if rss < self.min_rss_mib:
                raise KtInterfError(
                    f"co-runner {self.name}'s RSS fell to {rss:.0f} MiB (asked >= {self.min_rss_mib:.0f})",
                    "the measurement is refused: its memory was swapped out or released",
                )

    def _metrics(self) -> dict[str, Any]:
        """Live figures over the window since the pressure was established."""
        counts = self._loop.snapshot() if self._loop is not None else LoopCounts()
        procs = self._procs()
        share = self._start_share
        tokens_per_s = 0.0
        if self._t0 is not None:
            wall = time.monotonic() - self._t0
            if wall >= self.share_window_s:  # shorter windows are noise; keep the start's proof
                share = max(0.0, tree_cpu_seconds(procs) - self._cpu_at_t0) / wall
            if wall > 0:
                tokens_per_s = (counts.tokens - self._tokens_at_t0) / wall
        return {
            "requests_completed": counts.completed,
            "request_errors": counts.errors,
            "tokens_generated": counts.tokens,
            "tokens_per_s": tokens_per_s,
            "cpu_share": share,
            "rss_mib": tree_rss_mib(procs) if procs else None,
        }

    def evidence(self) -> dict[str, Any]:
        metrics = self._final if self._final is not None else self._metrics()
        if self.proves_cpu:
            target, achieved, unit = self.min_cpu_share, metrics["cpu_share"], "core share"
        else:
            target, achieved, unit = self.min_rss_mib, metrics["rss_mib"], "MiB"
        return {
            "name": self.name,
            "kind": KIND,
            "argv": list(self.argv),
            "cpus": self.cpus,
            "url": self.url,
            "busy": self.request_loop,
            **metrics,
            "target": target,
            "achieved": achieved,
            "unit": unit,
        }

    def _stop(self) -> None:
        if self._loop is not None:
            self._loop.request_stop()
        if self.child is not None and not self._terminated:
            if self._final is None and self._t0 is not None:
                self._final = self._metrics()  # a co-runner that died early shows it here
            terminate(self.child)
            self._terminated = True  # its process-group id may be reused once it is gone
        if self._loop is not None and not self._loop.join(self.request_timeout_s + 2.0):
            raise KtInterfError(  # pragma: no cover - every request has a timeout
                f"co-runner {self.name}'s request threads did not stop",
                "report this: a request outlived its timeout",
            )
