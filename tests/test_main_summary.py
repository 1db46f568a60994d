"""scripts/main_summary.py, the end of the main job: its headline numbers from the files the job writes, and the
noisy | denoised | clean picture."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from cycleisp_fast.bench.report import COLUMNS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "main_summary.py"


@pytest.fixture(scope="module")
def summary():
    spec = importlib.util.spec_from_file_location("main_summary", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_bench(path, ratios):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for k, (eager, compiled) in enumerate(ratios):
            row = dict.fromkeys(COLUMNS, "")
            row.update(case=f"op{k}", provider="native", speedup_vs_eager=eager, speedup_vs_compile=compiled)
            writer.writerow(row)
            writer.writerow({**row, "provider": "eager", "speedup_vs_eager": 1.0})


def test_bench_headline_is_the_geometric_mean_speedup(summary, tmp_path):
    _write_bench(tmp_path / "b.csv", [(2.0, 0.5), (8.0, 2.0), (4.0, "")])
    line = summary.bench_headline(tmp_path / "b.csv")
    assert line.startswith("native: 4.00x eager (3/3 timings faster), 1.00x torch.compile (1/2 timings faster)")
    assert summary.bench_headline(tmp_path / "missing.csv") is None


def test_psnr_matches_scikit_image(summary):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 9, clean.shape), 0, 255).astype(np.uint8)
    assert summary.psnr(noisy, clean) == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=255))


def test_write_summary_reports_every_output_and_draws_the_pair(summary, tmp_path):
    (tmp_path / "build" / "logs").mkdir(parents=True)
    (tmp_path / "build" / "logs" / "selftest.log").write_text("| table |\nselftest: PASS, 12/12 checks passed\n")
    (tmp_path / "bench_results").mkdir()
    _write_bench(tmp_path / "bench_results" / "bench_cpu.csv", [(3.0, 1.5)])
    run = tmp_path / "demo_results" / "train"
    run.mkdir(parents=True)
    records = [{"step": 1, "loss": 0.1}, {"step": 2, "val_psnr_input": 20.0, "val_psnr": 27.5}]
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for folder, image in [("pairs/clean", clean), ("pairs/noisy", 255 - clean), ("denoised", clean)]:
        (tmp_path / "demo_results" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "demo_results" / folder / "a.png")
    text = "\n".join(summary.write_summary(tmp_path, None))
    assert "selftest: PASS, 12/12 checks passed" in text
    assert "native: 3.00x eager" in text and "20.00 dB noisy -> 27.50 dB denoised (+7.50 dB)" in text
    picture = Image.open(tmp_path / "demo_results" / "summary.png")
    assert picture.size == (3 * 30 + 2 * summary.GAP, 20 + summary.LABEL_HEIGHT)
    panels = np.asarray(picture)[summary.LABEL_HEIGHT :]
    assert np.array_equal(panels[:, :30], 255 - clean) and np.array_equal(panels[:, -30:], clean)


def test_side_by_side_refuses_images_of_different_sizes(summary):
    small, large = Image.new("RGB", (4, 4)), Image.new("RGB", (4, 6))
    with pytest.raises(ValueError, match="differ in size"):
        summary.side_by_side(small, small, large)
