"""The end of the main job (scripts/main.sh): where its outputs are, their headline numbers, and one picture.

Reads what the job wrote: the selftest's last line (build/logs/selftest.log), the kernel benchmark's CSV
(bench_results/bench_<device>.csv), the demo run's validation log (demo_results/train/log.jsonl) and one synthesized
pair with its denoised image (demo_results/pairs/{noisy,clean}/NAME.png, demo_results/denoised/NAME.png); writes
demo_results/summary.png (noisy | denoised | clean, side by side, with their PSNRs) and prints the summary.

    python scripts/main_summary.py [--root .] [--name NAME]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GAP = 8  # pixels between the panels
LABEL_HEIGHT = 22


def selftest_headline(log: Path) -> str | None:
    """The selftest's verdict line (``selftest: PASS, 1341/1341 checks passed``), or None without a log."""
    if not log.is_file():
        return None
    lines = [line.strip() for line in log.read_text().splitlines() if line.startswith("selftest:")]
    return lines[-1] if lines else None


def bench_headline(csv_path: Path, provider: str = "native") -> str | None:
    """The geometric mean of ``provider``'s speedup over eager PyTorch and over ``torch.compile`` across the timed
    cases, with how many cases it beats each in, e.g. ``native: 4.1x eager (31/32 cases), 2.2x torch.compile
    (28/32)``; None without a CSV or without timings of ``provider``."""
    if not csv_path.is_file():
        return None
    with open(csv_path, newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["provider"] == provider]
    parts = []
    for column, baseline in (("speedup_vs_eager", "eager"), ("speedup_vs_compile", "torch.compile")):
        ratios = [float(row[column]) for row in rows if row[column]]
        if ratios:
            mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
            wins = sum(ratio > 1 for ratio in ratios)
            parts.append(f"{mean:.2f}x {baseline} ({wins}/{len(ratios)} timings faster)")
    return f"{provider}: " + ", ".join(parts) + " (geometric means)" if parts else None


def train_headline(run: Path) -> tuple[float, float] | None:
    """The last validation ``(val_psnr_input, val_psnr)`` of a training run's ``log.jsonl``, or None."""
    log = run / "log.jsonl"
    if not log.is_file():
        return None
    last = None
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if "val_psnr" in record and "val_psnr_input" in record:
            last = (float(record["val_psnr_input"]), float(record["val_psnr"]))
    return last


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255)."""
    mse = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def side_by_side(noisy: Image.Image, denoised: Image.Image, clean: Image.Image) -> Image.Image:
    """The three images side by side (noisy, denoised, clean) on a white canvas, each labelled with its PSNR."""
    panels = [image.convert("RGB") for image in (noisy, denoised, clean)]
    if len({panel.size for panel in panels}) != 1:
        raise ValueError(f"the three images differ in size: {[panel.size for panel in panels]}")
    width, height = panels[0].size
    reference = np.asarray(panels[2])
    labels = [
        f"noisy  {psnr(np.asarray(panels[0]), reference):.2f} dB",
        f"denoised  {psnr(np.asarray(panels[1]), reference):.2f} dB",
        "clean",
    ]
    canvas = Image.new("RGB", (3 * width + 2 * GAP, height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)  # Pillow's own FreeType font (the bitmap one where FreeType is missing)
    for k, (panel, label) in enumerate(zip(panels, labels)):
        x = k * (width + GAP)
        canvas.paste(panel, (x, LABEL_HEIGHT))
        draw.text((x + 4, 2), label, fill="black", font=font)
    return canvas


def write_summary(root: Path, name: str | None) -> list[str]:
    """Writes ``demo_results/summary.png`` when the pair and its denoised image exist; returns the summary lines."""
    results = root / "demo_results"
    lines = ["", "Summary of the main job"]
    selftest = selftest_headline(root / "build" / "logs" / "selftest.log")
    lines.append(f"  selftest        {selftest or 'not run'}")
    bench_csv = next(iter(sorted((root / "bench_results").glob("bench_*.csv"))), None)
    bench = bench_headline(bench_csv) if bench_csv else None
    lines.append(f"  kernels         {bench or 'no native timings'}")
    if bench_csv:
        lines.append(f"                  {bench_csv} and {bench_csv.with_suffix('.png')} (one panel per op family)")
    trained = train_headline(results / "train")
    if trained:
        gain = trained[1] - trained[0]
        lines.append(
            f"  demo denoiser   validation PSNR {trained[0]:.2f} dB noisy -> {trained[1]:.2f} dB denoised "
            f"({gain:+.2f} dB)  ->  {results / 'train'}"
        )
        if (results / "train" / "curves.png").is_file():
            lines.append(f"                  {results / 'train' / 'curves.png'} (loss, learning rate, validation)")
    lines.append(f"  pairs           {results / 'pairs'} (clean/, noisy/, raw/)")
    noisy_dir = results / "pairs" / "noisy"
    names = [name] if name else sorted(path.name for path in noisy_dir.glob("*.png"))[:1]
    denoised = results / "denoised"
    if names and (denoised / names[0]).is_file():
        picture = side_by_side(
            Image.open(noisy_dir / names[0]),
            Image.open(denoised / names[0]),
            Image.open(results / "pairs" / "clean" / names[0]),
        )
        picture.save(results / "summary.png")
        lines.append(f"  picture         {results / 'summary.png'} (noisy | denoised | clean: {names[0]})")
    return lines


def main() -> None:
    """Prints the summary of the main job's outputs under ``--root`` and writes its picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository the main job ran in")
    parser.add_argument("--name", help="the pair to show (a file name in demo_results/pairs/noisy/)")
    args = parser.parse_args()
    print("\n".join(write_summary(args.root, args.name)))


if __name__ == "__main__":
    main()
