#!/usr/bin/env bash
# The main job on a fresh machine: set up, check every backend against the reference on this machine, run the
# kernel benchmarks on their embedded default sizes (table on stdout, CSV + PNG in bench_results/), synthesize
# noisy/clean pairs from the embedded sample photos (demo_results/pairs/), then train the tiny demo denoiser on
# the CPU for a few minutes and print its PSNR gain over the noisy input (demo_results/train/).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$repo"
cycleisp-fast selftest
cycleisp-fast bench "$@"
cycleisp-fast synth -o demo_results/pairs --max-size 256
cycleisp-fast train --config demo --out demo_results/train
