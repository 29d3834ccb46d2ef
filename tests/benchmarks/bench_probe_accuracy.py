"""Benchmark: how close the probe's client-side figures are to llama-server's own timings.

Run: ``python -m tests.benchmarks.bench_probe_accuracy [rounds]`` (embedded server, default
options). Prints client/server ratios for prefill and decode at 1 and 4 streams, the TTFT
overhead the server's prefill timer does not see, and the per-stream sum versus the true
aggregate. Numbers, not assertions: the assertions live in tests/test_probe_accuracy.py.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import open_server
from pytest_ktinterf.system.lock import measuring


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.4f}  min {min(values):.4f}  max {max(values):.4f}"


def main(rounds: int = 10) -> None:
    options = Options(server_cpus=[max(os.sched_getaffinity(0))])
    with tempfile.TemporaryDirectory() as logs, open_server(options, Path(logs)) as server, measuring():
        probe = Probe(server.url, prompt_tokens=options.prompt_tokens, max_tokens=options.max_tokens)
        probe.calibrate()
        probe.measure(1)  # warm-up
        for streams in (1, options.streams):
            samples = [probe.measure(streams) for _ in range(rounds)]
            requests = [r for s in samples for r in s.requests]
            prefill = [r.prefill_tps / r.server_prefill_tps for r in requests]
            decode = [r.decode_tps / r.server_decode_tps for r in requests]
            overhead = [1000 * (r.ttft - r.processed_tokens / r.server_prefill_tps) for r in requests]
            summed = [sum(s.per_stream("decode")) / s.decode_aggregate for s in samples]
            print(f"== {streams} stream(s), {rounds} rounds, {len(requests)} requests")
            print(f"client/server prefill ratio: {spread(prefill)}")
            print(f"client/server decode ratio:  {spread(decode)}")
            print(f"TTFT overhead (ms):          {spread(overhead)}")
            print(f"sum of streams / aggregate (decode): {spread(summed)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
