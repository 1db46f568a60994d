#!/usr/bin/env bash
# The main job on a fresh machine: set up, check every backend against the reference on this machine, run the
# kernel benchmarks on their embedded default sizes (table on stdout, CSV + PNG in bench_results/), synthesize
# noisy/clean pairs from the embedded sample photos (demo_results/pairs/), train the tiny demo denoiser on the CPU
# for a few minutes and denoise one pair with it (demo_results/train/, demo_results/denoised/), then print a summary
# (where the outputs are, the headline numbers) and write demo_results/summary.png (noisy | denoised | clean).
# Each step prints its time; full logs in build/logs/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$repo"
live_step selftest "Check every backend against the reference (selftest)" cycleisp-fast selftest
live_step bench "Kernel benchmarks at the embedded default sizes (~10 min)" cycleisp-fast bench "$@"
live_step synth "Synthesize noisy/clean pairs from the embedded photos" \
  cycleisp-fast synth -o demo_results/pairs --max-size 256
live_step train "Train the tiny demo denoiser on the CPU (~3 min)" \
  cycleisp-fast train --config demo --out demo_results/train
step curves "Plot the demo run's curves" cycleisp-fast train --plot demo_results/train
first_pair="$(ls demo_results/pairs/noisy/*.png | head -n 1)"
step denoise "Denoise $(basename "$first_pair") with the demo denoiser" \
  cycleisp-fast denoise "$first_pair" -o demo_results/denoised --model cycleisp-srgb \
  --weights demo_results/train/last.pt
python scripts/main_summary.py --root "$repo" --name "$(basename "$first_pair")"
step_summary
