"""The GPU actors' pure decisions, which run on every machine: free-VRAM refusal, duty validation,
averaging, device matching, and the child's duty-cycle loop on an injected clock.

The real thing, on a GPU where there is one, is in ``test_actor_gpu.py``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_ktinterf.actors.gpu_child import batch_for, busy_seconds, duty_cycle
from pytest_ktinterf.actors.gpu_device import (
    normalize_pci,
    normalize_uuid,
    nvml_selector,
    same_gpu,
    torch_build_has_cuda,
)
from pytest_ktinterf.actors.gpu_rules import (
    GIB,
    MIB,
    check_vram_request,
    mean_utilisation,
    memory_reached,
    process_memory,
    utilisation_reached,
    validate_duty,
    validate_gib,
    window_values,
)
from pytest_ktinterf.errors import KtInterfError

# --- pure decisions --------------------------------------------------------------------------------


def test_vram_request_that_fits_is_returned_in_bytes():
    assert check_vram_request(2, 10 * GIB, device=0) == 2 * GIB
    assert check_vram_request(0.5, GIB, device=0) == GIB // 2


def test_vram_request_is_refused_above_free_minus_margin():
    free = 4 * GIB
    limit_gib = (free - 256 * MIB) / GIB
    assert check_vram_request(limit_gib, free, device=1) == free - 256 * MIB  # exactly at the limit
    with pytest.raises(KtInterfError) as caught:
        check_vram_request(limit_gib + 1 / GIB, free, device=1)  # one byte over
    message = caught.value.line()
    assert "GPU 1" in message
    assert "4096 MiB free" in message  # what NVML measured
    assert "3840 MiB can be held" in message
    assert "fix: ask for at most 3.75 GiB" in message


def test_vram_margin_is_configurable_and_a_full_device_refuses_everything():
    assert check_vram_request(1, 2 * GIB, device=0, margin_mib=1024) == GIB
    with pytest.raises(KtInterfError, match="1024 MiB must stay free"):
        check_vram_request(1.5, 2 * GIB, device=0, margin_mib=1024)
    with pytest.raises(KtInterfError, match="at most 0 MiB"):
        check_vram_request(0.001, 100 * MIB, device=0)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "2"])
def test_nonsense_memory_requests_are_refused(bad: Any):
    with pytest.raises(KtInterfError, match="positive number of GiB"):
        validate_gib(bad)
    with pytest.raises(KtInterfError, match="positive number of GiB"):
        check_vram_request(bad, 100 * GIB, device=0)


@pytest.mark.parametrize("duty", [1, 37, 100])
def test_duty_in_range_is_accepted(duty: int):
    assert validate_duty(duty) == duty


@pytest.mark.parametrize("duty", [0, 101, -5, 50.5, True, "50", None])
def test_duty_out_of_range_or_not_an_int_is_refused(duty: Any):
    with pytest.raises(KtInterfError, match=r"1\.\.100") as caught:
        validate_duty(duty)
    assert repr(duty) in caught.value.cause


def test_utilisation_averaging_and_threshold():
    assert mean_utilisation([]) == 0.0
    assert mean_utilisation([100, 80, 60]) == 80.0
    assert utilisation_reached(80.0, 100)
    assert not utilisation_reached(79.9, 100)
    assert utilisation_reached(40.0, 50)
    assert not utilisation_reached(39.0, 50)


def test_memory_threshold_is_ninety_percent():
    assert memory_reached(0.9 * GIB, GIB)
    assert not memory_reached(0.9 * GIB - 1, GIB)


def test_window_takes_samples_since_the_mark_but_at_least_the_minimum_span():
    samples = [(float(t), float(t * 10)) for t in range(10)]  # t = 0..9
    assert window_values(samples, since=7.0, min_span_s=0.0, now=9.5) == [70.0, 80.0, 90.0]
    assert window_values(samples, since=8.5, min_span_s=3.0, now=9.5) == [70.0, 80.0, 90.0]
    assert window_values(samples, since=2.0, min_span_s=1.0, now=9.5)[0] == 20.0


def test_process_memory_finds_the_childs_pids_only():
    procs = [
        SimpleNamespace(pid=10, usedGpuMemory=5 * MIB),
        SimpleNamespace(pid=11, usedGpuMemory=7 * MIB),
        SimpleNamespace(pid=12, usedGpuMemory=None),  # NVML could not say
        SimpleNamespace(pid=99, usedGpuMemory=1000 * MIB),
    ]
    assert process_memory(procs, {10, 11}) == 12 * MIB
    assert process_memory(procs, {12}) is None
    assert process_memory(procs, {42}) is None  # container: pids do not match
    assert process_memory([], {10}) is None


def test_nvml_device_follows_cuda_visible_devices():
    assert nvml_selector(2, None) == 2
    assert nvml_selector(1, "3,1") == 1
    assert nvml_selector(0, "3, 1") == 3
    uuid = "GPU-58a6ab6f-3ba5-c5fb-b2d4-f67aa8b0a1b2"
    assert nvml_selector(0, uuid) == uuid
    with pytest.raises(KtInterfError, match="not visible"):
        nvml_selector(2, "0,1")
    with pytest.raises(KtInterfError, match="not visible"):
        nvml_selector(0, "")
    with pytest.raises(KtInterfError, match="negative"):
        nvml_selector(-1, None)


def test_child_and_nvml_device_identities_are_compared_across_formats():
    nvml = {"uuid": "GPU-58a6ab6f-3ba5-c5fb-b2d4-f67aa8b0a1b2", "pci": "00000000:65:00.0"}
    assert normalize_uuid(nvml["uuid"]) == "58a6ab6f3ba5c5fbb2d4f67aa8b0a1b2"
    assert normalize_pci("0000:65:00.0") == normalize_pci(nvml["pci"]) == "0000:65:00.0"
    assert normalize_uuid("not-a-uuid") is None
    assert normalize_pci("65:00") is None
    assert same_gpu({"uuid": "58a6ab6f-3ba5-c5fb-b2d4-f67aa8b0a1b2"}, nvml) is True
    assert same_gpu({"uuid": "00000000-3ba5-c5fb-b2d4-f67aa8b0a1b2"}, nvml) is False
    assert same_gpu({"pci": "0000:65:00.0"}, nvml) is True
    assert same_gpu({"pci": "0000:b3:00.0"}, nvml) is False
    assert same_gpu({"backend": "torch"}, nvml) is None
    assert same_gpu({"uuid": "58a6ab6f-3ba5-c5fb-b2d4-f67aa8b0a1b2"}, {}) is None


def test_torch_cuda_build_is_read_from_version_py():
    assert torch_build_has_cuda("__version__ = '2.3.0+cu121'\ncuda: Optional[str] = '12.1'\n") is True
    assert torch_build_has_cuda("__version__ = '2.3.0+cpu'\ncuda: Optional[str] = None\n") is False
    assert torch_build_has_cuda("cuda = None\nhip = '6.0'\n") is False
    assert torch_build_has_cuda("__version__ = '1.0'\n") is None


# --- the child's duty cycle, on a fake clock --------------------------------------------------------


class FakeClock:
    """Time that moves only when the GPU 'works' or the child sleeps."""

    def __init__(self, step_s: float) -> None:
        self.now = 0.0
        self.busy = 0.0
        self.step_s = step_s

    def clock(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += self.step_s
        self.busy += self.step_s

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("duty", [1, 30, 50, 100])
def test_duty_cycle_computes_for_the_asked_share_of_each_period(duty: int):
    fake = FakeClock(step_s=0.0005)
    duty_cycle(fake.work, duty_percent=duty, period_s=0.1, deadline=10.0, clock=fake.clock, sleep=fake.sleep)
    assert fake.now >= 10.0
    assert fake.busy / fake.now == pytest.approx(duty / 100, abs=0.01)


def test_busy_time_and_batches():
    assert busy_seconds(100, 0.1) == pytest.approx(0.1)
    assert busy_seconds(25, 0.1) == pytest.approx(0.025)
    with pytest.raises(ValueError):
        busy_seconds(0, 0.1)
    assert batch_for(0.0005, 0.1) == 10  # 5 ms of work between synchronisations
    assert batch_for(0.0005, 0.001) == 1  # a 1 ms busy slot: never overshoot by more than a product
    assert batch_for(1.0, 0.1) == 1
    assert batch_for(0.0, 0.1) == 1000
