"""What the KT presets accept and refuse: served_model_name, force_think and extra; values out of
range, unknown or missing keys, each refused in one line naming the option, the key and the fix;
--kt-preset-args parsing; CPU threads against the cores the server is pinned to (KT issue #726).

The command lines themselves, against KT's docs, are in ``test_presets.py``.
"""

from __future__ import annotations

import pytest

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import _preset_command, presets
from tests.preset_values import PORT, SGLANG_REQUIRED, V02_REQUIRED, refusal

# --- served_model_name, force_think, extra --------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "served", "expected"),
    [
        ("/models/Qwen3-30B-A3B", "", "Qwen3-30B-A3B"),
        ("/models/Qwen3-30B-A3B/", "", "Qwen3-30B-A3B"),
        ("/models/Qwen3-30B-A3B", "qwen", "qwen"),
    ],
)
def test_served_model_name_defaults_to_the_models_directory_name(model: str, served: str, expected: str):
    values = {**SGLANG_REQUIRED, "model": model, "served_model_name": served}
    argv = presets.preset_command("kt-sglang", values, port=PORT, max_tokens=8)
    assert argv[argv.index("--served-model-name") + 1] == expected
    assert argv[argv.index("--model") + 1] == model


@pytest.mark.parametrize(
    ("text", "present"), [("true", True), ("Yes", True), ("1", True), ("false", False), ("off", False)]
)
def test_force_think_switch(text: str, present: bool):
    argv = presets.preset_command("kt-v0.2", {**V02_REQUIRED, "force_think": text}, port=PORT, max_tokens=8)
    assert argv.count("--force_think") == (1 if present else 0)
    assert argv[-1] == ("--force_think" if present else "balance_serve")


def test_force_think_must_be_true_or_false():
    err = refusal("kt-v0.2", {**V02_REQUIRED, "force_think": "maybe"})
    assert err.cause == "--kt-preset-args force_think='maybe' (preset kt-v0.2) is not true or false"
    assert err.fix == "give force_think=true or force_think=false"


def test_extra_is_appended_verbatim_after_everything_else():
    values = {**V02_REQUIRED, "force_think": "true", "extra": "--use_cuda_graph --log_level 'debug x'"}
    argv = presets.preset_command("kt-v0.2", values, port=PORT, max_tokens=8)
    base = presets.preset_command("kt-v0.2", {**V02_REQUIRED, "force_think": "true"}, port=PORT, max_tokens=8)
    assert argv == [*base, "--use_cuda_graph", "--log_level", "debug x"]
    values = {**SGLANG_REQUIRED, "extra": "--max-running-requests 4"}
    argv = presets.preset_command("kt-sglang", values, port=PORT, max_tokens=8)
    base = presets.preset_command("kt-sglang", SGLANG_REQUIRED, port=PORT, max_tokens=8)
    assert argv == [*base, "--max-running-requests", "4"]


@pytest.mark.parametrize(
    ("name", "required", "extra", "flag"),
    [
        ("kt-v0.2", V02_REQUIRED, "--port 9000", "--port"),
        ("kt-v0.2", V02_REQUIRED, "--use_cuda_graph --port=9000", "--port"),
        ("kt-v0.2", V02_REQUIRED, "--host 0.0.0.0", "--host"),
        ("kt-v0.2", V02_REQUIRED, "--max_new_tokens 2048", "--max_new_tokens"),
        ("kt-sglang", SGLANG_REQUIRED, "--port 9000", "--port"),
        ("kt-sglang", SGLANG_REQUIRED, "--host=0.0.0.0", "--host"),
    ],
)
def test_extra_may_not_set_what_the_plugin_sets(name: str, required: dict, extra: str, flag: str):
    err = refusal(name, {**required, "extra": extra})
    assert err.cause == f"--kt-preset-args extra sets {flag} (preset {name}), which the plugin sets itself"
    assert err.fix.startswith(f"drop {flag} from extra (")


def test_extra_with_broken_quoting_is_refused():
    err = refusal("kt-v0.2", {**V02_REQUIRED, "extra": "--log_level 'debug"})
    assert err.cause.startswith(
        '--kt-preset-args extra="--log_level \'debug" (preset kt-v0.2) cannot be parsed ('
    )
    assert err.fix == "check its quoting"


# --- refused values --------------------------------------------------------------------------------


def test_unknown_preset_name():
    err = refusal("kt-v0.3", V02_REQUIRED)
    assert err.cause == "--kt-preset 'kt-v0.3' is not a known preset"
    assert err.fix == "use one of: kt-v0.2, kt-sglang"
    with pytest.raises(KtInterfError, match="'nope' is not a known preset"):
        presets.describe("nope")


def test_unknown_parameter_key_lists_the_valid_ones():
    err = refusal("kt-v0.2", {**V02_REQUIRED, "gpus": "all", "port": "1"})
    assert err.cause == "--kt-preset-args: 'gpus', 'port' not a parameter of preset kt-v0.2"
    assert err.fix == (
        "use one of: model_path, gguf_path, cpu_infer, optimize_config_path, cache_lens, "
        "chunk_size, max_batch_size, force_think, python, extra"
    )
    err = refusal("kt-sglang", {**SGLANG_REQUIRED, "cpu_infer": "8"})  # kt-v0.2's spelling
    assert err.cause == "--kt-preset-args: 'cpu_infer' not a parameter of preset kt-sglang"
    assert err.fix == (
        "use one of: model, weight_path, cpuinfer, method, threadpool_count, num_gpu_experts, "
        "max_deferred_experts_per_token, mem_fraction_static, chunked_prefill_size, "
        "served_model_name, python, extra"
    )


def test_missing_required_parameters_name_the_option_and_keys():
    err = refusal("kt-v0.2", {"model_path": "/m/DeepSeek-R1"})
    assert err.cause.startswith("preset kt-v0.2 needs --kt-preset-args gguf_path=... (")
    assert "; cpu_infer=... (" in err.cause
    assert "model_path" not in err.cause
    assert err.fix == "pass --kt-preset-args 'gguf_path=VALUE cpu_infer=VALUE'"
    err = refusal("kt-sglang", {})
    assert err.cause.startswith("preset kt-sglang needs --kt-preset-args model=... (")
    assert err.fix == "pass --kt-preset-args 'model=VALUE weight_path=VALUE cpuinfer=VALUE'"


@pytest.mark.parametrize(
    ("name", "required", "key", "text", "minimum"),
    [
        ("kt-v0.2", V02_REQUIRED, "cpu_infer", "eight", 1),
        ("kt-v0.2", V02_REQUIRED, "cpu_infer", "0", 1),
        ("kt-v0.2", V02_REQUIRED, "chunk_size", "2.5", 1),
        ("kt-v0.2", V02_REQUIRED, "max_batch_size", "", 1),
        ("kt-v0.2", V02_REQUIRED, "cache_lens", "32k", 1),
        ("kt-sglang", SGLANG_REQUIRED, "cpuinfer", "-3", 1),
        ("kt-sglang", SGLANG_REQUIRED, "threadpool_count", "two", 1),
        ("kt-sglang", SGLANG_REQUIRED, "num_gpu_experts", "-1", 0),
        ("kt-sglang", SGLANG_REQUIRED, "max_deferred_experts_per_token", "x", 0),
        ("kt-sglang", SGLANG_REQUIRED, "chunked_prefill_size", "0", 1),
    ],
)
def test_bad_integers_are_refused(name: str, required: dict, key: str, text: str, minimum: int):
    err = refusal(name, {**required, key: text})
    assert err.cause == (
        f"--kt-preset-args {key}={text!r} (preset {name}) is not a whole number >= {minimum}"
    )
    assert err.fix == f"give {key} as a whole number >= {minimum}"


def test_zero_gpu_experts_and_no_deferral_are_allowed():
    values = {**SGLANG_REQUIRED, "num_gpu_experts": "0", "max_deferred_experts_per_token": "0"}
    argv = presets.preset_command("kt-sglang", values, port=PORT, max_tokens=8)
    assert argv[argv.index("--kt-num-gpu-experts") + 1] == "0"
    assert argv[argv.index("--kt-max-deferred-experts-per-token") + 1] == "0"


@pytest.mark.parametrize("text", ["0", "1.5", "-0.2", "most"])
def test_mem_fraction_static_must_be_a_fraction(text: str):
    err = refusal("kt-sglang", {**SGLANG_REQUIRED, "mem_fraction_static": text})
    assert err.cause == (
        f"--kt-preset-args mem_fraction_static={text!r} (preset kt-sglang) is not a fraction in (0, 1]"
    )
    assert err.fix == "give mem_fraction_static as a number such as 0.92"


def test_cache_lens_must_exceed_max_batch_size_times_max_tokens():
    # balance-serve.md: "cache_lens > max_batch_size * max_new_tokens, otherwise the concurrency
    # will decrease"; 4 x 1024 = 4096
    err = refusal("kt-v0.2", {**V02_REQUIRED, "cache_lens": "4096"}, max_tokens=1024)
    assert err.cause == (
        "preset kt-v0.2: cache_lens 4096 is not above max_batch_size 4 x --kt-max-tokens 1024 = 4096, "
        "so KT would run fewer requests at once than max_batch_size (doc/en/balance-serve.md)"
    )
    assert err.fix == (
        "raise --kt-preset-args cache_lens above 4096, or lower max_batch_size or --kt-max-tokens"
    )
    values = {**V02_REQUIRED, "cache_lens": "4097"}
    argv = presets.preset_command("kt-v0.2", values, port=PORT, max_tokens=1024)
    assert argv[argv.index("--cache_lens") + 1] == "4097"
    # the default 32768 refuses 4 x 8192 but takes 4 x 8191
    err = refusal("kt-v0.2", V02_REQUIRED, max_tokens=8192)
    assert "cache_lens 32768 is not above max_batch_size 4 x --kt-max-tokens 8192 = 32768" in err.cause
    assert presets.preset_command("kt-v0.2", V02_REQUIRED, port=PORT, max_tokens=8191)[-7] == "8191"
    err = refusal("kt-v0.2", {**V02_REQUIRED, "max_batch_size": "8"}, max_tokens=4096)
    assert "max_batch_size 8 x --kt-max-tokens 4096 = 32768" in err.cause


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_must_be_a_tcp_port(port: int):
    err = refusal("kt-sglang", SGLANG_REQUIRED, port=port)
    assert err.cause == f"port {port} is not a TCP port"
    assert err.fix == "use a port between 1 and 65535"


def test_max_tokens_must_be_positive():
    err = refusal("kt-v0.2", V02_REQUIRED, max_tokens=0)
    assert err.cause == "--kt-max-tokens 0 is below 1"
    assert err.fix == "give --kt-max-tokens >= 1"


# --- parse_preset_args ----------------------------------------------------------------------------


def test_parse_preset_args_splits_at_the_first_equals_sign():
    parsed = presets.parse_preset_args(
        ["model_path=/m/DeepSeek-R1", "extra=--log_level=debug --x 'a b'", "served_model_name="]
    )
    assert parsed == {
        "model_path": "/m/DeepSeek-R1",
        "extra": "--log_level=debug --x 'a b'",
        "served_model_name": "",
    }
    assert presets.parse_preset_args([]) == {}


@pytest.mark.parametrize("item", ["model_path", "=value", "model path=/m", ""])
def test_parse_preset_args_refuses_items_that_are_not_key_value(item: str):
    with pytest.raises(KtInterfError) as info:
        presets.parse_preset_args(["gguf_path=/g", item])
    assert info.value.cause == f"--kt-preset-args item {item!r} is not key=value"
    assert info.value.fix == (
        "write each item as key=value, e.g. --kt-preset-args 'model_path=/models/DeepSeek-R1'"
    )


def test_parse_preset_args_refuses_a_key_given_twice():
    with pytest.raises(KtInterfError) as info:
        presets.parse_preset_args(["cpu_infer=8", "gguf_path=/g", "cpu_infer=16"])
    assert info.value.cause == "--kt-preset-args gives 'cpu_infer' twice ('8' and '16')"
    assert info.value.fix == "keep one cpu_infer=... item"


# --- CPU threads against the cores the server is pinned to (KT issue #726) ---------------------------


@pytest.mark.parametrize(("name", "values"), [("kt-v0.2", V02_REQUIRED), ("kt-sglang", SGLANG_REQUIRED)])
def test_more_cpu_threads_than_pinned_cores_is_refused(name: str, values: dict[str, str]):
    preset = presets.PRESETS[name]
    threads = int(values[preset.threads_param])
    fits = presets.preset_command(name, values, port=PORT, max_tokens=64, cores=threads)
    assert fits[fits.index(preset.threads_flag) + 1] == str(threads)
    with pytest.raises(KtInterfError) as info:
        presets.preset_command(name, values, port=PORT, max_tokens=64, cores=threads - 1)
    assert f"{preset.threads_param}={threads} CPU threads on the {threads - 1} cores" in info.value.cause
    assert "#726" in info.value.cause
    assert info.value.fix.startswith(f"pin the server to at least {threads} cores with --kt-server-cpus")


def test_the_default_single_pinned_core_refuses_a_kt_sized_thread_count():
    options = Options(
        backend="docker",
        preset="kt-v0.2",
        preset_args="model_path=/m/DeepSeek-R1 gguf_path=/g cpu_infer=24",
        server_cpus=[1],
    )
    with pytest.raises(KtInterfError, match=r"cpu_infer=24 CPU threads on the 1 core the server"):
        _preset_command(options)
    assert "--cpu_infer 24" in _preset_command(options, pinned=False)  # a remote engine, not pinned
