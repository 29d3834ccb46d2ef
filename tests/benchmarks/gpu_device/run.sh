#!/bin/bash
# GPU proof on a lent GPU machine, one shot (prepare with prepare.sh beside this file; carry
# .device): (1) the GPU actors' own tests against NVML, while a CUDA llama-server builds in the
# background (sm_90, no FlashAttention kernels; 185 s on the H100 machine's 16 cores, 2026-11-26);
# (2) the seed's GPU rows against that server, all layers offloaded; (3) the concurrency row if
# time is left; (4) the same server started by hand, found through --kt-url (issue 15), if time is left. Falls
# back to the CPU server carried beside it when the CUDA build fails, and says so. Everything it
# reports lands in $OUT (the device tool brings back at most 8 files).
# STEPS (default actors,rows,concurrency,external) picks steps, e.g. STEPS=external for a second call.
set -u
export PYTHONUNBUFFERED=1
STEPS=",${STEPS:-actors,rows,concurrency,external},"
want() { [[ "$STEPS" == *",$1,"* ]]; }
cd "$(dirname "$0")/../../.."
REPO=$PWD
T0=$(date +%s)
stamp() { echo "== t=$(( $(date +%s) - T0 ))s $*"; }
stamp start
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
nproc; python3 -V; command -v nvcc cmake ninja g++
GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
# cuBLAS: the toolkit's own, else the pip wheel's (nvidia/cu13/lib holds only versioned names).
CUBLAS_LIB=$(dirname "$(find /usr/local/cuda/ /usr/local/cuda/lib64/ /opt /usr/lib /usr/local/lib -name 'libcublas.so*' 2>/dev/null | head -1)")
CUBLAS_INC=$(dirname "$(find /usr/local/cuda/include/ /usr/local/cuda/targets/ "$CUBLAS_LIB/.." -name cublas_v2.h 2>/dev/null | head -1)")
echo "cuBLAS: lib $CUBLAS_LIB, include $CUBLAS_INC"
EXTRA=()
if ! ls /usr/local/cuda/lib64/libcublas.so >/dev/null 2>&1 && [ -n "$CUBLAS_LIB" ]; then
  EXTRA=(-DCUDA_cublas_LIBRARY="$(ls "$CUBLAS_LIB"/libcublas.so* | head -1)"
         -DCUDA_cublasLt_LIBRARY="$(ls "$CUBLAS_LIB"/libcublasLt.so* | head -1)"
         -DCMAKE_CUDA_FLAGS="-I$CUBLAS_INC" -DCMAKE_CXX_FLAGS="-I$CUBLAS_INC" -DCMAKE_C_FLAGS="-I$CUBLAS_INC")
  export LD_LIBRARY_PATH="$CUBLAS_LIB:${LD_LIBRARY_PATH:-}"
fi
(
  mkdir -p /tmp/llama && tar xJf .device/llama-src.tar.xz -C /tmp/llama && cd /tmp/llama &&
  cmake -S . -B build $GEN -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF \
    -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_NO_VMM=ON "${EXTRA[@]}" &&
  timeout ${BUILD_TIMEOUT:-300} cmake --build build --target llama-server -j 15
) > /tmp/build.log 2>&1 &
BUILD=$!
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/whl/*.whl || exit 9
export PYTHONPATH=/tmp/site
python3 -c "import pytest, hypothesis, httpx, psutil, pynvml, torch; print('pytest', pytest.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"


if want actors; then
  stamp "GPU actor tests"
  timeout 240 python3 -m pytest tests/test_actor_gpu.py tests/test_gpu_rules.py -v -p no:cacheprovider -rs 2>&1 | tee "$OUT/actor_gpu.log" | tail -45
fi
stamp "waiting for the CUDA build"
wait $BUILD; echo "build rc=$?"; tail -c 3000 /tmp/build.log; cp /tmp/build.log "$OUT/build.log"

SERVER=/tmp/llama/build/bin/llama-server; GPU_FLAGS="-ngl 99 -fa off"
if [ ! -x "$SERVER" ]; then
  echo "!! CUDA build failed: the GPU rows run against the CPU llama-server (no -ngl)"
  xz -dc .device/llama-server-cpu.xz > /tmp/llama-server-cpu && chmod +x /tmp/llama-server-cpu
  SERVER=/tmp/llama-server-cpu; GPU_FLAGS=""
fi
CMD="$SERVER -m $REPO/.device/smollm2-6l.gguf --host 127.0.0.1 --port {port} -np 4 -c 4096 --metrics $GPU_FLAGS"
if want rows; then
  stamp "GPU rows with: $CMD"
  timeout $(( 585 - ($(date +%s) - T0) )) python3 -m pytest experiments/seed_report.toml -k "gpu_" -v -p no:cacheprovider -rs \
    --kt-backend process --kt-server-cmd "$CMD" --kt-max-pairs 6 \
    --kt-report-json "$OUT/report.json" 2>&1 | tee "$OUT/rows.log" | tail -60
  stamp "rows done"
fi
nvidia-smi --query-compute-apps=pid,used_memory --format=csv
ps -eo pid,comm | grep -E "llama-server|python3 -m pytest_ktinterf" || echo "nothing left running"
if want concurrency && [ $(( $(date +%s) - T0 )) -lt 440 ]; then
  stamp "the GPU server at 1..N streams (concurrency row)"
  timeout $(( 540 - ($(date +%s) - T0) )) python3 -m pytest experiments/seed_report.toml -k "concurrency" \
    -p no:cacheprovider -rs --kt-backend process --kt-server-cmd "$CMD" --kt-max-pairs 6 \
    --kt-report-json /tmp/unc/report.json 2>&1 | tail -25
  cp /tmp/unc/report.json "$OUT/uncontended.json" 2>/dev/null
fi
if want external && [ $(( $(date +%s) - T0 )) -lt 500 ] && [ -f .device/stress-ng.tar.xz ]; then
  tar xJf .device/stress-ng.tar.xz -C /tmp  # Debian's stress-ng and the libraries the image may lack
  export LD_LIBRARY_PATH="/tmp/sng/lib:${LD_LIBRARY_PATH:-}"
  /tmp/sng/stress-ng --version || echo "!! the carried stress-ng does not run here"
  stamp "issue 15: the GPU server started by hand (setsid taskset -c 8-15), reached by --kt-url only"
  PORT=18181
  setsid taskset -c 8-15 ${CMD//\{port\}/$PORT} >/tmp/hand.log 2>&1 </dev/null &
  for _ in $(seq 100); do curl -sf 127.0.0.1:$PORT/health >/dev/null && break; sleep 0.2; done
  timeout $(( ${LIMIT:-588} - ($(date +%s) - T0) )) python3 -m pytest experiments/seed_report.toml \
    -k "cpu_server or gpu_compute" -p no:cacheprovider -rs --kt-url http://127.0.0.1:$PORT \
    --kt-max-pairs 6 --kt-stress-ng /tmp/sng/stress-ng \
    --kt-report-json "$OUT/external.json" 2>&1 | tee "$OUT/external.log" | grep -v "^ktinterf:" | tail -40
  pkill -f "port $PORT" || true
fi
stamp end
