#!/usr/bin/env bash
# The test job on a fresh machine: set up, build and run the C++ unit tests (ctest) and the CMake build of
# the ops library, then the Python test suite (Triton kernels in the CPU interpreter where there is no GPU).
set -euo pipefail
if [ "${CI:-}" = "true" ]; then export FORCE_CUDA="${FORCE_CUDA:-1}"; fi  # CI must compile the CUDA kernels
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$repo"
mkdir -p build
cmake_cuda=OFF
if [ "${CYCLEISP_FAST_SKIP_CUDA:-0}" != "1" ] && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then cmake_cuda=ON; fi
cmake -S . -B build/cmake -DCYCLEISP_FAST_CUDA="$cmake_cuda" \
  -DCMAKE_CUDA_COMPILER="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" -DCUDA_TOOLKIT_ROOT_DIR="${CUDA_HOME:-/usr/local/cuda}" \
  -DCMAKE_PREFIX_PATH="$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')" > build/cmake.log 2>&1 \
  || { cat build/cmake.log; exit 1; }
cmake --build build/cmake -j "$MAX_JOBS" >> build/cmake.log 2>&1 || { cat build/cmake.log; exit 1; }
ctest --test-dir build/cmake --output-on-failure
export CYCLEISP_FAST_CMAKE_LIBRARY="$repo/build/cmake/libcycleisp_fast_ops.so"
# lint and format (pyproject.toml [tool.ruff]; also .pre-commit-config.yaml); separate lines so that set -e stops
ruff check .
ruff format --check .
TRITON_INTERPRET="${TRITON_INTERPRET:-1}" pytest -q tests "$@"
