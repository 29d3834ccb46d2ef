"""Report records made by hand for the rendering tests (old ones without the matrix keys, new
ones with them) and the helpers that read their tables; no server, no measurement.
"""

from __future__ import annotations

from typing import Any

from pytest_ktinterf.measure.samples import RequestSample, RoundSample

SVG = "{http://www.w3.org/2000/svg}"


def round_record(
    streams: int, prefill: list[float], decode: list[float], ram: float = 1000.0
) -> dict[str, Any]:
    """A round as ``RoundSample.to_record`` writes it (the fields the report reads)."""
    return {
        "streams": streams,
        "prefill_aggregate_tps": sum(prefill) * 0.8,
        "decode_aggregate_tps": sum(decode) * 0.8,
        "prefill_per_stream_tps": prefill,
        "decode_per_stream_tps": decode,
        "resources": {"ram_used_peak_mib": ram, "server_rss_peak_mib": 300.0, "gpu": "absent"},
    }


def ratio(point: float, lo: float, hi: float) -> dict[str, float]:
    return {"point": point, "lo": lo, "hi": hi, "confidence": 0.95}


def trials(pairs: int) -> list[dict[str, Any]]:
    return [{"arm": arm, "index": i} for i in range(pairs) for arm in ("baseline", "condition")]


def old_record() -> dict[str, Any]:
    """A record as written before the matrix keys existed: verdicts only say ``passed``."""
    return {
        "format": "pytest-ktinterf report v1",
        "server": {"description": "llama-server SmolLM2", "url": "http://127.0.0.1:1", "cpus": "1"},
        "workload": {"api": "chat", "prompt_tokens": 128, "max_tokens": 64},
        "concurrency": {
            "1": [round_record(1, [500.0], [30.0]), round_record(1, [510.0], [31.0], ram=1100.0)],
            "4": [round_record(4, [400.0, 410.0, 420.0, 430.0], [20.0, 21.0, 22.0, 23.0])],
        },
        "comparisons": [
            {
                "label": "CPU stress on spare cores",
                "streams": 1,
                "ratios": {"prefill": ratio(0.95, 0.69, 1.11), "decode": ratio(0.97, 0.85, 1.09)},
                "verdicts": [],
                "trials": trials(6),
            },
            {
                "label": "CPU stress on the server's cores",
                "streams": 1,
                "ratios": {"prefill": ratio(0.51, 0.39, 0.53), "decode": ratio(0.44, 0.41, 0.50)},
                "verdicts": [
                    {"metric": "prefill", "expectation": "degraded by at least 25%", "passed": True},
                    {"metric": "decode", "expectation": "degraded by at least 25%", "passed": False},
                ],
                "trials": trials(6),
            },
        ],
    }


LONG_LABEL = 'RAM streamed by a co-runner on the spare cores, 2 GiB, with <odd> & "quoted" words'


def new_record() -> dict[str, Any]:
    """A record with the seed report's matrix beside each measurement."""
    record = old_record()
    record["comparisons"] = [
        {
            "id": "cpu_spare",
            "experiment": "experiments/seed_report.toml",
            "label": "CPU stress on spare cores",
            "streams": 1,
            "pairs": 10,
            "reference": {"prefill": "degraded", "decode": "unaffected"},
            "expected": {"prefill": "degraded by at least 10%", "decode": "unaffected within 15%"},
            "ratios": {
                "prefill": ratio(0.80, 0.70, 0.88),
                "decode": ratio(0.95, 0.82, 1.04),
                "ram": ratio(1.25, 1.20, 1.30),
            },
            "verdicts": [
                {
                    "metric": "prefill",
                    "expectation": "degraded by at least 10%",
                    "status": "pass",
                    "passed": True,
                },
                {
                    "metric": "decode",
                    "expectation": "unaffected within 15%",
                    "status": "inconclusive",
                    "passed": False,
                },
                {
                    "metric": "ram",
                    "expectation": "increased by at least 10%",
                    "status": "pass",
                    "passed": True,
                },
            ],
            "trials": trials(10),
        },
        {
            "id": "ram_stream",
            "experiment": "experiments/seed_report.toml",
            "label": LONG_LABEL,
            "streams": 4,
            "baseline_streams": 1,
            "reference": {"prefill": "collapsed", "decode": "improved"},
            "expected": {"decode": "degraded by at least 20%"},
            "ratios": {"prefill": ratio(0.10, 0.05, 0.20), "decode": ratio(1.10, 0.90, 1.30)},
            "verdicts": [
                {
                    "metric": "decode",
                    "expectation": "degraded by at least 20%",
                    "status": "fail",
                    "passed": False,
                }
            ],
            "trials": trials(6),
        },
        {
            "label": "GPU compute",
            "streams": 1,
            "reference": {"prefill": "unaffected"},
            "ratios": {"prefill": ratio(1.0, 0.9, 1.1)},
            "verdicts": [],
            "trials": trials(6),
        },
    ]
    return record


def table(lines: list[str], title: str) -> list[list[str]]:
    """The rows (cells stripped) of the table under ``title``, header first, the -+- rule dropped."""
    start = lines.index(title) + 1
    rows = [lines[start]]
    for line in lines[start + 2 :]:
        if " | " not in line:
            break
        rows.append(line)
    return [[cell.strip() for cell in row.split(" | ")] for row in rows]


INTERFERENCE = (
    "Interference (condition / baseline: Hodges-Lehmann change over interleaved pairs, "
    "[exact CI, 95% over the looks])"
)


def fake_round(streams: int, ttft: float, span: float) -> RoundSample:
    requests = [
        RequestSample(
            stream=s,
            t_send=0.0,
            t_first=ttft * (1 + s / 10),
            t_last=ttft * (1 + s / 10) + span,
            token_times=[ttft + span * i / 7 for i in range(8)],
            prompt_tokens=128,
            completion_tokens=8,
        )
        for s in range(streams)
    ]
    return RoundSample(streams, requests, 0.0, max(r.t_last for r in requests), {"ram_used_peak_mib": 900.0})
