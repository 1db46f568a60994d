#!/usr/bin/env bash
# Everything measured in one go, whenever a GPU is at hand (about 8 minutes on one GPU): builds the extension
# for the visible GPU only, runs `cycleisp-fast selftest` (every backend against the reference), then the op
# benchmarks and the whole-network benchmarks (inference and a training step; eager, torch.compile, fused,
# optimize() in float32 and bfloat16), writing their tables (.md), CSV and PNG under bench_results/.
# Needs a CUDA build of torch importable by $PYTHON (default python3) and the CUDA toolkit (CUDA_HOME or nvcc
# on PATH); installs nothing (a GPU machine may be offline).
#   bash scripts/gpu_check.sh            # then copy bench_results/*_cuda.md into the README
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="${PYTHON:-python3}"
out="${CYCLEISP_FAST_RESULTS:-bench_results}"
mkdir -p "$out"
if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check.sh: $python sees no GPU (torch.cuda.is_available() is False): nothing to check" >&2
  exit 1
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TORCH_CUDA_ARCH_LIST  # setup.py then builds for the visible GPU only
start=$SECONDS
stage() { echo "== $1 ($((SECONDS - start)) s)"; }

stage "build for $("$python" -c 'import torch; print(torch.cuda.get_device_name())')"
FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$python" setup.py build_ext --inplace > "$out/gpu_build.log" 2>&1 \
  || { tail -40 "$out/gpu_build.log" >&2; exit 1; }
ln -sfn ../triton_kernels cycleisp_fast/triton_kernels

stage "selftest"
"$python" -m cycleisp_fast selftest 2>&1 | tee "$out/selftest_cuda.txt"

stage "op benchmarks"
timeout 150 "$python" -m cycleisp_fast bench --device cuda --dtypes float32 float16 --min-run-time 0.2 \
  --csv "$out/bench_cuda.csv" --plot "$out/bench_cuda.png" | tee "$out/bench_cuda.md"

stage "network benchmarks"
timeout 240 "$python" -m cycleisp_fast bench --device cuda --ops denoisenet_srgb denoisenet_raw aindnet \
  --providers eager compile native triton optimized optimized-bf16 --min-run-time 0.2 \
  --csv "$out/bench_cuda_networks.csv" --plot "$out/bench_cuda_networks.png" | tee "$out/bench_cuda_networks.md"
stage "done"
