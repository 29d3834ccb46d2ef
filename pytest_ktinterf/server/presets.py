"""Named KTransformers (KT) server presets: the command lines KT's own docs give, filled in.

Why presets: a KT server takes a dozen flags whose right values live in KT's docs, and a wrong one
silently changes what is measured -- ``cpu_infer`` above the cores KT may use collapses throughput
(KT issue #726), ``cache_lens`` at or below ``max_batch_size x max_new_tokens`` quietly lowers the
concurrency (doc/en/balance-serve.md). A preset writes the command exactly as KT documents it,
asks only for what differs per machine and model (paths, thread counts), and refuses anything
else with the list of valid keys. Every value stays visible: ``describe`` prints the defaults.
The :class:`Preset` record, the ``key=value`` parser and the value checks the builders below use
are in :mod:`pytest_ktinterf.server.preset_spec`; this module is the presets themselves.

What the plugin always sets, whatever the docs' examples show:

* the host is ``127.0.0.1`` (the probe only talks to loopback; the docs use ``0.0.0.0``);
* the port is the plugin's (the docs use 10002 for v0.2, 8000 for SGLang);
* for ``kt-v0.2``, ``--max_new_tokens`` is ``--kt-max-tokens``. KT v0.2 ignores the request's
  ``max_tokens``: every answer is as long as the server-wide ``--max_new_tokens`` (unless EOS
  comes first), so the probe's ``--kt-max-tokens`` must equal it, and the preset makes it so.
  SGLang honours the request's ``max_tokens``, so ``kt-sglang`` has no such flag.

Where each flag comes from (all in the GitHub repository kvcache-ai/ktransformers):

``kt-v0.2`` -- the v0.2.4 multi-concurrency (``balance_serve``) server of the report's image.

* ``python ktransformers/server/main.py --model_path --gguf_path --cpu_infer
  --optimize_config_path ktransformers/optimize/optimize_rules/DeepSeek-V3-Chat-serve.yaml
  --port --chunk_size 256 --max_new_tokens --max_batch_size 4 --cache_lens 32768
  --backend_type balance_serve``, in that order: doc/en/DeepseekR1_V3_tutorial.md, section
  "How to Run / v0.2.4" (the doc repeats ``--port 10002``; argparse keeps the last, we write it
  once).
* ``--force_think`` ("useful for R1"), the same values, the rule
  ``cache_lens > max_batch_size * max_new_tokens`` and ``docker run ... --shm-size 64g``:
  doc/en/balance-serve.md (commit e004fa5).
* ``--host``: not in any doc command; ktransformers/server/args.py defines it.
* Image: doc/en/balance-serve.md pulls ``approachingai/ktransformers:v0.2.4-AVX512`` "as an
  example" from hub.docker.com/r/approachingai/ktransformers/tags; the tags are
  ``<release>-<ISA>``, ISA one of FANCY, AVX512, AVX2, NATIVE (the build matrix of
  .github/workflows/docker-image.yml). The report ran release v0.2.4post1, hence
  ``v0.2.4post1-AVX512``; on a CPU without AVX512 that image dies with "Illegal instruction"
  (issues #484, #520) -- pick the ``-AVX2`` tag with ``--kt-docker-image``. The image's
  entrypoint is ``tail -f /dev/null`` (the docs ``docker exec`` into it), so the docker backend
  replaces the entrypoint with the server command and sets the working directory to the KT
  checkout, ``/workspace/ktransformers`` (its Dockerfile's ``WORKDIR``; older images used
  ``/workspace``), which the relative paths need.

``kt-sglang`` -- current KT: kt-kernel experts on the CPU inside KT's SGLang fork.

* ``python -m sglang.launch_server --host --port --model --trust-remote-code
  --mem-fraction-static 0.92 --chunked-prefill-size 4096 --served-model-name
  --enable-mixed-chunk --kt-method --kt-weight-path --kt-cpuinfer --kt-threadpool-count
  --kt-num-gpu-experts 32 --kt-max-deferred-experts-per-token 2``, in that order:
  doc/en/kt-kernel/kt-kernel_intro.md, "Complete Example: Qwen3-30B-A3B", Option B (LLAMAFILE,
  GGUF experts, the default here: runs on any AVX2 CPU, like the report's GGUF setup) and
  Option A (``--kt-method AMXINT8``); the value guidance comes from its "KT-Kernel Parameters".
* Image: docker/README-packaging.md names the simplified tag ``v<kt version>-<cuda>`` (its
  example ``v0.4.3-cu128``), pushed by docker/push-to-dockerhub.sh ``--also-push-simplified`` to
  the ``--repository`` given (the README's example is ``kvcache/ktransformers``); we take it from
  approachingai/ktransformers, the Docker Hub repository doc/en/balance-serve.md links. SGLang
  is installed in the image's conda env ``serve`` (docker/Dockerfile) while ``python`` on its
  PATH is conda's base, so in that image pass ``python=/opt/miniconda3/envs/serve/bin/python``.
  KT's docs give no ``--shm-size`` for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.server.preset_spec import (
    ARGS_OPTION,
    LOOPBACK,
    Preset,
    PresetParam,
    extra_flags,
    fraction,
    parse_preset_args,
    switch,
    whole_number,
)

__all__ = [
    "ARGS_OPTION",
    "KT_SGLANG",
    "KT_V02",
    "LOOPBACK",
    "PRESETS",
    "Preset",
    "PresetParam",
    "describe",
    "parse_preset_args",
    "preset_command",
]

_READINESS = {
    "health": "GET /health answers 200",
    "models": "GET /v1/models answers 200 (no /health; the port opens once the model is loaded)",
}


def preset_command(
    name: str, values: Mapping[str, str], *, port: int, max_tokens: int, cores: int | None = None
) -> list[str]:
    """The command line of preset ``name``, with ``values``, the plugin's port and max tokens.

    ``cores``: how many cores the server is pinned to, when it is; more CPU threads are refused.
    """
    return _preset(name).argv(values, port=port, max_tokens=max_tokens, cores=cores)


def describe(name: str) -> str:
    """What ``name`` runs, from where, and each parameter with its default: for ``--help``-style output."""
    preset = _preset(name)
    run = [f"--shm-size {preset.shm_size}"] if preset.shm_size else []
    run.append("needs a GPU" if preset.needs_gpu else "no GPU needed")
    width = max(len(p.name) for p in preset.params)
    lines = [
        f"{preset.name}: {preset.description}",
        f"  image:      {preset.image} ({', '.join(run)})",
        f"  ready when: {_READINESS[preset.readiness]}",
        *([f"  runs in:    {preset.workdir} (in the container)"] if preset.workdir else []),
        f"  flags from: {preset.doc}",
        f"  parameters ({ARGS_OPTION} 'key=value ...'):",
    ]
    for p in preset.params:
        default = "required" if p.default is None else f"default {p.default!r}"
        lines.append(f"    {p.name:<{width}}  {default}: {p.help}")
    return "\n".join(lines)


def _preset(name: str) -> Preset:
    preset = PRESETS.get(name)
    if preset is None:
        raise KtInterfError(
            f"--kt-preset {name!r} is not a known preset",
            f"use one of: {', '.join(PRESETS)}",
        )
    return preset


_PYTHON_HELP = "the Python that runs the server (a venv's, or a conda env's inside an image)"
_EXTRA_HELP = "more flags appended verbatim (shell-quoted), e.g. '--use_cuda_graph'"


def _kt_v02_argv(values: Mapping[str, str], port: int, max_tokens: int) -> list[str]:
    name = "kt-v0.2"
    cpu_infer = whole_number(name, values, "cpu_infer", 1)
    chunk_size = whole_number(name, values, "chunk_size", 1)
    batch = whole_number(name, values, "max_batch_size", 1)
    cache_lens = whole_number(name, values, "cache_lens", 1)
    if cache_lens <= batch * max_tokens:
        raise KtInterfError(
            f"preset {name}: cache_lens {cache_lens} is not above max_batch_size {batch} x "
            f"--kt-max-tokens {max_tokens} = {batch * max_tokens}, so KT would run fewer requests "
            "at once than max_batch_size (doc/en/balance-serve.md)",
            f"raise {ARGS_OPTION} cache_lens above {batch * max_tokens}, or lower max_batch_size "
            "or --kt-max-tokens",
        )
    argv = [
        values["python"], "ktransformers/server/main.py",
        "--model_path", values["model_path"],
        "--gguf_path", values["gguf_path"],
        "--cpu_infer", str(cpu_infer),
        "--optimize_config_path", values["optimize_config_path"],
        "--host", LOOPBACK,
        "--port", str(port),
        "--chunk_size", str(chunk_size),
        "--max_new_tokens", str(max_tokens),
        "--max_batch_size", str(batch),
        "--cache_lens", str(cache_lens),
        "--backend_type", "balance_serve",
    ]  # fmt: skip
    if switch(name, values, "force_think"):
        argv.append("--force_think")
    return argv + extra_flags(name, values, ("--host", "--port", "--max_new_tokens"))


def _kt_sglang_argv(values: Mapping[str, str], port: int, _max_tokens: int) -> list[str]:
    """SGLang honours each request's ``max_tokens``: there is nothing server-wide to set."""
    name = "kt-sglang"
    served = values["served_model_name"] or PurePosixPath(values["model"].rstrip("/")).name
    argv = [
        values["python"], "-m", "sglang.launch_server",
        "--host", LOOPBACK,
        "--port", str(port),
        "--model", values["model"],
        "--trust-remote-code",
        "--mem-fraction-static", fraction(name, values, "mem_fraction_static"),
        "--chunked-prefill-size", str(whole_number(name, values, "chunked_prefill_size", 1)),
        "--served-model-name", served,
        "--enable-mixed-chunk",
        "--kt-method", values["method"],
        "--kt-weight-path", values["weight_path"],
        "--kt-cpuinfer", str(whole_number(name, values, "cpuinfer", 1)),
        "--kt-threadpool-count", str(whole_number(name, values, "threadpool_count", 1)),
        "--kt-num-gpu-experts", str(whole_number(name, values, "num_gpu_experts", 0)),
        "--kt-max-deferred-experts-per-token",
        str(whole_number(name, values, "max_deferred_experts_per_token", 0)),
    ]  # fmt: skip
    return argv + extra_flags(name, values, ("--host", "--port"))


KT_V02 = Preset(
    name="kt-v0.2",
    description=(
        "KTransformers v0.2.4 server, balance_serve backend (continuous batching), as in the "
        "report's official image v0.2.4post1; the plugin sets --host 127.0.0.1, --port and "
        "--max_new_tokens (= --kt-max-tokens: KT v0.2 ignores the request's max_tokens)"
    ),
    image="approachingai/ktransformers:v0.2.4post1-AVX512",
    doc=(
        "kvcache-ai/ktransformers doc/en/DeepseekR1_V3_tutorial.md (How to Run / v0.2.4) and "
        "doc/en/balance-serve.md (--force_think, --shm-size 64g, image tags); --host from "
        "ktransformers/server/args.py"
    ),
    params=(
        PresetParam(
            "model_path",
            "directory with the model's HF config and tokenizer (no weights needed); its last "
            "segment must name the model, e.g. /models/DeepSeek-R1",
            None,
        ),
        PresetParam("gguf_path", "directory holding only this model's GGUF files", None),
        PresetParam(
            "cpu_infer",
            "KT's CPU expert threads; at most the cores the server is pinned to (--kt-server-cpus): "
            "its threads busy-wait, and more threads than cores collapses throughput (KT #726)",
            None,
        ),
        PresetParam(
            "optimize_config_path",
            "injection rules, relative to the KT checkout (the image's working directory)",
            "ktransformers/optimize/optimize_rules/DeepSeek-V3-Chat-serve.yaml",
        ),
        PresetParam(
            "cache_lens",
            "KV-cache tokens shared by all requests; must exceed max_batch_size x --kt-max-tokens",
            "32768",
        ),
        PresetParam("chunk_size", "most tokens the engine processes in one step (chunked prefill)", "256"),
        PresetParam("max_batch_size", "most requests (prefill + decode) in one engine step", "4"),
        PresetParam("force_think", "true adds --force_think (R1 always opens with <think>)", "false"),
        PresetParam("python", _PYTHON_HELP, "python"),
        PresetParam("extra", _EXTRA_HELP, ""),
    ),
    shm_size="64g",
    needs_gpu=True,
    readiness="models",
    workdir="/workspace/ktransformers",
    threads_param="cpu_infer",
    threads_flag="--cpu_infer",
    build=_kt_v02_argv,
)

KT_SGLANG = Preset(
    name="kt-sglang",
    description=(
        "current KTransformers: SGLang (KT's fork) with kt-kernel running the CPU experts; "
        "the plugin sets --host 127.0.0.1 and --port; requests' max_tokens are honoured"
    ),
    image="approachingai/ktransformers:v0.4.3-cu128",
    doc=(
        "kvcache-ai/ktransformers doc/en/kt-kernel/kt-kernel_intro.md (Complete Example: "
        "Qwen3-30B-A3B, Options A and B; KT-Kernel Parameters); image tag from "
        "docker/README-packaging.md"
    ),
    params=(
        PresetParam("model", "the model's directory with the GPU-side weights (HF safetensors)", None),
        PresetParam(
            "weight_path",
            "CPU-side expert weights: a GGUF directory for LLAMAFILE, converted INT4/INT8 "
            "weights for AMXINT4/AMXINT8",
            None,
        ),
        PresetParam(
            "cpuinfer",
            "kt-kernel's CPU threads: KT says physical cores, not hyperthreads; at most the "
            "physical cores in --kt-server-cpus",
            None,
        ),
        PresetParam(
            "method",
            "CPU backend: LLAMAFILE (GGUF, any AVX2 CPU), AMXINT4, AMXINT8 (Intel AMX), RAWINT4, FP8",
            "LLAMAFILE",
        ),
        PresetParam(
            "threadpool_count",
            "thread pools, one per NUMA node the server runs on (the doc's dual-socket example: 2)",
            "1",
        ),
        PresetParam(
            "num_gpu_experts",
            "experts kept on the GPU (fewer = more CPU work, less VRAM; 32 fits Qwen3-30B-A3B in 24 GB)",
            "32",
        ),
        PresetParam(
            "max_deferred_experts_per_token",
            "experts per token deferred for CPU/GPU pipelining (0 = synchronous; 1-4 recommended)",
            "2",
        ),
        PresetParam("mem_fraction_static", "fraction of GPU memory SGLang reserves", "0.92"),
        PresetParam("chunked_prefill_size", "most prompt tokens prefilled per step", "4096"),
        PresetParam(
            "served_model_name",
            "model name in /v1/models and requests (empty: the last segment of model)",
            "",
        ),
        PresetParam(
            "python",
            _PYTHON_HELP + "; in the image: /opt/miniconda3/envs/serve/bin/python",
            "python",
        ),
        PresetParam("extra", _EXTRA_HELP.replace("--use_cuda_graph", "--max-running-requests 4"), ""),
    ),
    shm_size=None,
    needs_gpu=True,
    readiness="health",
    workdir=None,
    threads_param="cpuinfer",
    threads_flag="--kt-cpuinfer",
    build=_kt_sglang_argv,
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (KT_V02, KT_SGLANG)}
