"""Does watching the server's ``/metrics`` during a round slow the round it watches?

    python -m tests.benchmarks.bench_scrape_cost [pairs] [interval_s ...]   (default 20; 1.0 0.25)

A scrape is a request the server serves, on the cores it decodes on. The embedded llama-server
(``--metrics``, last core) is measured by the plugin's probe in interleaved pairs of rounds at one
stream, one round plain, one watched by ``ServerView.watching`` (scraped before, every
``interval_s`` during, after), the order alternating pair by pair. Printed per interval: the
watched/plain ratio of decode and prefill tokens/s, Hodges-Lehmann with its exact 95% interval
(``judge.stats.paired_ratio_ci``), and the scrapes per round. Numbers, not assertions.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pytest_ktinterf.judge.stats import paired_ratio_ci
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import RoundSample
from pytest_ktinterf.measure.server_view import ServerView
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import open_server


def _pairs(probe: Probe, view: ServerView, pairs: int) -> tuple[list[RoundSample], list[RoundSample], int]:
    """(plain rounds, watched rounds, scrapes during the watched ones), interleaved, order alternating."""
    plain: list[RoundSample] = []
    watched: list[RoundSample] = []
    scrapes = 0
    for index in range(pairs):
        for watch_it in (index % 2 == 1, index % 2 == 0):
            if watch_it:
                with view.watching() as watch:
                    sample = probe.measure(1)
                watched.append(sample)
                scrapes += len(watch.gauges) + 2
            else:
                plain.append(probe.measure(1))
    return plain, watched, scrapes


def main(argv: list[str]) -> int:
    pairs = int(argv[1]) if len(argv) > 1 else 20
    intervals = [float(x) for x in argv[2:]] or [1.0, 0.25]
    last = (os.cpu_count() or 1) - 1
    options = Options(backend="embedded", server_cpus=[last], server_cpus_given=True)
    with tempfile.TemporaryDirectory() as tmp, open_server(options, Path(tmp)) as server:
        probe = Probe(server.url, avoid_cores=server.cpus() or ())
        probe.calibrate()
        probe.warm(1)
        for interval in intervals:
            view = ServerView.find(server.url, None, interval_s=interval)
            if view.no_metrics:
                print(f"no /metrics: {view.no_metrics}")
                return 1
            plain, watched, scrapes = _pairs(probe, view, pairs)
            decode = paired_ratio_ci(
                [s.metric("decode") for s in watched], [s.metric("decode") for s in plain]
            )
            prefill = paired_ratio_ci(
                [s.metric("prefill") for s in watched], [s.metric("prefill") for s in plain]
            )
            print(
                f"interval {interval:g} s, {pairs} pairs, {scrapes / pairs:.1f} scrapes a watched round: "
                f"watched/plain decode {decode}, prefill {prefill}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
