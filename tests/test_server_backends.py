"""Server backends and the resource monitor against the real llama-server."""

from __future__ import annotations

import psutil
import pytest

from pytest_ktinterf.measure.monitor import Gpu, ResourceMonitor
from pytest_ktinterf.server.embedded import llama_server_argv
from pytest_ktinterf.server.process import process_server
from pytest_ktinterf.system import assets


def test_embedded_server_is_pinned_as_asked(kt_server, kt_options):
    if kt_server.backend != "embedded":
        pytest.skip("checks the embedded backend")
    assert kt_server.cpus() == kt_options.server_cpus
    assert kt_server.meta["parallel"] == kt_options.parallel


def test_monitor_sees_server_memory_and_reports_gpu_state(kt_server):
    if not kt_server.processes():
        pytest.skip("an external server's processes cannot be watched")
    with ResourceMonitor(processes=kt_server.processes, interval_s=0.05) as monitor:
        psutil.cpu_percent(interval=0.3)
    summary = monitor.summary()
    assert summary["server_rss_peak_mib"] > 50  # the 98 MB model is mapped and touched
    assert summary["ram_available_min_mib"] > 0
    assert len(summary["cpu_percent_per_core"]) == psutil.cpu_count()
    gpu = Gpu()
    if gpu.present:
        assert summary["vram_used_peak_mib"] is not None
    else:
        assert summary["gpu"].startswith("absent: ") and summary["vram_used_peak_mib"] is None


def test_process_backend_runs_any_command_and_stops_it(tmp_path):
    found = assets.resolve(None, None)
    argv = llama_server_argv(found, port=0, threads=1, parallel=1, context_per_slot=256)
    command = " ".join(argv).replace("--port 0", "--port {port}")
    with process_server(command, port=None, cpus=[0], log_dir=tmp_path, ready_timeout=60) as handle:
        assert handle.backend == "process"
        assert handle.cpus() == [0]
        pids = [p.pid for p in handle.processes()]
        assert pids
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids
    )
