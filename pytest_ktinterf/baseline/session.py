"""The baseline gate inside a pytest session: which file, which checks, and saving at the end.

``fingerprint.py``, ``store.py`` and ``gate.py`` know nothing of pytest; this module applies
them to a session's options: it finds this machine's baseline file when comparing, hands each
condition the gate checks of its figures (``experiment/interfere.py`` judges them with the
condition's own pairs, so an inconclusive gate buys more pairs like any undecided check), and
appends the session's record to the file when saving.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_ktinterf.baseline import fingerprint as fingerprints
from pytest_ktinterf.baseline.fingerprint import Fingerprint
from pytest_ktinterf.baseline.gate import GateCheck, effect_check, throughput_check
from pytest_ktinterf.baseline.store import BaselineFile, closest, find, session_from_record
from pytest_ktinterf.baseline.thresholds import threshold_for
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.options import BaselineSettings, Options
from pytest_ktinterf.server.discover import cores_of, listener
from pytest_ktinterf.server.identity import describe

GATED_METRICS = ("prefill", "decode", "prefill_per_stream", "decode_per_stream")
RECORD_COMMAND = "python -m pytest_ktinterf baseline"


def fingerprint_of(options: Options) -> Fingerprint:
    """This session's fingerprint: the machine, the cores in use, the backend and the workload.

    Known from the options alone, before any server starts, so a missing or mismatched baseline
    is said at the start of the session, not after an hour of measuring.
    """
    server_cpus = server_cores(options)
    actor_cpus = sorted(set(os.sched_getaffinity(0)) - set(server_cpus))
    return fingerprints.make(
        backend=options.backend,
        server_cpus=server_cpus,
        actor_cpus=actor_cpus,
        workload={
            "api": options.api,
            "prompt_tokens": options.prompt_tokens,
            "max_tokens": options.max_tokens,
        },
    )


def server_cores(options: Options) -> list[int]:
    """The server's cores: as pinned or declared; for a running server not declared, as found
    from its port (``server/discover.py``), none when it cannot be seen (not the default core)."""
    if options.backend != "external" or options.server_cpus_given or options.url is None:
        return list(options.server_cpus)
    found = listener(options.url)
    return (cores_of(found.tree()) or []) if found is not None else []


@dataclass
class Gatekeeper:
    """The session's baseline: the settings, this machine's fingerprint and (comparing) its file."""

    settings: BaselineSettings
    fingerprint: Fingerprint
    directory: Path
    baseline: BaselineFile | None = None
    missing: str | None = None  # the one line saying why there is nothing to compare with

    @classmethod
    def open(cls, options: Options, rootpath: Path) -> Gatekeeper | None:
        """None when no baseline flag is given (the gate then costs nothing)."""
        settings = options.baseline
        if not settings.active:
            return None
        keeper = cls(settings, fingerprint_of(options), Path(rootpath, settings.directory))
        if settings.compare:
            keeper._load(rootpath)
        return keeper

    def _load(self, rootpath: Path) -> None:
        if self.settings.file:
            path = Path(rootpath, self.settings.file)
            if not path.is_file():
                raise KtInterfError(
                    f"--kt-baseline-file {path} does not exist",
                    f"give an existing baseline file, or record one with {RECORD_COMMAND}",
                )
            chosen = BaselineFile.load(path)
            differences = chosen.fingerprint.differences(self.fingerprint)
            if differences:
                raise KtInterfError(
                    f"{path} was recorded on another machine or setup: {'; '.join(differences)}",
                    "compare on the machine and settings it was recorded with, or record a "
                    f"baseline here with {RECORD_COMMAND}",
                )
            self.baseline = chosen
            return
        self.baseline = find(self.directory, self.fingerprint)
        if self.baseline is None:
            near = closest(self.directory, self.fingerprint)
            hint = f" (nearest: {near[0].name}, which differs in {'; '.join(near[1])})" if near else ""
            self.missing = (
                f"no baseline for {self.fingerprint.slug} in {self.directory}{hint}: record one with "
                f"{RECORD_COMMAND} (3 sessions of pytest --kt-baseline-save) and commit it"
            )

    def require(self) -> str | None:
        """Before measuring a gated figure: the missing-baseline line, raised when strict."""
        if self.settings.compare and self.baseline is None and self.missing:
            if self.settings.strict:
                raise KtInterfError(self.missing, "or drop --kt-baseline-strict to skip instead")
            return self.missing
        return None

    def _threshold(self, metric: str, own: dict[str, float] | None) -> float:
        return (own or {}).get(metric) or threshold_for(self.settings.thresholds, metric)

    def condition_checks(
        self, figure: str, metrics: Iterable[str], own: dict[str, float] | None = None
    ) -> list[GateCheck]:
        """The gate's checks for a condition's effects (``figure`` = ``experiment::condition``)."""
        if self.baseline is None:
            return []
        checks = []
        for metric in metrics:
            stored = [
                s["effects"][figure][metric]
                for s in self.baseline.sessions
                if metric in (s.get("effects") or {}).get(figure, {})
            ]
            if metric in GATED_METRICS and stored:
                name = f"{figure.split('::')[-1]} {metric}"
                checks.append(
                    effect_check(
                        name, metric, stored, self._threshold(metric, own), strict=self.settings.strict
                    )
                )
        return checks

    def uncontended_check(self, streams: int, metric: str) -> GateCheck | None:
        """The gate's check of the server's own speed at ``streams``, if the baseline has it."""
        if self.baseline is None:
            return None
        values = [
            list(s["uncontended"][str(streams)][metric])
            for s in self.baseline.sessions
            if metric in (s.get("uncontended") or {}).get(str(streams), {})
        ]
        values = [v for v in values if len(v) >= 2]
        if not values:
            return None
        figure = f"uncontended {metric} at {streams} stream{'s' if streams > 1 else ''}"
        return throughput_check(
            figure, metric, values, self._threshold(metric, None), strict=self.settings.strict
        )

    def header(self) -> dict[str, Any]:
        """What the report says about the baseline used (file, sessions, server then)."""
        found: dict[str, Any] = {"fingerprint": self.fingerprint.slug, "mode": self._mode()}
        if self.baseline is not None:
            found["file"] = str(self.baseline.path)
            found["sessions"] = len(self.baseline.sessions)
            servers = [_server_line(s) for s in self.baseline.server_identities()]
            found["server_then"] = sorted(set(servers))
        if self.missing:
            found["missing"] = self.missing
        return found

    def _mode(self) -> str:
        s = self.settings
        return "+".join(m for m, on in (("compare", s.compare), ("save", s.save), ("update", s.update)) if on)

    def save(self, record: dict[str, Any]) -> str:
        """Append the session's record to this machine's file (start it over with update); say what."""
        session = session_from_record(record)
        if not session.get("effects") and not session.get("uncontended"):
            return "baseline not saved: this session measured no condition and no uncontended figure"
        existing = find(self.directory, self.fingerprint)
        if existing is None or self.settings.update:
            target = BaselineFile.new(self.directory, self.fingerprint)
        else:
            target = existing
            now = _server_line(session.get("server") or {})
            then = {_server_line(s) for s in target.server_identities()}
            if then and now not in then:
                raise KtInterfError(
                    f"baseline {target.path} holds sessions of another server ({', '.join(sorted(then))}; "
                    f"this session: {now}): mixing them would blur both",
                    "gate the new server with --kt-baseline-compare first; once accepted, start its "
                    "baseline over with --kt-baseline-update",
                )
        target.append(session, keep=self.settings.sessions)
        target.save()
        return (
            f"baseline saved: {target.path} now holds {len(target.sessions)} session"
            f"{'s' if len(target.sessions) != 1 else ''} (keeps the newest {self.settings.sessions})"
        )


def _server_line(server: dict[str, Any]) -> str:
    """A session's server (the record's ``server`` section) as the one line identities compare by."""
    return describe(server.get("identity") or {})
