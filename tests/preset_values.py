"""Preset values shared by the preset tests: the plugin's port there, each preset's required keys,
and the refusal a value gets."""

from __future__ import annotations

import pytest

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.server import presets

PORT = 18123  # the plugin's port in these tests (the docs use 10002 and 8000)
V02_REQUIRED = {"model_path": "/m/DeepSeek-R1", "gguf_path": "/g", "cpu_infer": "8"}
SGLANG_REQUIRED = {"model": "/m/Qwen3-30B-A3B", "weight_path": "/w", "cpuinfer": "16"}


def refusal(name: str, values: dict[str, str], *, port: int = PORT, max_tokens: int = 64) -> KtInterfError:
    """The error ``presets.preset_command`` raises for these values (fails if it accepts them)."""
    with pytest.raises(KtInterfError) as info:
        presets.preset_command(name, values, port=port, max_tokens=max_tokens)
    return info.value
