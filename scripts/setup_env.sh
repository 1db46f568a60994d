#!/usr/bin/env bash
# Creates (or reuses) the virtual environment .venv, installs the pinned development requirements and
# builds/installs cycleisp_fast against them. Sourced by scripts/main.sh and scripts/test.sh.
#   PYTHON                 interpreter for the venv (default python3)
#   CYCLEISP_FAST_VENV     venv location (default .venv in the repository)
#   TORCH_CUDA_ARCH_LIST   GPU architectures to compile (default without a GPU: the cuda_arch lines of csrc/build_flags.txt)
#   CYCLEISP_FAST_SKIP_CUDA=1 / FORCE_CUDA=1   skip the CUDA kernels / fail if they cannot be built
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CYCLEISP_FAST_VENV:-$repo/.venv}"
source "$repo/scripts/steps.sh"

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
step install "Install the development requirements (first time: ~5 min)" \
  "$venv/bin/python" -m pip install -r "$repo/requirements-dev.txt"

# ccache in front of the host compiler and nvcc makes rebuilds cheap (masquerading links, so that torch
# still sees g++ and nvcc by name).
if [ -x "$venv/bin/ccache" ]; then
  mkdir -p "$venv/ccache-bin"
  for compiler in gcc g++ cc c++; do ln -sf "$venv/bin/ccache" "$venv/ccache-bin/$compiler"; done
  export PATH="$venv/ccache-bin:$PATH"
  if [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
    export PYTORCH_NVCC="$venv/bin/ccache ${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  fi
fi
export PATH="$venv/bin:$PATH"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
# One wheel, built once (the LibTorch stable ABI and Python's limited API: it serves torch >= 2.10 and
# CPython >= 3.10), installed here; scripts/test_torch_range.sh installs the same file beside another torch.
# build/lib* would carry stale modules (an old _C of another ABI) into the wheel.
rm -rf "$repo/build/wheels" "$repo"/build/lib.* "$repo"/build/bdist.*
if [ "${CYCLEISP_FAST_SKIP_CUDA:-0}" = "1" ] || [ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  build_title="Build the C++ kernels (first time: ~3 min on 2 cores; ccache makes rebuilds seconds)"
else
  build_title="Build the C++ and CUDA kernels (first time: ~15 min on 2 cores; ccache makes rebuilds seconds)"
fi
step build "$build_title" \
  bash -c 'cd "$1" && python -m pip wheel -v --no-build-isolation --no-deps -w build/wheels .' _ "$repo"
CYCLEISP_FAST_WHEEL="$(ls "$repo"/build/wheels/cycleisp_fast-*.whl)"
export CYCLEISP_FAST_WHEEL
step install_wheel "Install the wheel ($(basename "$CYCLEISP_FAST_WHEEL"))" \
  python -m pip install --force-reinstall --no-deps "$CYCLEISP_FAST_WHEEL"
