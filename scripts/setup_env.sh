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
# Runs a command quietly; on failure shows its output (less pip's noise about local index paths) and fails.
quietly() {
  local log
  log="$(mktemp)"
  if ! "$@" > "$log" 2>&1; then
    grep -v "is ignored: it is neither" "$log" >&2
    return 1
  fi
}

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
quietly "$venv/bin/python" -m pip install -r "$repo/requirements-dev.txt"

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
(cd "$repo" && quietly python -m pip install --no-build-isolation .)
