"""Throughput of `cycleisp-fast synth --format webdataset` with 1 and 2 processes (torchrun) on the CPU, and the size on
disk of clean-only against clean+noisy shards; prints a Markdown table (the README's).

    python scripts/bench_shards.py [--images 4] [--repeat 64] [--size 512] [--repeats 3]

Inputs: the embedded sample photographs resized to SIZE x SIZE (so every pair has exactly that size), written as
8-bit PNGs to a temporary folder; each configuration runs `--repeats` times and the median wall time is reported
(whole processes: the start-up of Python and torch is included, as a user meets it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_inputs(folder: Path, count: int, size: int) -> None:
    """Writes ``count`` sample photographs resized to ``size x size`` into ``folder``."""
    import torch.nn.functional as F

    from cycleisp_fast.data.images import write_image
    from cycleisp_fast.data.samples import sample_images

    images = list(sample_images().values())
    for index in range(count):
        image = images[index % len(images)][None]
        write_image(folder / f"photo{index}.png", F.interpolate(image, size=(size, size), mode="area")[0])


def run(command: list[str], cwd: Path, threads: int) -> float:
    """The wall time of one run of ``command`` (exits naming it when it fails)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout}{completed.stderr}")
    return elapsed


def main() -> None:
    """Runs every configuration and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=64, help="noisy samples per image")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (median reported)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    pairs = args.images * args.repeat
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "in").mkdir()
        make_inputs(scratch / "in", args.images, args.size)
        synth = ["synth", os.fspath(scratch / "in"), "--format", "webdataset", "--repeat", str(args.repeat)]
        synth += ["--shard-size", "8"]
        configs = {
            "1 process": ([sys.executable, "-m", "cycleisp_fast"], cores),
            "2 processes (torchrun)": (
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
                + ["-m", "cycleisp_fast"],
                max(1, cores // 2),
            ),
        }
        rows = []
        for extra, content in (([], "clean only"), (["--with-noisy"], "clean + noisy")):
            for name, (launcher, threads) in configs.items():
                times = []
                for attempt in range(args.repeats):
                    out = scratch / f"out{len(rows)}_{attempt}"
                    times.append(run(launcher + synth + ["-o", os.fspath(out)] + extra, scratch, threads))
                size = sum(path.stat().st_size for path in out.glob("[0-9]*.tar"))
                median = statistics.median(times)
                rows.append((content, name, median, pairs / median, size))
    print(f"{pairs} pairs of {args.size}x{args.size}, {cores} CPU cores, median of {args.repeats} runs\n")
    print("| shards | processes | wall s | pairs/s | vs 1 process | MB on disk | bytes per pair |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for content, name, median, rate, size in rows:
        single = next(r for r in rows if r[0] == content and r[1] == "1 process")
        print(
            f"| {content} | {name} | {median:.1f} | {rate:.2f} | {rate / single[3]:.2f}x | {size / 2**20:.1f} | "
            f"{size // pairs:,} |"
        )


if __name__ == "__main__":
    main()
