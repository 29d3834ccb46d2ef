"""KT v0.2's ``Performance(T/s)`` lines: a KT server log replayed through the parser (issue 15).

``tests/data/kt_v02_server.log`` is in KT's documented format (its source: tests/data/SOURCES.md).
Replaying writes its lines into a log file the way the server does, while a round is watched,
and the round must get exactly the lines written inside its window.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest

from pytest_ktinterf.measure import kt_log
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.measure.server_view import ServerView
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import open_server
from tests.hand_server import BINARY, LAST_CORE, MODEL

CAPTURED = (Path(__file__).parent / "data" / "kt_v02_server.log").read_text().splitlines()


def stamp(moment: float) -> str:
    """A time stamp as KT's logger writes it (``asctime``: local time, milliseconds after a comma)."""
    local = datetime.datetime.fromtimestamp(moment)
    return local.strftime("%Y-%m-%d %H:%M:%S") + f",{local.microsecond // 1000:03d}"


def test_every_performance_line_of_the_captured_log_is_read():
    lines = kt_log.parse("\n".join(CAPTURED))
    assert len(lines) == 4  # the "not recorded" line and uvicorn's lines are not figures
    first = lines[0]
    figures = (first.prefill_tps, first.decode_tps, first.prefill_s, first.decode_s)
    assert figures == (48.117, 12.402, 2.660, 5.080)
    expected = datetime.datetime(2025, 3, 4, 10, 16, 41, 502000).timestamp()
    assert first.t == pytest.approx(expected, abs=1e-6)
    assert lines[3].decode_tps == 13.10  # balance_serve's two-decimal form


def test_a_rounds_figures_weigh_each_request_by_its_seconds():
    lines = kt_log.parse("\n".join(CAPTURED[2:5]))  # the first two requests
    found = kt_log.figures(lines)
    tokens = 48.117 * 2.660 + 47.903 * 2.672
    assert found["lines"] == 2
    assert found["prefill_tps"] == pytest.approx(tokens / (2.660 + 2.672))
    assert kt_log.figures([]) == {"lines": 0, "prefill_tps": None, "decode_tps": None}


def test_lines_are_matched_to_the_round_by_their_time_stamps():
    lines = kt_log.parse("\n".join(CAPTURED))
    start = datetime.datetime(2025, 3, 4, 10, 16, 40).timestamp()
    end = datetime.datetime(2025, 3, 4, 10, 16, 50).timestamp()
    inside = [x for x in lines if x.t is not None and start <= x.t <= end]
    assert [x.decode_tps for x in inside] == [12.402, 12.351]


def replay(path: Path, moment: float) -> None:
    """Append the captured log's lines to ``path`` as KT would write them now (stamps at ``moment``)."""
    with open(path, "a") as log:
        for line in CAPTURED:
            if line[:4].isdigit():
                line = stamp(moment) + line[23:]
            log.write(line + "\n")


def one_request_round() -> RoundSample:
    now = time.perf_counter()
    request = RequestSample(0, now, now + 0.1, now + 0.5, [now + 0.1, now + 0.5], 128, 2)
    return RoundSample(streams=1, requests=[request], t_start=now, t_end=now + 0.5)


def test_a_watched_round_gets_the_lines_written_in_it_and_counts_the_rest(tmp_path):
    log = tmp_path / "kt.log"
    replay(log, time.time() - 3600)  # before the round: never read
    view = ServerView(url="http://127.0.0.1:9", log_path=log)
    with view.watching() as watch:
        replay(log, time.time())  # the server's lines for this round
    with open(log, "a") as late:  # written after the round, with a later stamp
        late.write(stamp(time.time() + 60) + " INFO x.py[1]: " + CAPTURED[2].split(": ", 1)[1] + "\n")
    found = watch.figures(one_request_round())["kt_log"]
    assert found["lines"] == 4
    assert found["outside_window"] == 1
    assert found["decode_tps"] == pytest.approx(
        (12.402 * 5.080 + 12.351 * 5.101 + 6.015 * 10.474 + 13.10 * 4.809) / (5.080 + 5.101 + 10.474 + 4.809)
    )
    assert "metrics" not in watch.figures(one_request_round())  # no /metrics known: none scraped


def test_a_log_that_vanished_is_said_not_raised(tmp_path):
    log = tmp_path / "kt.log"
    log.write_text("")
    view = ServerView(url="http://127.0.0.1:9", log_path=log)
    with view.watching() as watch:
        log.unlink()
    assert "error" in watch.figures(one_request_round())["kt_log"]


def test_a_log_without_kt_lines_adds_nothing(tmp_path):
    """llama-server's own log has no ``Performance`` line: its rounds carry no empty KT figures."""
    log = tmp_path / "llama.log"
    log.write_text("")
    view = ServerView(url="http://127.0.0.1:9", log_path=log)
    with view.watching() as watch:
        log.write_text("slot launch_slot_: id  0 | task 5 | processing task\n")
    assert watch.figures(one_request_round()) == {}


def test_a_started_servers_own_log_is_where_its_kt_lines_are_read(tmp_path):
    """A KT preset runs through the process (or docker) backend: its output goes to the session's
    log file, which is the file its rounds are read from. Shown with a real llama-server started
    by the process backend, KT's lines replayed into that same file during a round."""
    command = f"{BINARY} -m {MODEL} --host 127.0.0.1 --port {{port}} -t 1 -c 1024 --metrics"
    options = Options(backend="process", server_cmd=command, server_cpus=[LAST_CORE])
    with open_server(options, tmp_path) as handle:
        log = handle.log_path()
        assert log is not None and log.parent == tmp_path and "llama" in log.read_text(errors="replace")
        view = ServerView.find(handle.url, log)
        with view.watching() as watch:
            replay(log, time.time())
        found = watch.figures(one_request_round())
    assert found["kt_log"]["lines"] == 4
    assert found["metrics"]["engine"] == "llama.cpp"
