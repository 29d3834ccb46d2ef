"""Child pytest sessions against a real llama-server, for the baseline gate's test and benchmark.

The server is started by the plugin's process backend from a command built here, pinned to the
last core. ``spread`` is a server made more sensitive to its neighbour on purpose: its launcher
(a shell) stays on the pinned core, where the plugin reads the server's cores, while the engine
it starts runs 2 threads on every core -- what an upgrade that ignores its pinning does -- so it
shares the "spare" core with the neighbour's stressor.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from pytest_ktinterf.server.embedded import llama_server_argv
from pytest_ktinterf.system.assets import cache_dir, llama_server_path, model_path
from tests.child_sessions import child_process

CACHE = cache_dir()  # resolved now: pytester points HOME elsewhere
SERVER_CORE = max(os.sched_getaffinity(0))
# 16 generated tokens, not 64: the spread server below decodes at about 0.5 tok/s while the
# neighbour's stressor shares a core with one of its 2 threads (they wait for each other at every
# step), so one 64-token trial took 2 minutes; 16 keep a whole session within its timeout.
MAX_TOKENS = 16

EXPERIMENT = """
[experiment]
title = "gate"

[design]            # 2 looks, each at 97.5% (they share the 95%), need 7 pairs at the first
min_pairs = 7
max_pairs = 10
step = 3

[conditions.cpu_spare]
label = "CPU stress on spare cores"
actor = "cpu_stress"
params = { cores = "spare" }
report = { decode = "unaffected" }
"""


def usable() -> bool:
    """llama-server built, 2 cores at least, root (cgroups)."""
    return llama_server_path(CACHE).is_file() and len(os.sched_getaffinity(0)) >= 2 and os.geteuid() == 0


def server_cmd(*, spread: bool = False) -> str:
    class _Assets:  # llama_server_argv reads only these two paths
        llama_server = llama_server_path(CACHE)
        model = model_path(CACHE)

    argv = llama_server_argv(
        _Assets,  # type: ignore[arg-type]
        port=0,
        threads=2 if spread else 1,
        parallel=4,
        context_per_slot=512,
    )
    argv[argv.index("--port") + 1] = "{port}"
    if spread:  # the launcher stays pinned (the plugin reads its cores), the engine spreads out
        cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
        argv = ["sh", "-c", shlex.join(["taskset", "-c", cores, *argv]) + "; exit $?"]
    return shlex.join(argv)


def new_project(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "gate.toml").write_text(EXPERIMENT)
    return path


def session(
    project: Path,
    log: Path,
    *args: str,
    spread: bool = False,
    threshold: str = "25%",
    embedded: bool = False,
) -> tuple[int, str]:
    """Run one child session in ``project``; (exit code, output). Nothing outlives it.

    ``embedded``: the plugin's embedded backend (the same llama-server and model, started by the
    plugin itself) instead of the process backend's command.
    """
    env = {**os.environ, "KTINTERF_CACHE": str(CACHE), "KTINTERF_STATE_DIR": str(project / "state")}
    server = [] if embedded else [f"--kt-server-cmd={server_cmd(spread=spread)}"]
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-v", "-rs",
        *server, f"--kt-server-cpus={SERVER_CORE}",
        f"--kt-baseline-fail={threshold}", "--kt-report-json=report.json", f"--kt-max-tokens={MAX_TOKENS}",
        "gate.toml", *args,
    ]  # fmt: skip
    with child_process(argv, cwd=project, env=env, log_path=log) as child:
        code = child.popen.wait(timeout=900)
        return code, child.output()
