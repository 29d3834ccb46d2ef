"""The co-runner actor with the real llama-server: its pressure is proven at start, refused when it
weakens, and nothing of it is left afterwards.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from pytest_ktinterf.actors.corunner import CoRunner
from pytest_ktinterf.actors.corunner_load import LoopCounts, RequestLoop
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.server.base import free_port
from pytest_ktinterf.system import assets
from pytest_ktinterf.system.assets import EmbeddedAssets
from pytest_ktinterf.system.lock import measuring

CORE = min(os.sched_getaffinity(0))


@pytest.fixture
def machine() -> Iterator[None]:
    """These tests load a core: hold the machine so no measurement runs beside them."""
    with measuring():
        yield


@pytest.fixture(scope="module")
def llama() -> EmbeddedAssets:
    try:
        return assets.resolve(None, None)
    except KtInterfError as exc:
        pytest.skip(f"embedded assets missing ({exc.cause}); run `python -m pytest_ktinterf fetch`")


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def running(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (a zombie runs nothing)."""
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def processes_serving(port_arg: str) -> list[int]:
    """Any process whose command line holds ``--port N``: catches a server that escaped the tree."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(a == "--port" and b == port_arg for a, b in itertools.pairwise(cmdline)):
            found.append(proc.pid)
    return found


def tree_share(procs: list[psutil.Process], window_s: float) -> float:
    """CPU seconds per second the co-runner's processes used, read here rather than from the actor."""

    def used() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    before, t0 = used(), time.monotonic()
    time.sleep(window_s)
    return (used() - before) / (time.monotonic() - t0)


def assert_nothing_left(actor: CoRunner, pids: set[int]) -> None:
    assert actor.child is not None
    assert not actor.child.alive()
    assert running(pids | {actor.child.pid}) == set()
    assert actor.child.record_path is not None and not actor.child.record_path.exists()


def test_busy_embedded_corunner_proves_requests_and_cpu_share_and_leaves_nothing(machine, llama, tmp_path):
    actor = CoRunner.embedded_llama(llama, [CORE], tmp_path, busy=True)
    port_arg = actor.argv[actor.argv.index("--port") + 1]
    with actor:
        assert actor.child is not None
        # start() returned only once the proof was there, not merely once the server answered
        assert actor.evidence()["requests_completed"] >= 1
        tree = actor.child.tree()
        pids = {p.pid for p in tree}
        assert all(set(p.cpu_affinity()) == {CORE} for p in tree)
        assert tree_share(tree, 0.5) >= 0.5
        done = actor.evidence()["requests_completed"]
        wait_until(lambda: actor.evidence()["requests_completed"] >= done + 2, 30, "two more requests")
        actor.check()
    evidence = actor.evidence()
    assert evidence["kind"] == "co-runner"
    assert evidence["name"] == "co-runner-busy"
    assert evidence["busy"] is True
    assert evidence["argv"][0] == str(llama.llama_server)
    assert evidence["cpus"] == [CORE]
    assert evidence["url"] == f"http://127.0.0.1:{port_arg}"
    assert evidence["requests_completed"] >= done + 2
    assert evidence["request_errors"] == 0
    # each request decodes exactly max_tokens (ignore_eos), so the count cannot be below that
    assert evidence["tokens_generated"] >= evidence["requests_completed"] * actor.max_tokens
    assert evidence["tokens_per_s"] > 0
    assert evidence["cpu_share"] >= 0.5
    assert evidence["rss_mib"] > 0
    assert (evidence["target"], evidence["unit"]) == (0.5, "core share")
    assert evidence["achieved"] == evidence["cpu_share"]
    assert actor.evidence() == evidence  # frozen at stop
    assert_nothing_left(actor, pids)
    assert processes_serving(port_arg) == []
    assert (tmp_path / "actor-corunner.log").stat().st_size > 0


def test_idle_embedded_corunner_proves_its_memory_and_sends_nothing(machine, llama, tmp_path):
    actor = CoRunner.embedded_llama(llama, [CORE], tmp_path, busy=False)
    model_mib = llama.model.stat().st_size / 2**20
    with actor:
        assert actor.child is not None
        tree = actor.child.tree()
        pids = {p.pid for p in tree}
        assert sum(p.memory_info().rss for p in tree) / 2**20 >= model_mib  # the weights are resident
        assert tree_share(tree, 0.5) < 0.1  # idle: nobody is making it infer
        actor.check()
    evidence = actor.evidence()
    assert evidence["kind"] == "co-runner"
    assert evidence["busy"] is False
    assert evidence["requests_completed"] == 0
    assert evidence["tokens_per_s"] == 0
    assert evidence["unit"] == "MiB"
    assert evidence["target"] == pytest.approx(model_mib)
    assert evidence["achieved"] == evidence["rss_mib"] >= evidence["target"]
    assert_nothing_left(actor, pids)


def test_check_refuses_a_stalled_then_a_dead_busy_corunner(machine, llama, tmp_path):
    actor = CoRunner.embedded_llama(llama, [CORE], tmp_path, busy=True)
    actor.stall_timeout_s = 1.0
    with actor:
        assert actor.child is not None
        pids = {p.pid for p in actor.child.tree()}
        actor.check()  # a healthy co-runner passes
        os.kill(actor.child.pid, signal.SIGSTOP)
        last = [actor.evidence()["tokens_generated"], time.monotonic()]

        def tokens_settled() -> bool:
            tokens = actor.evidence()["tokens_generated"]
            if tokens != last[0]:
                last[:] = [tokens, time.monotonic()]
            return time.monotonic() - last[1] >= 0.5

        wait_until(tokens_settled, 10, "the stopped server's last buffered tokens")
        with pytest.raises(KtInterfError, match="made no progress since the last check"):
            actor.check()  # may pass once: tokens that arrived after the last check count for it
            actor.check()
        os.kill(actor.child.pid, signal.SIGKILL)
        actor.child.popen.wait(timeout=10)
        with pytest.raises(KtInterfError, match=r"exited with code -9 during the measurement window"):
            actor.check()
    assert_nothing_left(actor, pids)


def test_any_command_can_be_the_corunner_with_a_cpu_proof(machine, tmp_path):
    actor = CoRunner(argv=["sh", "-c", "while :; do :; done"], cpus=[CORE], log_dir=tmp_path)
    with actor:
        assert actor.child is not None
        pids = {p.pid for p in actor.child.tree()}
        actor.check()
    evidence = actor.evidence()
    assert evidence["unit"] == "core share"
    assert evidence["achieved"] >= 0.9  # a spinning shell owns its core
    assert evidence["requests_completed"] == 0
    assert_nothing_left(actor, pids)


def test_command_that_exits_at_once_is_named_and_leaves_nothing(tmp_path):
    actor = CoRunner(argv=["sh", "-c", "echo giving up; exit 3"], log_dir=tmp_path)
    with pytest.raises(KtInterfError, match="exited with code 3") as info:
        actor.start()
    assert "giving up" in info.value.detail
    assert_nothing_left(actor, set())


def test_url_that_never_becomes_ready_fails_within_its_deadline(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    actor = CoRunner(argv=["sleep", "60"], url=url, ready_timeout_s=2.0, log_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(KtInterfError, match=re.escape(f"{url} not ready after 2 s")) as info:
        actor.start()
    assert time.monotonic() - started < 2.0 + 5.0
    assert "ready_timeout_s" in info.value.fix
    assert_nothing_left(actor, set())


@pytest.mark.parametrize(
    ("kwargs", "asked", "measured"),
    [
        ({"min_cpu_share": 0.5}, ">= 0.50 core share", r"0\.0\d core share"),
        ({"min_rss_mib": 100_000.0}, ">= 100000 MiB RSS", r"RSS \d+ MiB"),
    ],
)
def test_missing_pressure_is_refused_with_what_was_asked_and_measured(tmp_path, kwargs, asked, measured):
    actor = CoRunner(argv=["sleep", "60"], start_timeout_s=1.5, log_dir=tmp_path, **kwargs)
    started = time.monotonic()
    with pytest.raises(KtInterfError) as info:
        actor.start()
    assert time.monotonic() - started < 1.5 + 5.0
    assert asked in info.value.cause
    assert re.search(f"measured {measured} after", info.value.cause)
    assert_nothing_left(actor, set())


def test_load_is_only_ever_sent_to_loopback(tmp_path):
    actor = CoRunner(argv=["sleep", "60"], url="http://10.1.2.3:8080", request_loop=True, log_dir=tmp_path)
    with pytest.raises(KtInterfError, match="not a loopback address"):
        actor.start()
    assert actor.child is None  # refused before anything was started


def test_stopping_the_load_cuts_requests_to_a_server_that_never_answers():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections are queued, never answered
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        load = RequestLoop(url, api="chat", model=None, max_tokens=8, streams=2, timeout_s=60, name="t")
        load.start()
        time.sleep(0.3)
        stopped = time.monotonic()
        load.request_stop()
        assert load.join(5.0)
    assert time.monotonic() - stopped < 2.0  # far inside the 60 s request timeout
    assert load.snapshot() == LoopCounts()  # cut short: neither completed nor failed
