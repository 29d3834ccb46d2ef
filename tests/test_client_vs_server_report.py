"""The report's "Client vs server" table, rendered from records (``report/server_text.py``)."""

from __future__ import annotations

from typing import Any

from pytest_ktinterf.report.server_text import agreement, server_lines
from pytest_ktinterf.report.text import MARKDOWN, TEXT, render_lines


def round_record(client: float, server: float | None, source: str = "metrics") -> dict[str, Any]:
    """A counted round as the record holds it: the probe's per-request rates, the server's own."""
    own = {} if server is None else {source: {"decode_tps": server, "prefill_tps": 2 * server}}
    return {
        "client_per_request_tps": {"decode": client, "prefill": 2 * client},
        "server": own,
        "requests": [{"decode_tps": client, "prefill_tps": 2 * client}],
    }


def comparison(server_over_client: float, streams: int = 1) -> dict[str, Any]:
    trials = []
    for index in range(3):
        for arm, client in (("baseline", 80.0), ("condition", 40.0)):
            trial = {"arm": arm, "index": index, **round_record(client, client * server_over_client)}
            trial["more_rounds"] = [round_record(client, client * server_over_client)]
            trials.append(trial)
    return {"id": "cpu_server", "label": "CPU stress", "streams": streams, "trials": trials}


def test_agreeing_figures_are_shown_unflagged():
    lines = server_lines([comparison(1.004)], TEXT)
    rows = [line for line in lines if line.startswith("cpu_server")]
    assert len(rows) == 2 and "80 / 80.3: 1.004 [1.004, 1.004]" in rows[0]
    assert not any("] DISAGREE" in line for line in lines)


def test_a_disagreement_beyond_the_probes_accuracy_is_flagged():
    lines = server_lines([comparison(1.03)], TEXT)  # decode 3% off: beyond 2%
    rows = [line for line in lines if line.startswith("cpu_server")]
    assert all("1.030 [1.030, 1.030] DISAGREE" in row for row in rows)
    # prefill 3% off is within its 10%: not flagged
    assert all("1.030 [1.030, 1.030] |" in row for row in rows)


def test_prefill_is_compared_at_one_stream_only():
    lines = server_lines([comparison(1.0, streams=4)], TEXT)
    assert all("(1 stream only)" in line for line in lines if line.startswith("cpu_server"))


def test_per_request_timings_stand_in_for_older_records():
    trial = {"arm": "baseline", "requests": [{"decode_tps": 80.0, "server_decode_tps": 80.4}]}
    found = agreement([trial], "decode")
    assert found is not None and found["source"] == "timings" and found["server"] == 80.4


def test_nothing_is_shown_where_no_round_has_a_server_figure():
    plain = {"id": "x", "streams": 1, "trials": [{"arm": "baseline", "requests": [{"decode_tps": 80.0}]}]}
    assert server_lines([plain], TEXT) == []


def test_the_section_is_part_of_the_report_in_both_styles():
    record = {"comparisons": [comparison(1.0)]}
    assert any(line.startswith("Client vs server") for line in render_lines(record, TEXT))
    assert any(line.startswith("### Client vs server") for line in render_lines(record, MARKDOWN))


def test_what_the_server_held_is_the_most_seen_over_the_rounds():
    """Its gauges per round (running, queued, KV use): the most over the arm's rounds, so a queue
    that formed in one round only is still shown."""
    record = comparison(1.0, streams=4)
    for trial in record["trials"]:
        trial["server"]["metrics"].update(running_max=4.0, queued_max=0.0, kv_use_max=0.031)
    record["trials"][3]["more_rounds"][0]["server"]["metrics"].update(running_max=2.0, queued_max=2.0)
    rows = [line for line in server_lines([record], TEXT) if line.startswith("cpu_server")]
    assert rows[0].rstrip().endswith("running 4, queued 0, KV 3%")
    assert rows[1].rstrip().endswith("running 4, queued 2, KV 3%")  # the condition arm's trial 3


def test_a_server_without_gauges_holds_a_dash():
    rows = [line for line in server_lines([comparison(1.0)], TEXT) if line.startswith("cpu_server")]
    assert all(row.rstrip().endswith("| -") for row in rows)
