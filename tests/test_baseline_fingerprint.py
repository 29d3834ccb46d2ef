"""Fingerprints: which sessions are comparable, and file names that stay put.

A baseline file is found by its slug, so the slug must be stable (the same set-up always maps
to the same file, across runs and versions) and safe as a file name on any system; and when two
set-ups differ, the user must be told which field, not just that the names differ.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.baseline import fingerprint
from pytest_ktinterf.baseline.fingerprint import Fingerprint, cpu_list, make

FACTS: dict[str, Any] = {
    "cpu_model": "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz",
    "sockets": 1,
    "physical_cores": 1,
    "logical_cpus": 2,
    "ram_gib": 23,
    "numa_nodes": 1,
    "gpus": [],
}
WORKLOAD = {"api": "completions", "prompt_tokens": 128, "max_tokens": 64, "streams": 1}
SAFE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def made(**changes: Any) -> Fingerprint:
    facts = {**FACTS, **changes.pop("facts", {})}
    options: dict[str, Any] = {
        "backend": "embedded",
        "server_cpus": [1],
        "actor_cpus": [0],
        "workload": WORKLOAD,
        **changes,
    }
    return make(hardware_facts=facts, **options)


def test_keyed_holds_hardware_cores_backend_and_workload() -> None:
    fp = made(server_cpus=[3, 0, 1], actor_cpus=[5, 6, 7])
    assert fp.keyed["server_cpus"] == "0-1,3"
    assert fp.keyed["actor_cpus"] == "5-7"
    assert fp.keyed["backend"] == "embedded"
    assert fp.keyed["workload"] == WORKLOAD
    assert fp.keyed["cpu_model"] == FACTS["cpu_model"]
    assert "hostname" not in fp.keyed and "server" not in fp.keyed


@pytest.mark.parametrize(
    ("cores", "text"),
    [([], ""), ([4], "4"), ([0, 1, 2, 3], "0-3"), ([0, 1, 3], "0-1,3"), ([8, 0, 2, 1, 9], "0-2,8-9")],
)
def test_cpu_list_compacts_runs(cores: list[int], text: str) -> None:
    assert cpu_list(cores) == text


def test_slug_is_the_documented_readable_name_and_a_hash_of_the_canonical_json() -> None:
    fp = made()
    canonical = json.dumps(fp.keyed, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    # Pinned: changing how slugs are made orphans every committed baseline file.
    assert fp.slug == f"intel-xeon-platinum-8370c-2cpu-23gib-nogpu-embedded-srv1-p128-d64-s1-{digest}"


def test_slug_is_stable_across_key_order_and_a_json_round_trip() -> None:
    fp = made()
    reordered = Fingerprint(dict(reversed(list(fp.keyed.items()))))
    read_back = Fingerprint(json.loads(json.dumps(fp.keyed, indent=1, sort_keys=True)))
    assert reordered.slug == read_back.slug == fp.slug
    assert reordered == read_back == fp


def test_tuples_and_lists_key_alike() -> None:
    assert Fingerprint({"gpus": ()}) == Fingerprint({"gpus": []})


def test_facts_left_out_of_the_readable_part_still_change_the_slug() -> None:
    one, other = made(actor_cpus=[0]), made(actor_cpus=[0, 2])
    assert one.slug.rsplit("-", 1)[0] == other.slug.rsplit("-", 1)[0]
    assert one.slug != other.slug


def test_slug_names_the_gpu() -> None:
    fp = made(facts={"gpus": [{"model": "NVIDIA H100 80GB HBM3", "vram_mib": 81559, "driver": "550.54"}]})
    assert "-1x-h100-80gb-hbm3-" in fp.slug


@settings(max_examples=200, deadline=None)
@given(
    cpu=st.text(max_size=300),
    backend=st.text(max_size=60),
    prompt=st.one_of(st.integers(), st.text(max_size=40)),
    streams=st.one_of(st.integers(0, 64), st.lists(st.integers(1, 64), max_size=4)),
    gpu=st.lists(st.text(max_size=80), max_size=3),
)
def test_slug_is_always_a_safe_bounded_file_name(
    cpu: str, backend: str, prompt: Any, streams: Any, gpu: list[str]
) -> None:
    fp = made(
        facts={"cpu_model": cpu, "gpus": [{"model": g} for g in gpu]},
        backend=backend,
        workload={**WORKLOAD, "prompt_tokens": prompt, "streams": streams},
    )
    assert SAFE.match(fp.slug), fp.slug
    assert len(fp.slug) <= fingerprint.SLUG_PREFIX_MAX + 9
    assert fp.slug.endswith(fp.digest)


def test_an_empty_fingerprint_still_has_a_name() -> None:
    assert SAFE.match(Fingerprint({}).slug)


def test_equal_fingerprints_have_no_differences() -> None:
    assert made().differences(made()) == []


def test_differences_name_each_field_with_both_values() -> None:
    base = made()
    here = made(
        facts={"cpu_model": "AMD EPYC 7763", "ram_gib": 24},
        workload={**WORKLOAD, "prompt_tokens": 256},
    )
    assert base.differences(here) == [
        f"cpu_model: {FACTS['cpu_model']!r} in the baseline, 'AMD EPYC 7763' here",
        "ram_gib: 23 in the baseline, 24 here",
        "workload.prompt_tokens: 128 in the baseline, 256 here",
    ]


def test_differences_reach_into_gpus_and_say_what_is_absent() -> None:
    gpu = {"model": "NVIDIA H100", "vram_mib": 81559, "driver": "550.54"}
    base = made(facts={"gpus": [gpu]})
    assert base.differences(made(facts={"gpus": [{**gpu, "driver": "560.1"}]})) == [
        "gpus.0.driver: '550.54' in the baseline, '560.1' here"
    ]
    stored = base.keyed["gpus"]  # normalised: keys sorted, as read back from a file
    assert base.differences(made(facts={"gpus": []})) == [f"gpus: {stored!r} in the baseline, [] here"]
    missing = Fingerprint({**base.keyed, "numa_nodes": None})
    del missing.keyed["numa_nodes"]
    assert base.differences(missing) == ["numa_nodes: 1 in the baseline, absent here"]


def test_hardware_reads_every_keyed_fact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: no GPU, no error
    facts = fingerprint.hardware()
    assert set(facts) == set(FACTS)
    assert isinstance(facts["cpu_model"], str) and facts["cpu_model"]
    assert all(
        isinstance(facts[k], int) and facts[k] >= 1 for k in ("sockets", "physical_cores", "numa_nodes")
    )
    assert facts["logical_cpus"] >= facts["physical_cores"]
    assert isinstance(facts["ram_gib"], int)
    assert facts["gpus"] == []


def fake_nvml(fail_init: bool = False) -> types.ModuleType:
    module = types.ModuleType("pynvml")

    def init() -> None:
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    module.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3" if h == 0 else "NVIDIA L4"  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=(80 + h) * 2**30)  # type: ignore[attr-defined]
    return module


def test_gpus_come_from_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    assert fingerprint.hardware()["gpus"] == [
        {"model": "NVIDIA H100 80GB HBM3", "vram_mib": 80 * 1024, "driver": "550.54.15"},
        {"model": "NVIDIA L4", "vram_mib": 81 * 1024, "driver": "550.54.15"},
    ]


def test_an_nvml_that_cannot_start_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(fail_init=True))
    assert fingerprint.hardware()["gpus"] == []


def test_unstable_readings_are_recorded_not_keyed() -> None:
    readings = fingerprint.unstable()
    assert set(readings) == {"hostname", "kernel", "load_average", "mem_available_gib", "cpu_mhz", "time"}
    assert readings["mem_available_gib"] > 0
    assert not set(readings) & set(made().keyed)
