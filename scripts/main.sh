#!/usr/bin/env bash
# The main job on a fresh machine: set up, check every backend against the reference on this machine,
# then run the kernel benchmarks on their embedded default sizes (table on stdout, CSV + PNG in bench_results/).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$repo"
cycleisp-fast selftest
cycleisp-fast bench "$@"
