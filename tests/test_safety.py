"""Safety and security promises (issue 13, item 4), each held by a check that fails without it.

The plugin runs unattended on expensive shared machines, as root in CI. What must never happen:

* an actor's *default* wakes the OOM killer (it picks the server, pytest or the user's shell);
* a container gets more privilege than the load needs;
* a server listens beyond loopback unless the user said so;
* a string from the user reaches a shell;
* a file is parsed as code (pickle, eval, YAML tags) rather than data;
* another session reads half a file: every file another process reads is written through
  ``datafile.write_atomic`` (temporary file in the same folder, then ``os.replace``).

Static checks read the package's source with ``ast`` (an exact list of the places that write
files, so a new writer must be looked at and a removed protection shows up); the rest call the
code with fakes where a real engine or a real gigabyte would be needed to say the same thing.
"""

from __future__ import annotations

import ast
import contextlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_ktinterf.actors import container as container_actors
from pytest_ktinterf.actors import memory, overflow
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.options import _OPTIONS, Options
from pytest_ktinterf.server import docker as docker_server_module
from pytest_ktinterf.server import presets
from pytest_ktinterf.server.embedded import llama_server_argv
from pytest_ktinterf.server.process import expand_command
from pytest_ktinterf.system import engine_host
from pytest_ktinterf.system.assets import EmbeddedAssets
from pytest_ktinterf.system.processes import spawn, terminate
from tests.source_scan import calls, dotted, package_modules

GIB = 2**30


# -- commands are argument lists; files are data ------------------------------------------------

FORBIDDEN_CALLS = {
    "eval", "exec", "compile", "__import__", "os.system", "os.popen", "subprocess.getoutput",
    "subprocess.getstatusoutput", "asyncio.create_subprocess_shell",
}  # fmt: skip
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "yaml", "jsonpickle"}
SUBPROCESS = {"subprocess.Popen", "subprocess.run", "subprocess.call", "subprocess.check_call",
              "subprocess.check_output"}  # fmt: skip


def _stringish(node: ast.AST) -> bool:
    """A command given as one string: a literal, an f-string, a concatenation or a join."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, (ast.JoinedStr, ast.BinOp)):
        return True
    return isinstance(node, ast.Call) and dotted(node.func) == ".join"


def test_no_shell_no_eval_no_pickle_anywhere_in_the_package():
    problems = []
    for module, tree in package_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            problems += [f"{module}:{node.lineno} imports {n}" for n in names if n in FORBIDDEN_MODULES]
        for where, call in calls(tree):
            name = dotted(call.func)
            if name in FORBIDDEN_CALLS:
                problems.append(f"{module}:{call.lineno} ({where}) calls {name}")
            for keyword in call.keywords:
                if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    problems.append(f"{module}:{call.lineno} ({where}) passes shell=")
            if name in SUBPROCESS and call.args and _stringish(call.args[0]):
                problems.append(f"{module}:{call.lineno} ({where}) gives {name} a string, not a list")
            if name == ".extractall" and not any(
                k.arg == "filter" and isinstance(k.value, ast.Constant) and k.value.value == "data"
                for k in call.keywords
            ):
                problems.append(f"{module}:{call.lineno} extracts an archive without filter='data'")
    assert problems == []


def test_the_scan_would_see_each_forbidden_thing():
    """The scan above is only worth something if it catches what it looks for."""
    bad = ast.parse(
        "import pickle\nimport subprocess, os\nsubprocess.run('ls ' + x, shell=True)\n"
        "os.system(cmd)\neval(text)\nsubprocess.Popen(f'{a} b')\ntar.extractall(d)\n"
    )
    names = {dotted(call.func) for _, call in calls(bad)}
    assert {"subprocess.run", "os.system", "eval", "subprocess.Popen", ".extractall"} <= names
    assert any(k.arg == "shell" for _, call in calls(bad) for k in call.keywords)
    assert all(_stringish(call.args[0]) for _, call in calls(bad) if dotted(call.func) in SUBPROCESS)


def test_server_cmd_metacharacters_stay_words_and_never_reach_a_shell(tmp_path, monkeypatch):
    """``--kt-server-cmd`` is split like a shell would *quote*, then started without one."""
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    marker, subst = tmp_path / "injected", tmp_path / "substituted"
    command = (
        "python3 -c 'import sys; print(sys.argv[1:])' "
        f"'x; touch {marker}' '$(touch {subst})' '`touch {subst}`' '{{port}}'"
    )
    argv = expand_command(command, 8123)
    assert argv[3:] == [f"x; touch {marker}", f"$(touch {subst})", f"`touch {subst}`", "8123"]
    child = spawn(argv, name="safety-argv", log_path=tmp_path / "argv.log")
    try:
        assert child.popen.wait(timeout=20) == 0
    finally:
        terminate(child)
    assert f"'x; touch {marker}'" in child.log_path.read_text()
    assert not marker.exists() and not subst.exists()


# -- servers bind loopback ----------------------------------------------------------------------


def _host_of(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word in ("--host", "--bind")]


def test_embedded_server_and_corunner_bind_loopback_only(tmp_path):
    assets = EmbeddedAssets(tmp_path / "llama-server", tmp_path / "model.gguf")
    argv = llama_server_argv(assets, port=8123, threads=1, parallel=4, context_per_slot=256)
    assert _host_of(argv) == ["127.0.0.1"]
    assets.model.write_bytes(b"0" * 1024)
    from pytest_ktinterf.actors.corunner import CoRunner

    runner = CoRunner.embedded_llama(assets, [0], tmp_path, busy=False)
    assert _host_of(runner.argv) == ["127.0.0.1"]


PRESET_VALUES = {
    "kt-v0.2": {"model_path": "/m/DeepSeek-R1", "gguf_path": "/g", "cpu_infer": "8"},
    "kt-sglang": {"model": "/m/Qwen3-30B-A3B", "weight_path": "/w", "cpuinfer": "16"},
}


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_binds_loopback_and_refuses_another_host(name):
    values = presets.parse_preset_args([f"{k}={v}" for k, v in PRESET_VALUES[name].items()])
    argv = presets.preset_command(name, values, port=8123, max_tokens=64)
    assert _host_of(argv) == [presets.LOOPBACK] == ["127.0.0.1"]
    for extra in ("--host 0.0.0.0", "--host=0.0.0.0"):
        bad = presets.parse_preset_args(
            [*(f"{k}={v}" for k, v in PRESET_VALUES[name].items()), f"extra={extra}"]
        )
        with pytest.raises(KtInterfError, match="--host"):
            presets.preset_command(name, bad, port=8123, max_tokens=64)


def test_the_default_docker_server_runs_llama_server_on_loopback(tmp_path, monkeypatch):
    seen: dict[str, Any] = {}

    @contextlib.contextmanager
    def run_container(spec: Any, **_: Any) -> Any:
        seen["spec"] = spec
        yield SimpleNamespace(meta={})

    monkeypatch.setattr(docker_server_module, "run_container", run_container)
    monkeypatch.setattr(docker_server_module, "engine_is_local", lambda: True)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"0" * 1024)
    with docker_server_module.docker_server(
        image="img", command=None, assets=EmbeddedAssets(tmp_path / "llama-server", model), cpus=[0],
        threads=1, parallel=4, context_per_slot=256, log_dir=tmp_path, ready_timeout=1, port=8123,
    ):  # fmt: skip
        pass
    assert _host_of(seen["spec"].command) == ["127.0.0.1"]
    assert all(binding["mode"] == "ro" for binding in seen["spec"].volumes.values())


# -- containers are unprivileged --------------------------------------------------------------------

PRIVILEGES = ("privileged", "cap_add", "security_opt", "devices", "pid_mode", "ipc_mode", "userns_mode",
              "cgroupns", "sysctls", "device_cgroup_rules")  # fmt: skip


class _Stop(Exception):
    """Raised by the fake engine once it has seen what the container would be created with."""


class _FakeEngine:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.containers = SimpleNamespace(create=self._create, run=self._run)
        self.images = SimpleNamespace(get=lambda image: SimpleNamespace(id=image))

    def _create(self, image: str, **kwargs: Any) -> Any:
        self.created.append(kwargs)
        raise _Stop

    def _run(self, image: str, command: Any = None, **kwargs: Any) -> bytes:
        self.created.append(kwargs)
        return b"MemTotal: 8388608 kB\nMemAvailable: 4194304 kB\n"

    def info(self) -> dict[str, Any]:
        return {"MemTotal": 8 * GIB, "NCPU": 2}


def _assert_unprivileged(kwargs: dict[str, Any], network: str) -> None:
    assert [key for key in PRIVILEGES if kwargs.get(key)] == []
    assert kwargs["network_mode"] == network
    assert "ports" not in kwargs  # nothing published: host networking binds what the server binds


def test_actor_and_probe_containers_are_unprivileged_and_offline(tmp_path, monkeypatch):
    engine = _FakeEngine()
    with pytest.raises(_Stop):
        engine_host.ActorContainer.start(
            engine, image="img", argv=["x"], name="a", cpus=[0], log_path=tmp_path / "l"
        )
    monkeypatch.setattr(engine_host, "require_tool", lambda *_: None)
    engine_host.engine_meminfo(engine, "img")
    assert len(engine.created) == 2
    for kwargs in engine.created:
        _assert_unprivileged(kwargs, network="none")


def test_server_container_is_unprivileged(tmp_path, monkeypatch):
    engine = _FakeEngine()
    monkeypatch.setattr(docker_server_module.docker_engine, "connect", lambda: engine)
    spec = docker_server_module.ContainerSpec(image="img", command=["srv", "--port", "1"])
    with (
        pytest.raises(_Stop),
        docker_server_module.run_container(
            spec, port=1, log_dir=tmp_path, ready_timeout=1, description="server"
        ),
    ):
        pass
    _assert_unprivileged(engine.created[0], network="host")
    assert engine.created[0]["device_requests"] in (None, [])  # GPUs only when --kt-docker-gpus asks


# -- no default wakes the OOM killer ----------------------------------------------------------------


def _host(monkeypatch: pytest.MonkeyPatch, *, total: int, available: int, swap: int) -> None:
    """What the RAM actors read of the host, faked: sizes that would hurt if they were real."""
    fake = SimpleNamespace(
        virtual_memory=lambda: SimpleNamespace(total=total, available=available),
        swap_memory=lambda: SimpleNamespace(total=swap, free=swap, used=0),
    )
    monkeypatch.setattr(memory, "psutil", fake)
    monkeypatch.setattr(overflow, "psutil", fake)
    monkeypatch.setattr(overflow, "vmstat", lambda: {})


def test_the_options_opt_in_to_nothing_dangerous():
    opts = {opt.name: opt for opt in _OPTIONS}
    assert (opts["allow-host-overflow"].default, opts["allow-host-overflow"].env) == ("no", None)
    assert (opts["memory-reserve"].default, opts["memory-reserve"].env) == (None, None)
    assert (Options().allow_host_overflow, Options().memory_reserve_gib) == (False, None)


@pytest.mark.parametrize("total_gib", [1, 2, 8, 64, 1024])
def test_the_default_reserve_is_at_least_a_gib_and_5_percent(total_gib):
    reserve = memory.default_reserve_bytes(total_gib * GIB)
    assert reserve >= GIB and reserve >= int(0.05 * total_gib * GIB)


def test_a_filler_has_no_default_size(monkeypatch):
    _host(monkeypatch, total=8 * GIB, available=4 * GIB, swap=0)
    with pytest.raises(KtInterfError, match="exactly one of gib=N"):
        memory.RamFiller().plan()


def test_a_filler_with_the_default_reserve_never_leaves_less_than_a_gib(monkeypatch):
    _host(monkeypatch, total=8 * GIB, available=4 * GIB, swap=0)
    assert memory.RamFiller(gib=3.0).plan() == 3 * GIB
    for asked in ({"gib": 3.5}, {"leave_available_gib": 0.5}):
        with pytest.raises(KtInterfError, match="--kt-memory-reserve"):
            memory.RamFiller(**asked).plan()  # type: ignore[arg-type]


def test_a_container_filler_keeps_the_engine_hosts_reserve(monkeypatch):
    info = {"MemTotal": 8 * GIB, "MemAvailable": 4 * GIB}
    monkeypatch.setattr(container_actors, "engine_meminfo", lambda *_: info)
    assert container_actors.ContainerRamFiller(client=object(), gib=3.0).plan() == 3 * GIB
    with pytest.raises(KtInterfError, match="--kt-memory-reserve"):
        container_actors.ContainerRamFiller(client=object(), gib=3.5).plan()


def test_host_overflow_needs_swap_or_an_explicit_opt_in(monkeypatch):
    _host(monkeypatch, total=8 * GIB, available=4 * GIB, swap=0)
    with pytest.raises(KtInterfError, match="no swap"):
        overflow.HostOverflow().plan()
    assert overflow.HostOverflow(allow_without_swap=True).plan() == 4 * GIB - GIB // 4
    _host(monkeypatch, total=8 * GIB, available=4 * GIB, swap=GIB + GIB // 2)
    with pytest.raises(KtInterfError, match="reserve"):  # 1 GiB into 1.5 GiB of swap leaves < 1 GiB
        overflow.HostOverflow().plan()


def test_the_filler_child_is_the_oom_killers_first_choice(tmp_path, monkeypatch):
    """If the kernel must kill, it kills the filler, never the server or pytest."""
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path / "state"))
    status = tmp_path / "filler.status"
    argv = [
        sys.executable, "-m", "pytest_ktinterf.actors.filler_child",
        "--bytes", str(2**20), "--status", str(status),
    ]  # fmt: skip
    child = spawn(argv, name="safety-filler", log_path=tmp_path / "filler.log")
    try:
        deadline = time.monotonic() + 30
        while not (status.exists() and status.read_text().startswith("ready")):
            assert child.alive() and time.monotonic() < deadline, child.log_tail()
            time.sleep(0.05)
        assert Path(f"/proc/{child.pid}/oom_score_adj").read_text().strip() == "1000"
    finally:
        terminate(child)
