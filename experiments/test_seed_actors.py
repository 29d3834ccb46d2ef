"""Every row of the seed report's association matrix, as an actor against the configured server.

Each test runs baseline and condition trials interleaved (A B A B ...) and records the effect on
prefill and decode with its 95% interval in the ktinterf report. What the effect *should* be on a
given machine is the next step (expectations and per-hardware baselines); here every row proves
that its pressure was really there in every condition trial, and shows this machine's truth.

The report's rows, and the actor that stands for each:

=========================================  ============================================
report row                                 actor
=========================================  ============================================
co-runner holds VRAM, idle                 GPU memory hog (skips without a GPU)
co-runner computes on the GPU              GPU compute load (skips without a GPU)
CPU stress on spare cores                  stress-ng on every core but the server's
CPU stress taking KT's cores               stress-ng on the server's cores (test_seed_spine)
co-runner holds RAM, idle                  RAM filler, idle; a second llama-server, idle
co-runner infers on CPU/RAM                a second llama-server inferring on spare cores;
                                           RAM filler streaming through its memory; bandwidth
RAM overflows                              server's memory cgroup limited below its working set;
                                           the host pushed into swap (needs swap or opt-in)
=========================================  ============================================
"""

from __future__ import annotations

import math

import psutil
import pytest

pytestmark = pytest.mark.interference


def show(comparison, kind: str) -> None:
    """Print the effect and prove every condition trial carried the actor's evidence."""
    evidence = [t.actor for t in comparison.trials if t.arm == "condition"]
    assert evidence and all(e is not None and e.get("kind") == kind for e in evidence), evidence
    for metric in ("prefill", "decode"):
        interval = comparison.ratio(metric)
        assert math.isfinite(interval.lo) and math.isfinite(interval.hi)
        print(f"{comparison.label}: {metric} {interval.as_percent_change()}")
    achieved = [e["achieved"] for e in evidence]
    print(f"{comparison.label}: asked {evidence[0]['target']:.3g} {evidence[0]['unit']}, achieved {achieved}")


def test_gpu_memory_held_idle(kt_gpu_memory, kt_compare):
    comparison = kt_compare(lambda: kt_gpu_memory(gib=4.0), label="co-runner holds VRAM, idle (4 GiB)")
    show(comparison, "gpu-memory")


def test_gpu_compute(kt_gpu_compute, kt_compare):
    comparison = kt_compare(lambda: kt_gpu_compute(duty_percent=100), label="co-runner computes on the GPU")
    show(comparison, "gpu-compute")


def test_cpu_stress_on_spare_cores(kt_server, kt_cpu_stress, kt_compare):
    comparison = kt_compare(lambda: kt_cpu_stress("spare"), label="CPU stress on spare cores")
    show(comparison, "stress-ng-cpu")


def test_memory_bandwidth_on_spare_cores(kt_server, kt_memory_bandwidth, kt_compare):
    comparison = kt_compare(
        lambda: kt_memory_bandwidth("spare"), label="memory bandwidth (stream) on spare cores"
    )
    show(comparison, "memory-bandwidth")


def test_ram_held_idle(kt_ram_filler, kt_compare):
    leave = psutil.virtual_memory().available / 2**30 / 2
    comparison = kt_compare(
        lambda: kt_ram_filler(leave_available_gib=leave), label="RAM held, idle (half of what is available)"
    )
    show(comparison, "ram-filler-idle")


def test_ram_active_on_spare_cores(kt_server, kt_ram_filler, kt_compare):
    comparison = kt_compare(
        lambda: kt_ram_filler(gib=2.0, active=True, cores="spare"),
        label="RAM streamed by a co-runner (2 GiB)",
    )
    show(comparison, "ram-filler-active")


def test_ram_overflow_contained(kt_server, kt_ram_overflow, kt_compare):
    if kt_server.cgroup is None:
        pytest.skip(f"the server has no memory cgroup: {kt_server.meta.get('memory_cgroup')}")
    comparison = kt_compare(
        lambda: kt_ram_overflow("contained", working_set_fraction=0.5),
        label="RAM overflow, contained (server cgroup at anon + 50% of its file pages)",
    )
    show(comparison, "ram-overflow-contained")


def test_ram_overflow_host(kt_options, kt_ram_overflow, kt_compare):
    if psutil.swap_memory().total == 0 and not kt_options.allow_host_overflow:
        pytest.skip(
            "host RAM overflow needs swap to overflow into (or --kt-allow-host-overflow=yes); "
            "the contained overflow runs without it"
        )
    comparison = kt_compare(
        lambda: kt_ram_overflow("host", overflow_gib=1.0),
        label="RAM overflow, host (1 GiB into swap)",
        trials=3,
    )
    show(comparison, "ram-overflow-host")


def test_corunner_infers_on_spare_cores(kt_server, kt_corunner, kt_compare):
    comparison = kt_compare(
        lambda: kt_corunner(cores="spare", busy=True), label="co-runner llama-server infers on spare cores"
    )
    show(comparison, "co-runner")


def test_corunner_idle_holding_its_model(kt_server, kt_corunner, kt_compare):
    comparison = kt_compare(
        lambda: kt_corunner(cores="spare", busy=False), label="co-runner llama-server idle, holding its model"
    )
    show(comparison, "co-runner")
