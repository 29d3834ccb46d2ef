"""``--kt-server-cpu-quota`` against the real embedded llama-server: the cap acts, and is measured.

The cap is the known-size regression a regression gate is calibrated against, so it must be
proven from the kernel's own counters while the server works, not inferred from slower numbers:
the group is throttled, and its CPU use over the measuring window stays at or below the quota.

How far above ``fraction x cores`` a correct cap may still read (:func:`allowance`) follows from how
CFS bandwidth control grants time, not from any run:

* the quota ``Q = fraction x cores x period`` is granted per period; a window of ``W`` seconds
  overlaps at most ``W / period + 2`` periods (it need not start or end on a period's boundary),
  so the group may use up to ``2 Q`` more than ``fraction x cores x W``;
* each core draws its time from the group's pool in slices (``sched_cfs_bandwidth_slice_us``,
  5 ms by default) and an overrun is seen at the next scheduler tick (at most 10 ms, a tick at the
  coarsest ``HZ=100``); the overrun is repaid from the next period, so per core at most one slice
  held from before the window and one tick not yet repaid at its end count in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import open_server
from pytest_ktinterf.system.cgroups import locate
from pytest_ktinterf.system.cpu_quota import PERIOD_US, cpu_evidence, quota_us, usage_rate
from pytest_ktinterf.system.lock import measuring
from pytest_ktinterf.system.reap import reap_leftovers
from pytest_ktinterf.system.registry import registry_dir

CORE = max(os.sched_getaffinity(0))
FRACTION = 0.5
ROUNDS = 2
TICK_S = 0.010  # one scheduler tick at HZ=100, the coarsest Linux is built with

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="CPU cgroups need root")


def slice_s() -> float:
    """The kernel's bandwidth slice: how much of the group's time a core takes from the pool at once."""
    try:
        return int(Path("/proc/sys/kernel/sched_cfs_bandwidth_slice_us").read_text()) / 1e6
    except (OSError, ValueError):
        return 0.005  # the kernel's default


def allowance(fraction: float, cores: int, window_s: float) -> float:
    """Cores above ``fraction x cores`` a correctly capped group may read over ``window_s`` (see top)."""
    quota_s = fraction * cores * PERIOD_US / 1e6
    return (2 * quota_s + cores * (slice_s() + TICK_S)) / window_s


@needs_root
@pytest.mark.interference
def test_capped_server_is_throttled_and_stays_under_its_quota(tmp_path: Path) -> None:
    said: list[str] = []
    options = Options(server_cpus=[CORE], server_cpu_quota=FRACTION, parallel=2)
    with open_server(options, tmp_path, say=said.append) as handle:
        paths = handle.meta["cpu_cgroup"]
        assert isinstance(paths, list) and handle.meta["cpu_quota"] == FRACTION
        server = sorted(p.pid for p in handle.processes())
        for path in paths:
            assert sorted(int(x) for x in Path(path, "cgroup.procs").read_text().split()) == server
            assert (registry_dir() / f"{Path(path).name}.json").exists(), "not recorded for the reaper"
        assert any(f"CPU capped at {FRACTION:g} of 1 core(s)" in line for line in said), said
        probe = Probe(handle.url, prompt_tokens=64, max_tokens=32)
        with measuring():
            probe.calibrate()
            before = cpu_evidence(paths)
            for _ in range(ROUNDS):
                assert probe.measure(2).metric("decode") > 0
            after = cpu_evidence(paths)
    window = after["at_s"] - before["at_s"]
    rate = usage_rate(before, after)
    most = FRACTION * 1 + allowance(FRACTION, 1, window)
    throttled = after["nr_throttled"] - before["nr_throttled"]
    periods = after["nr_periods"] - before["nr_periods"]
    print(
        f"window {window:.2f} s: usage {rate:.3f} cores (cap {FRACTION}, at most {most:.3f}), "
        f"throttled in {throttled:.0f} of {periods:.0f} periods "
        f"({after['throttled_s'] - before['throttled_s']:.2f} s)"
    )
    assert before["quota_cores"] == FRACTION
    assert throttled > 0
    assert rate <= most
    # Removed with the server, records too.
    assert not any(Path(path).exists() for path in paths)
    assert not any((registry_dir() / f"{Path(path).name}.json").exists() for path in paths)


@needs_root
def test_without_the_option_no_cpu_cgroup_is_made(tmp_path: Path) -> None:
    with open_server(Options(server_cpus=[CORE]), tmp_path) as handle:
        assert "cpu_quota" not in handle.meta and "cpu_cgroup" not in handle.meta
        pid = handle.processes()[0].pid
        version, directory = locate(pid, "cpu")
        if version == 1:  # still in this session's own CPU cgroup
            assert directory == locate(os.getpid(), "cpu")[1]
        else:  # v2: in its memory cgroup, which has no CPU limit
            limit = directory / "cpu.max"
            assert not limit.exists() or limit.read_text().startswith("max")
        assert list(registry_dir().glob(f"ktinterf-*-cpu*-{os.getpid()}-*.json")) == []


DEAD_SESSION = """
import os
from pytest_ktinterf.system.cpu_quota import CpuCgroup
print(*CpuCgroup.create("dead", 0.5, 1).paths, flush=True)
os._exit(0)  # killed, in effect: nothing removed
"""


@needs_root
def test_a_dead_sessions_cpu_cgroup_is_reaped_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    made = subprocess.run(
        [sys.executable, "-c", DEAD_SESSION], capture_output=True, text=True, check=True, env=dict(os.environ)
    )
    paths = [Path(p) for p in made.stdout.split()]
    assert paths and all(path.is_dir() for path in paths), made.stderr
    assert len(list((tmp_path / "live").glob("*.json"))) == len(paths)
    reaped = reap_leftovers()
    assert not any(path.exists() for path in paths)
    assert all(any(f"cgroup {path.name}" in line for line in reaped) for path in paths), reaped
    assert list((tmp_path / "live").glob("*.json")) == []


def test_v2_evidence_is_read_from_cpu_stat_and_cpu_max(tmp_path: Path) -> None:
    """The v2 files (no v2 CPU controller here to make them live), read as the kernel writes them."""
    (tmp_path / "cpu.max").write_text(f"40000 {PERIOD_US}\n")
    stat = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 50\nnr_throttled 20\n"
    (tmp_path / "cpu.stat").write_text(stat + "throttled_usec 800000\nnr_bursts 0\nburst_usec 0\n")
    evidence = cpu_evidence([tmp_path])
    assert evidence["usage_s"] == 2.5 and evidence["throttled_s"] == 0.8
    assert (evidence["nr_periods"], evidence["nr_throttled"], evidence["quota_cores"]) == (50, 20, 0.4)


def test_a_quota_below_the_kernels_minimum_is_refused_naming_the_least() -> None:
    assert quota_us(0.8, 2) == 160_000
    with pytest.raises(KtInterfError, match=r"below the kernel's minimum .* at least 0\.01"):
        quota_us(0.005, 1)
