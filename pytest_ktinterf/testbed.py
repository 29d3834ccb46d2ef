"""The session's testbed: the server, the probe, the report and the actors' context, made on demand.

Everything an interference measurement needs is reached through one object passed explicitly
(``experiment.interfere.run(testbed, condition)``), not through fixture names: a newcomer can
follow a condition from its TOML table to its verdict by reading calls. Nothing is started
until it is asked for, so a condition that skips (no GPU, no swap) or whose outcome another
xdist worker already measured never starts a server.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from pytest_ktinterf.actors.builders import ActorContext
from pytest_ktinterf.baseline.session import Gatekeeper
from pytest_ktinterf.errors import ServerError
from pytest_ktinterf.judge.verdict import Check
from pytest_ktinterf.measure.compare import (
    CANDIDATE,
    Arm,
    Comparison,
    Condition,
    Design,
    compare,
    measure_monitored,
    partial_comparison,
)
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import RoundSample
from pytest_ktinterf.measure.sensitivity import EffectComparison, compare_effects
from pytest_ktinterf.measure.server_view import ServerView
from pytest_ktinterf.options import Options
from pytest_ktinterf.progress import Say
from pytest_ktinterf.report.record import Report
from pytest_ktinterf.server import ServerHandle, candidate_options, open_server
from pytest_ktinterf.server.alternating import Alternating
from pytest_ktinterf.server.identity import identify
from pytest_ktinterf.system.cpus import format_cpu_list
from pytest_ktinterf.system.lock import measuring
from pytest_ktinterf.system.session_logs import session_log_dir

Measured = TypeVar("Measured", bound=Comparison)
CURRENT = "current"  # the A/B's two servers are CURRENT and CANDIDATE (also the latter's log folder)


def _model_name(url: str) -> str | None:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError):
        return str(httpx.get(f"{url}/v1/models", timeout=10, trust_env=False).json()["data"][0]["id"])
    return None


def _server_record(handle: ServerHandle) -> dict[str, Any]:
    """What the record says of a started server (the current one, or the A/B candidate)."""
    return {
        "backend": handle.backend,
        "description": handle.description,
        "url": handle.url,
        "identity": identify(handle),
    }


class Testbed:
    """One per pytest process; :meth:`close` stops what it started (the session fixture does)."""

    __test__ = False  # not a test class, whatever pytest's name pattern says

    def __init__(
        self, options: Options, rootpath: Path, report: Report, say: Say, gate: Gatekeeper | None = None
    ) -> None:
        self.options = options
        self.rootpath = rootpath
        self.report = report
        self.say = say
        self.gate = gate  # the baseline gate, when a --kt-baseline-* flag asks for it
        self._stack = contextlib.ExitStack()
        self._server: ServerHandle | None = None
        self._probe: Probe | None = None
        self._candidate: tuple[ServerHandle, Probe] | None = None
        self._turns: Alternating | None = None  # --kt-candidate-residency alternate

    @functools.cached_property
    def log_dir(self) -> Path:
        """Where server and actor logs go (kept after the run, for post-mortems).

        Once this session is gone, a later one deletes any weights copy left here and, beyond
        the newest dead sessions' folders, the folder itself (``system/session_logs.py``).
        """
        path = session_log_dir(self.rootpath)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def server(self) -> ServerHandle:
        """The server under test, started (or connected to) on first use."""
        turns = self._alternating()
        if turns is not None:
            return turns.handle(CURRENT)
        if self._server is None:
            handle = self._stack.enter_context(open_server(self.options, self.log_dir, say=self.say))
            self._record_current(handle)
            self._server = handle
        return self._server

    def _record_current(self, handle: ServerHandle) -> None:
        cpus = handle.cpus()
        self.report.server = {
            **_server_record(handle),
            "cpus": format_cpu_list(cpus) if cpus else None,
            **{k: v for k, v in handle.meta.items() if k in ("threads", "parallel", "model", "scheduling")},
        }

    def _alternating(self) -> Alternating | None:
        """The current and the candidate server taking turns, when they cannot both be resident."""
        if self.options.candidate_residency != "alternate":
            return None
        if self._turns is None:
            folder = self.log_dir / CANDIDATE
            folder.mkdir(exist_ok=True)
            candidate = candidate_options(self.options)
            self._turns = Alternating(
                {
                    CURRENT: lambda: open_server(self.options, self.log_dir, say=self.say),
                    CANDIDATE: lambda: open_server(candidate, folder, say=self.say),
                },
                self._calibrated_probe,
                say=self.say,
                on_start=self._record_start,
            )
            self._stack.callback(self._turns.stop)
        return self._turns

    def _record_start(self, name: str, handle: ServerHandle) -> None:
        """The report names each server once, from its first start, and counts every start."""
        if name == CURRENT and not self.report.server:
            self._record_current(handle)
        elif name == CANDIDATE and not self.report.candidate:
            self.report.candidate = {**_server_record(handle), "residency": "alternate"}
        if self.report.candidate and self._turns is not None:
            self.report.candidate["server_starts"] = self._turns.starts

    def _calibrated_probe(self, server: ServerHandle) -> Probe:
        probe = Probe(
            server.url,
            api=self.options.api,
            model=self.options.model_name or _model_name(server.url),
            prompt_tokens=self.options.prompt_tokens,
            max_tokens=self.options.max_tokens,
            avoid_cores=server.cpus() or (),
            request_timeout_s=self.options.request_timeout,
        )
        probe.server_view = ServerView.find(server.url, server.log_path())
        with measuring(), self._server_evidence(server):
            probe.calibrate()
        return probe

    def probe(self) -> Probe:
        """A probe for the session's workload, calibrated to the prompt length in tokens."""
        turns = self._alternating()
        if turns is not None:  # the current server made resident: its probe's URL is the live one
            probe = turns.probe(CURRENT)
            self._record_workload(probe)
            return probe
        if self._probe is None:
            probe = self._calibrated_probe(self.server())
            self._record_workload(probe)
            self._probe = probe
        return self._probe

    def _record_workload(self, probe: Probe) -> None:
        if probe.server_view is not None and self.report.server:
            self.report.server.setdefault("own_figures", probe.server_view.describe())
        if not self.report.workload:
            self.report.workload = {
                "api": self.options.api,
                "model": probe.model,
                "prompt_tokens": self.options.prompt_tokens,
                "max_tokens": self.options.max_tokens,
                "request_timeout_s": probe.timeout.read,
            }

    def candidate(self) -> Arm:
        """The same-session A/B candidate (``--kt-candidate-*``), started beside the server on first use.

        Both stay resident, on the same cores, and are measured alternately: an idle server
        waits on its socket and takes no CPU, so each arm runs alone on the cores it measures on.
        """
        turns = self._alternating()
        if turns is not None:
            return turns.arm(CANDIDATE)
        if self._candidate is None:
            self.server()  # the current server first: its cores are the candidate's
            options = candidate_options(self.options)
            folder = self.log_dir / CANDIDATE
            folder.mkdir(exist_ok=True)
            handle = self._stack.enter_context(open_server(options, folder, say=self.say))
            self.report.candidate = _server_record(handle)
            self._candidate = (handle, self._calibrated_probe(handle))
        handle, probe = self._candidate
        return Arm(probe, handle.processes)

    @functools.cached_property
    def candidate_actors(self) -> ActorContext:
        """Actors placed relative to the A/B candidate (its cores, its memory cgroup) in effect quads."""
        return ActorContext(
            options=self.options, log_dir=self.log_dir, server=self._candidate_handle, say=self.say
        )

    def _candidate_handle(self) -> ServerHandle:
        turns = self._alternating()
        if turns is not None:
            return turns.handle(CANDIDATE)
        self.candidate()
        assert self._candidate is not None
        return self._candidate[0]

    @functools.cached_property
    def actors(self) -> ActorContext:
        """What actor builders need: options, log folder, the server's cores on demand."""
        return ActorContext(options=self.options, log_dir=self.log_dir, server=self.server, say=self.say)

    def measure(self, streams: int = 1, rounds: int = 1) -> list[RoundSample]:
        """Rounds at ``streams`` concurrent streams, monitored and added to the report."""
        probe, server = self.probe(), self.server()
        samples = []
        with measuring(self.say), self._server_evidence():
            for _ in range(rounds):
                sample = measure_monitored(probe, streams, server.processes)
                self.report.add_round(sample)
                samples.append(sample)
        return samples

    def compare(
        self,
        condition: Condition,
        *,
        label: str,
        streams: int = 1,
        trials: int | None = None,
        design: Design | None = None,
        expectations: Sequence[Check] = (),
        baseline_streams: int | None = None,
        candidate: bool = False,
        max_tokens: int | None = None,
    ) -> Comparison:
        """Interleaved baseline/condition pairs (see ``measure.compare``), added to the report.

        ``candidate``: the condition arm measures the A/B candidate (:meth:`candidate`).
        ``max_tokens``: both arms' output length for this comparison (None: the session's).
        """
        if trials is None and design is None:
            trials = self.options.trials
        if candidate:  # taking turns, neither is made resident here: the pairs decide the order
            current, other = self._ab_arms()
        else:
            current, other = Arm(self.probe(), self.server().processes), None
        return self._recorded(
            lambda: compare(
                current.probe,
                condition,
                label=label,
                trials=trials,
                design=design,
                expectations=expectations,
                streams=streams,
                baseline_streams=baseline_streams,
                processes=current.processes,
                progress=self.say,
                log_tail=self._log_tail(candidate),
                candidate=other,
                current=current,
                max_tokens=max_tokens,
            )
        )

    def compare_effects(
        self,
        conditions: tuple[Condition, Condition],
        *,
        label: str,
        design: Design,
        expectations: Sequence[Check],
        streams: int = 1,
        baseline_streams: int | None = None,
    ) -> EffectComparison:
        """A condition's effect on the A/B candidate against its effect on the current server.

        ``conditions``: the current server's and the candidate's factories (built with
        :attr:`actors` and :attr:`candidate_actors`). See ``measure.sensitivity``.
        """
        current, candidate = self._ab_arms()
        return self._recorded(
            lambda: compare_effects(
                current,
                candidate,
                conditions,
                label=label,
                design=design,
                expectations=expectations,
                streams=streams,
                baseline_streams=baseline_streams,
                progress=self.say,
                log_tail=self._log_tail(True),
            )
        )

    def _ab_arms(self) -> tuple[Arm, Arm]:
        """The A/B's current and candidate arms, both started and calibrated before measuring.

        Servers taking turns are not switched here (``Alternating.arm`` starts only a server
        never started): the first pair begins with whichever is resident, warmed up then.
        """
        turns = self._alternating()
        if turns is not None:
            current = turns.arm(CURRENT)
            self._record_workload(current.probe)
            return current, turns.arm(CANDIDATE)
        return Arm(self.probe(), self.server().processes), self.candidate()

    def _log_tail(self, candidate: bool) -> Callable[[], str]:
        """Where an error part-way reads the servers' state and log tail.

        Taking turns: the resident server's. Both resident: the current's and, in an A/B, the
        candidate's too (either may be the one that failed).
        """
        turns = self._alternating()
        if turns is not None:
            return turns.error_detail
        server = self.server()
        if not candidate:
            return server.error_detail
        other = self._candidate_handle()
        return lambda: f"the current server: {server.error_detail()}\nthe candidate: {other.error_detail()}"

    def _recorded(self, measure: Callable[[], Measured]) -> Measured:
        """Run a comparison under the machine lock and add it to the report, aborted or not."""
        try:
            with measuring(self.say):
                result = measure()
        except BaseException as exc:  # Ctrl-C too: nothing measured is lost
            partial = partial_comparison(exc)
            if partial is not None:
                self.report.add_comparison(partial)
            raise
        self.report.add_comparison(result)
        return result

    @contextlib.contextmanager
    def _server_evidence(self, server: ServerHandle | None = None) -> Iterator[None]:
        """A server error leaves with the server's state and log tail attached (once).

        ``server``: the one the block talks to (default: the current server, when started).
        """
        try:
            yield
        except ServerError as exc:
            found = server or self._server
            if not exc.detail and found is not None:
                exc.add_detail(found.error_detail())
            raise

    def close(self) -> None:
        self._server = None
        self._probe = None
        self._candidate = None
        self._turns = None
        self._stack.close()
