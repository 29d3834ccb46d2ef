"""The KT server presets give the command lines KT's own docs give.

Each doc command below is copied verbatim from the GitHub repository kvcache-ai/ktransformers
(file and section named in the comment above it). The tests change only what the plugin sets on
purpose -- host 127.0.0.1, the plugin's port and, for kt-v0.2, ``--max_new_tokens`` =
``--kt-max-tokens`` -- and then require ``presets.preset_command`` to give exactly that argv.
No network, GPU or Docker is used.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import _preset_command, presets
from tests.preset_values import PORT, SGLANG_REQUIRED, V02_REQUIRED

REPO_ROOT = Path(__file__).resolve().parents[1]

# kvcache-ai/ktransformers, doc/en/DeepseekR1_V3_tutorial.md, "How to Run" / "v0.2.4"
# (one line in the doc; split here only to fit the line length)
TUTORIAL_V024 = (
    "python ktransformers/server/main.py --model_path /mnt/data/models/DeepSeek-V3 "
    "--gguf_path /mnt/data/models/DeepSeek-V3-GGUF/DeepSeek-V3-Q4_K_M/ --cpu_infer 62 "
    "--optimize_config_path ktransformers/optimize/optimize_rules/DeepSeek-V3-Chat-serve.yaml "
    "--port 10002 --chunk_size 256 --max_new_tokens 1024 --max_batch_size 4 --port 10002 "
    "--cache_lens 32768 --backend_type balance_serve"
)

# kvcache-ai/ktransformers, doc/en/balance-serve.md (commit e004fa5), "Running DeepSeek-R1-Q4KM
# Models" / "1. Run for 24GB VRAM GPUs"
BALANCE_SERVE = """\
python ktransformers/server/main.py \\
  --port 10002 \\
  --model_path <path_to_safetensor_config> \\
  --gguf_path <path_to_gguf_files> \\
  --optimize_config_path ktransformers/optimize/optimize_rules/DeepSeek-V3-Chat-serve.yaml \\
  --max_new_tokens 1024 \\
  --cache_lens 32768 \\
  --chunk_size 256 \\
  --max_batch_size 4 \\
  --backend_type balance_serve \\
  --force_think # useful for R1
"""

# kvcache-ai/ktransformers, doc/en/balance-serve.md, "Download the Docker image for testing v0.2.4"
BALANCE_SERVE_DOCKER_RUN = (
    "docker run -it --gpus all --privileged --shm-size 64g --name ktrans --network=host "
    "-v /mnt:/mnt approachingai/ktransformers:v0.2.4-AVX512 /bin/bash"
)

# kvcache-ai/ktransformers, doc/en/kt-kernel/kt-kernel_intro.md, "Complete Example: Qwen3-30B-A3B",
# "Option A: AMX Backend (AMXINT8)", "Step 3: Launch SGLang server"
KT_KERNEL_OPTION_A = """\
python -m sglang.launch_server \\
  --host 0.0.0.0 \\
  --port 8000 \\
  --model /mnt/data/models/Qwen3-30B-A3B \\
  --trust-remote-code \\
  --mem-fraction-static 0.92 \\
  --chunked-prefill-size 4096 \\
  --served-model-name Qwen3-30B-A3B \\
  --enable-mixed-chunk \\
  --kt-method AMXINT8 \\
  --kt-weight-path /mnt/data/models/Qwen3-30B-A3B-INT8 \\
  --kt-cpuinfer 64 \\
  --kt-threadpool-count 2 \\
  --kt-num-gpu-experts 32 \\
  --kt-max-deferred-experts-per-token 2
"""

# kvcache-ai/ktransformers, doc/en/kt-kernel/kt-kernel_intro.md, "Complete Example: Qwen3-30B-A3B",
# "Option B: LLAMAFILE Backend (GGUF)", "Step 3: Launch SGLang server"
KT_KERNEL_OPTION_B = """\
python -m sglang.launch_server \\
  --host 0.0.0.0 \\
  --port 8000 \\
  --model /mnt/data/models/Qwen3-30B-A3B \\
  --trust-remote-code \\
  --mem-fraction-static 0.92 \\
  --chunked-prefill-size 4096 \\
  --served-model-name Qwen3-30B-A3B \\
  --enable-mixed-chunk \\
  --kt-method LLAMAFILE \\
  --kt-weight-path /mnt/data/models/Qwen3-30B-A3B-Q4_K_M \\
  --kt-cpuinfer 64 \\
  --kt-threadpool-count 2 \\
  --kt-num-gpu-experts 32 \\
  --kt-max-deferred-experts-per-token 2
"""

# kvcache-ai/ktransformers, docker/README-packaging.md, "Naming Convention" / "DockerHub tags"
PACKAGING_SIMPLIFIED_TAG = "kvcache/ktransformers:v0.4.3-cu128"


def _shell_words(text: str) -> list[str]:
    """What a POSIX shell makes of a doc's command: continuations joined, comments dropped."""
    return shlex.split(text.replace("\\\n", " "), comments=True)


def _as_v02_plugin_runs_it(doc: list[str], port: int, max_tokens: int) -> list[str]:
    """The doc's argv with the plugin's host, one --port (its own), --max_new_tokens = max_tokens."""
    out: list[str] = []
    seen_port = False
    i = 0
    while i < len(doc):
        word = doc[i]
        if word == "--port":
            if not seen_port:
                out += ["--host", presets.LOOPBACK, "--port", str(port)]
                seen_port = True
            i += 2
        elif word == "--max_new_tokens":
            out += [word, str(max_tokens)]
            i += 2
        else:
            out.append(word)
            i += 1
    return out


def _as_sglang_plugin_runs_it(doc: list[str], port: int) -> list[str]:
    out = list(doc)
    assert out[out.index("--host") + 1] == "0.0.0.0"
    assert out[out.index("--port") + 1] == "8000"
    out[out.index("--host") + 1] = presets.LOOPBACK
    out[out.index("--port") + 1] = str(port)
    return out


def _flags(argv: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs (``None`` for a bare switch) after the program and script."""
    flags: dict[str, str | None] = {}
    words = argv[2:]
    for i, word in enumerate(words):
        if word.startswith("--"):
            following = words[i + 1] if i + 1 < len(words) else None
            flags[word] = None if following is None or following.startswith("--") else following
    return flags


# --- kt-v0.2 against KT's docs ------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [1024, 64])
def test_kt_v02_is_the_tutorials_v024_command(max_tokens: int):
    doc = shlex.split(TUTORIAL_V024)
    values = {"model_path": doc[3], "gguf_path": doc[5], "cpu_infer": doc[7]}
    argv = presets.preset_command("kt-v0.2", values, port=PORT, max_tokens=max_tokens)
    assert argv == _as_v02_plugin_runs_it(doc, PORT, max_tokens)
    assert argv == [
        "python", "ktransformers/server/main.py",
        "--model_path", "/mnt/data/models/DeepSeek-V3",
        "--gguf_path", "/mnt/data/models/DeepSeek-V3-GGUF/DeepSeek-V3-Q4_K_M/",
        "--cpu_infer", "62",
        "--optimize_config_path", "ktransformers/optimize/optimize_rules/DeepSeek-V3-Chat-serve.yaml",
        "--host", "127.0.0.1",
        "--port", str(PORT),
        "--chunk_size", "256",
        "--max_new_tokens", str(max_tokens),
        "--max_batch_size", "4",
        "--cache_lens", "32768",
        "--backend_type", "balance_serve",
    ]  # fmt: skip


def test_kt_v02_with_force_think_has_the_balance_serve_docs_flags_and_values():
    doc = _shell_words(BALANCE_SERVE)
    assert doc[:2] == ["python", "ktransformers/server/main.py"]
    values = {"model_path": "/m/DeepSeek-R1", "gguf_path": "/g", "cpu_infer": "8", "force_think": "true"}
    argv = presets.preset_command("kt-v0.2", values, port=PORT, max_tokens=1024)
    expected = _flags(doc)
    expected.update(
        {
            "--model_path": "/m/DeepSeek-R1",  # the doc's <path_to_safetensor_config>
            "--gguf_path": "/g",  # the doc's <path_to_gguf_files>
            "--cpu_infer": "8",  # not in this doc's command (KT's default applies there)
            "--host": "127.0.0.1",
            "--port": str(PORT),
        }
    )
    assert argv[:2] == doc[:2]
    assert _flags(argv) == expected
    assert argv[-1] == "--force_think"  # last, as in the doc
    assert len(argv) == 2 + 2 * (len(expected) - 1) + 1  # no flag twice, nothing else


def test_kt_v02_image_and_shm_size_follow_balance_serve_docs_docker_run():
    words = shlex.split(BALANCE_SERVE_DOCKER_RUN)
    doc_image = words[-2]
    repository, _, doc_tag = doc_image.partition(":")
    release, _, isa = doc_tag.partition("-")
    assert (repository, release, isa) == ("approachingai/ktransformers", "v0.2.4", "AVX512")
    preset = presets.PRESETS["kt-v0.2"]
    assert preset.image == f"{repository}:v0.2.4post1-{isa}"  # the report's release, same ISA
    assert preset.shm_size == words[words.index("--shm-size") + 1] == "64g"
    assert preset.needs_gpu is True
    assert preset.readiness == "models"


# --- kt-sglang against KT's docs -----------------------------------------------------------------


def test_kt_sglang_is_kt_kernel_option_a_amxint8():
    doc = _shell_words(KT_KERNEL_OPTION_A)
    values = {
        "model": "/mnt/data/models/Qwen3-30B-A3B",
        "weight_path": "/mnt/data/models/Qwen3-30B-A3B-INT8",
        "cpuinfer": "64",
        "threadpool_count": "2",
        "method": "AMXINT8",
    }
    argv = presets.preset_command("kt-sglang", values, port=PORT, max_tokens=64)
    assert argv == _as_sglang_plugin_runs_it(doc, PORT)


def test_kt_sglang_defaults_are_kt_kernel_option_b_llamafile():
    doc = _shell_words(KT_KERNEL_OPTION_B)
    values = {
        "model": "/mnt/data/models/Qwen3-30B-A3B",
        "weight_path": "/mnt/data/models/Qwen3-30B-A3B-Q4_K_M",
        "cpuinfer": "64",
        "threadpool_count": "2",
    }  # method, mem fraction, prefill size, GPU experts, deferred experts, name: the defaults
    argv = presets.preset_command("kt-sglang", values, port=PORT, max_tokens=64)
    assert argv == _as_sglang_plugin_runs_it(doc, PORT)
    assert argv == [
        "python", "-m", "sglang.launch_server",
        "--host", "127.0.0.1",
        "--port", str(PORT),
        "--model", "/mnt/data/models/Qwen3-30B-A3B",
        "--trust-remote-code",
        "--mem-fraction-static", "0.92",
        "--chunked-prefill-size", "4096",
        "--served-model-name", "Qwen3-30B-A3B",
        "--enable-mixed-chunk",
        "--kt-method", "LLAMAFILE",
        "--kt-weight-path", "/mnt/data/models/Qwen3-30B-A3B-Q4_K_M",
        "--kt-cpuinfer", "64",
        "--kt-threadpool-count", "2",
        "--kt-num-gpu-experts", "32",
        "--kt-max-deferred-experts-per-token", "2",
    ]  # fmt: skip


def test_kt_sglang_ignores_max_tokens_sglang_honours_the_requests():
    one = presets.preset_command("kt-sglang", SGLANG_REQUIRED, port=PORT, max_tokens=16)
    other = presets.preset_command("kt-sglang", SGLANG_REQUIRED, port=PORT, max_tokens=4096)
    assert one == other
    assert not any("max" in word and "token" in word and "deferred" not in word for word in one)


def test_kt_sglang_image_is_the_packaging_readmes_simplified_tag():
    _, _, doc_tag = PACKAGING_SIMPLIFIED_TAG.partition(":")
    preset = presets.PRESETS["kt-sglang"]
    assert doc_tag == "v0.4.3-cu128"
    assert preset.image == f"approachingai/ktransformers:{doc_tag}"
    assert preset.shm_size is None
    assert preset.needs_gpu is True
    assert preset.readiness == "health"


def test_python_parameter_replaces_the_interpreter():
    serve = "/opt/miniconda3/envs/serve/bin/python"
    argv = presets.preset_command("kt-sglang", {**SGLANG_REQUIRED, "python": serve}, port=PORT, max_tokens=8)
    assert argv[:3] == [serve, "-m", "sglang.launch_server"]
    values = {**V02_REQUIRED, "python": "/venv/bin/python"}
    argv = presets.preset_command("kt-v0.2", values, port=PORT, max_tokens=8)
    assert argv[:2] == ["/venv/bin/python", "ktransformers/server/main.py"]


# --- describe and the presets command --------------------------------------------------------------


@pytest.mark.parametrize("name", ["kt-v0.2", "kt-sglang"])
def test_describe_lists_every_parameter_with_its_default(name: str):
    preset = presets.PRESETS[name]
    text = presets.describe(name)
    lines = text.splitlines()
    assert lines[0] == f"{name}: {preset.description}"
    assert lines[1].startswith(f"  image:      {preset.image} (")
    at = lines.index("  parameters (--kt-preset-args 'key=value ...'):")
    workdir = [f"  runs in:    {preset.workdir} (in the container)"] if preset.workdir else []
    assert lines[3:at] == [*workdir, f"  flags from: {preset.doc}"]
    rows = lines[at + 1 :]
    assert [row.split()[0] for row in rows] == [p.name for p in preset.params]
    for row, param in zip(rows, preset.params, strict=True):
        default = "required" if param.default is None else f"default {param.default!r}"
        assert row.split(maxsplit=1)[1].startswith(f"{default}: ")
        assert row.endswith(param.help)


def test_describe_shows_the_documented_values():
    v02 = presets.describe("kt-v0.2")
    assert "approachingai/ktransformers:v0.2.4post1-AVX512 (--shm-size 64g, needs a GPU)" in v02
    assert "GET /v1/models answers 200" in v02
    for row in (
        "model_path            required:",
        "cpu_infer             required:",
        "optimize_config_path  default 'ktransformers/optimize/optimize_rules/DeepSeek-V3-Chat-serve.yaml':",
        "cache_lens            default '32768':",
        "chunk_size            default '256':",
        "max_batch_size        default '4':",
        "force_think           default 'false':",
    ):
        assert f"\n    {row}" in v02
    sglang = presets.describe("kt-sglang")
    assert "approachingai/ktransformers:v0.4.3-cu128 (needs a GPU)" in sglang
    assert "GET /health answers 200" in sglang
    for row in (
        "method                          default 'LLAMAFILE':",
        "threadpool_count                default '1':",
        "num_gpu_experts                 default '32':",
        "max_deferred_experts_per_token  default '2':",
        "mem_fraction_static             default '0.92':",
        "chunked_prefill_size            default '4096':",
        "served_model_name               default '':",
    ):
        assert f"\n    {row}" in sglang


def test_presets_command_prints_both_presets():
    result = subprocess.run(
        [sys.executable, "-m", "pytest_ktinterf", "presets"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    expected = presets.describe("kt-sglang") + "\n\n" + presets.describe("kt-v0.2") + "\n\n"
    assert result.stdout == expected
    one = subprocess.run(
        [sys.executable, "-m", "pytest_ktinterf", "presets", "kt-v0.2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert one.returncode == 0, one.stderr
    assert one.stdout == presets.describe("kt-v0.2") + "\n\n"


# --- the process backend's use of a preset ---------------------------------------------------------


def test_process_backend_preset_command_leaves_the_port_slot():
    options = Options(
        backend="process",
        preset="kt-v0.2",
        preset_args="model_path=/m/DeepSeek-R1 gguf_path=/g cpu_infer=8",
        max_tokens=64,
    )
    command = _preset_command(options)
    assert command == (
        "python ktransformers/server/main.py --model_path /m/DeepSeek-R1 --gguf_path /g "
        "--cpu_infer 8 --optimize_config_path "
        "ktransformers/optimize/optimize_rules/DeepSeek-V3-Chat-serve.yaml --host 127.0.0.1 "
        "--port {port} --chunk_size 256 --max_new_tokens 64 --max_batch_size 4 "
        "--cache_lens 32768 --backend_type balance_serve"
    )
    assert command.count("{port}") == 1
    filled = shlex.split(command.replace("{port}", str(PORT)))
    assert filled == presets.preset_command("kt-v0.2", V02_REQUIRED, port=PORT, max_tokens=64)


def test_process_backend_preset_command_keeps_quoted_extra_and_max_tokens():
    options = Options(
        backend="process",
        preset="kt-v0.2",
        preset_args="model_path=/m/DeepSeek-R1 gguf_path=/g cpu_infer=8 'extra=--log_level \"a b\"'",
        max_tokens=128,
    )
    argv = shlex.split(_preset_command(options, port="9001"))
    assert argv[argv.index("--port") + 1] == "9001"
    assert argv[argv.index("--max_new_tokens") + 1] == "128"
    assert argv[-2:] == ["--log_level", "a b"]


def test_process_backend_preset_command_reports_bad_preset_args():
    options = Options(backend="process", preset="kt-v0.2", preset_args="model_path=/m gguf_path=/g")
    with pytest.raises(KtInterfError) as info:
        _preset_command(options)
    assert info.value.fix == "pass --kt-preset-args 'cpu_infer=VALUE'"
