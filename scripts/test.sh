#!/usr/bin/env bash
# The test job on a fresh machine: set up (build the wheel once and install it), build and run the C++ unit
# tests (ctest) and the CMake build of the ops library, lint, the Python test suite (Triton kernels in the CPU
# interpreter where there is no GPU), then the same wheel beside a second torch release and its op tests there.
# Each step prints its time; full logs in build/logs/.
set -euo pipefail
if [ "${CI:-}" = "true" ]; then export FORCE_CUDA="${FORCE_CUDA:-1}"; fi  # CI must compile the CUDA kernels
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$repo"
cmake_cuda=OFF
if [ "${CYCLEISP_FAST_SKIP_CUDA:-0}" != "1" ] && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then cmake_cuda=ON; fi
cmake_build() {
  cmake -S . -B build/cmake -DCYCLEISP_FAST_CUDA="$cmake_cuda" \
    -DCMAKE_CUDA_COMPILER="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" -DCUDA_TOOLKIT_ROOT_DIR="${CUDA_HOME:-/usr/local/cuda}" \
    -DCMAKE_PREFIX_PATH="$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  cmake --build build/cmake -j "$MAX_JOBS"
}
step cmake "CMake build of the ops library (CUDA: $cmake_cuda) and the C++ unit tests" cmake_build
live_step ctest "C++ unit tests (ctest)" ctest --test-dir build/cmake --output-on-failure
export CYCLEISP_FAST_CMAKE_LIBRARY="$repo/build/cmake/libcycleisp_fast_ops.so"
# lint and format (pyproject.toml [tool.ruff]; also .pre-commit-config.yaml)
live_step lint "ruff check and ruff format --check" bash -c 'ruff check . && ruff format --check .'
export TRITON_INTERPRET="${TRITON_INTERPRET:-1}"
live_step pytest "Python tests (~17 min on 2 cores)" pytest -q tests "$@"
# The same wheel beside a second torch release (the stable ABI's promise): its op tests there.
source "$repo/scripts/test_torch_range.sh"
step_summary
