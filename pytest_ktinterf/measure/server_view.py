"""The server's own view of each round, beside the client's: its ``/metrics`` and KT's log line.

The probe's figures are the measurement; these are the cross-check that the probe measured what
the server did (a probe short of CPU, a proxy in between, or someone else's traffic would show as
a disagreement). Found once per server (:meth:`ServerView.find`), then every monitored round is
watched (:meth:`ServerView.watching`): ``/metrics`` scraped before, every ``interval_s`` during,
and after the round; the log file's new lines read after it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pytest_ktinterf.measure import prometheus
from pytest_ktinterf.measure.kt_log import LogWindow
from pytest_ktinterf.measure.samples import RoundSample

SCRAPE_TIMEOUT_S = 2.0
DEFAULT_INTERVAL_S = 1.0  # a scrape is a request the server serves: few, so they do not perturb it
AGREEMENT = {"decode": 0.02, "prefill": 0.10}
"""How far the probe's rate may be from the server's own before the report flags it: the probe's
known accuracy (README, "Accuracy"; ``tests/test_probe_accuracy.py``). Decode: both time the same
tokens, the client only adds each token's trip (client/server 1.0001-1.0035 measured). Prefill:
the client's time to first token also holds HTTP, tokenisation and sending the token (~1% of a
0.8 s prefill here, more for short prompts)."""


def _scrape(client: httpx.Client, url: str) -> dict[str, float] | None:
    with contextlib.suppress(httpx.HTTPError):
        response = client.get(f"{url}/metrics")
        if response.status_code == 200:
            return prometheus.parse(response.text)
    return None


def _client() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(SCRAPE_TIMEOUT_S, connect=1.0), trust_env=False)


@dataclass
class Watch:
    """One round being watched: the scrapes and the log window, until :meth:`figures` reads them."""

    view: ServerView
    start: float = field(default_factory=time.time)
    end: float | None = None
    before: dict[str, float] | None = None
    after: dict[str, float] | None = None
    gauges: list[dict[str, float]] = field(default_factory=list)
    failed: int = 0
    log: LogWindow | None = None

    def figures(self, sample: RoundSample) -> dict[str, Any]:
        """What the server said of this round (empty when it says nothing we can read)."""
        found: dict[str, Any] = {}
        names = self.view.names
        if names is not None:
            found["metrics"] = self._metrics(names, sample)
        if self.log is not None:
            lines = self.log.read(self.start, self.end or time.time())
            if lines.get("lines") or lines.get("outside_window") or "error" in lines:
                found["kt_log"] = lines  # a log with no KT line at all (llama-server's) says nothing
        return found

    def _metrics(self, names: prometheus.Names, sample: RoundSample) -> dict[str, Any]:
        record: dict[str, Any] = {
            "engine": names.engine,
            "scrapes": len(self.gauges) + (self.before is not None) + (self.after is not None),
            "failed_scrapes": self.failed,
            "interval_s": self.view.interval_s,
        }
        gauges = (("running_max", names.running), ("queued_max", names.queued), ("kv_use_max", names.kv_use))
        for key, name in gauges:
            seen = [g[name] for g in self.gauges if name is not None and name in g]
            if seen:
                record[key] = max(seen)
        if self.before is None or self.after is None:
            return {**record, "reason": "the scrape before or after the round failed"}
        found = prometheus.rates(names, self.before, self.after, len(sample.requests))
        received = sum(r.completion_tokens for r in sample.requests)
        record.update(found)
        if found["generated_tokens"] is not None and round(found["generated_tokens"]) != received:
            record.update(prefill_tps=None, decode_tps=None)
            record["reason"] = (
                f"the server generated {found['generated_tokens']:.0f} tokens in the round, the probe "
                f"received {received}: other traffic, or counters that lag; its rates are not used"
            )
        return record


@dataclass
class ServerView:
    """Where a server's own figures come from: its ``/metrics`` (when an engine we know answers) and
    its log file (KT's ``Performance`` lines)."""

    url: str
    names: prometheus.Names | None = None
    log_path: Path | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    no_metrics: str | None = None  # why there are none, for the record

    @classmethod
    def find(cls, url: str, log_path: Path | None, interval_s: float = DEFAULT_INTERVAL_S) -> ServerView:
        """Ask ``/metrics`` once: which engine answers, or why nothing can be scraped."""
        why = None
        names = None
        try:
            with _client() as client:
                response = client.get(f"{url}/metrics")
            if response.status_code != 200:
                why = (
                    f"GET /metrics answered {response.status_code} "
                    "(llama-server needs --metrics, SGLang --enable-metrics)"
                )
            else:
                names = prometheus.engine_of(prometheus.parse(response.text))
                if names is None:
                    why = "/metrics has no token counters of llama.cpp, SGLang or vLLM"
        except httpx.HTTPError as exc:
            why = f"GET /metrics failed ({type(exc).__name__})"
        return cls(url=url, names=names, log_path=log_path, interval_s=interval_s, no_metrics=why)

    def describe(self) -> dict[str, Any]:
        return {
            "metrics": self.names.engine if self.names is not None else f"none: {self.no_metrics}",
            "scrape_interval_s": self.interval_s,
            "log": str(self.log_path) if self.log_path is not None else None,
        }

    @contextlib.contextmanager
    def watching(self) -> Iterator[Watch]:
        """Scrape before, during (every ``interval_s``) and after the block; mark the log's end."""
        watch = Watch(self, log=LogWindow(self.log_path) if self.log_path is not None else None)
        if self.names is None:
            watch.start = time.time()
            yield watch
            watch.end = time.time()
            return
        stop = threading.Event()
        with _client() as client:
            watch.before = _scrape(client, self.url)
            watch.failed += watch.before is None

            def sample_gauges() -> None:
                while not stop.wait(self.interval_s):
                    found = _scrape(client, self.url)
                    if found is None:
                        watch.failed += 1
                    else:
                        watch.gauges.append(found)

            thread = threading.Thread(target=sample_gauges, name="ktinterf-scrape", daemon=True)
            watch.start = time.time()
            thread.start()
            try:
                yield watch
            finally:
                watch.end = time.time()
                stop.set()
                thread.join(timeout=SCRAPE_TIMEOUT_S + 1)
                watch.after = _scrape(client, self.url)
                watch.failed += watch.after is None
