"""The ``cycleisp-fast train`` command: a short demo run, stop and resume, the progress bar, and bad input."""

from __future__ import annotations

import argparse
import re

import pytest

from cycleisp_fast import cli
from cycleisp_fast.commands import train as train_command
from cycleisp_fast.training import load_checkpoint, load_config, read_log

QUICK = [
    "--set",
    "steps=3",
    "--set",
    "batch_size=2",
    "--set",
    "patch_size=32",
    "--set",
    "model.n_feats=8",
    "--set",
    "log_every=1",
    "--set",
    "val.count=2",
    "--set",
    "val.patch_size=32",
]
"""The demo config made tiny: 3 steps of two 32x32 patches."""


pytestmark = pytest.mark.usefixtures("one_thread")


def train_main(argv: list[str]) -> int:
    """The command through its own parser, as the CLI builds it."""
    parser = argparse.ArgumentParser(prog="cycleisp-fast train")
    train_command.add_arguments(parser)
    args = parser.parse_args(argv)
    return train_command.run(args, parser)


def test_the_demo_trains_and_reports_its_validation_psnr(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["train", "--config", "demo", "--out", str(out), "--device", "cpu", *QUICK]) == 0
    printed = capsys.readouterr().out
    for step in (1, 2, 3):
        assert re.search(rf"^step {step}/3  loss \d\.\d+  lr \S+  [\d.]+ patches/s$", printed, re.M), printed
    match = re.search(
        r"^validation at step 3: psnr ([\d.]+) dB \(noisy input ([\d.]+) dB, ([+-][\d.]+) dB\), "
        r"ssim (0\.\d{4}) \(noisy input (0\.\d{4})\)$",
        printed,
        re.M,
    )
    assert match, printed
    psnr, psnr_input, gain, ssim, ssim_input = map(float, match.groups())
    assert gain == pytest.approx(psnr - psnr_input, abs=0.011)
    validation = [r for r in read_log(out) if "val_psnr" in r]
    assert validation[-1]["val_psnr"] == pytest.approx(psnr, abs=0.005)
    assert validation[-1]["val_ssim"] == pytest.approx(ssim, abs=5e-5)
    assert validation[-1]["val_ssim_input"] == pytest.approx(ssim_input, abs=5e-5)
    assert f"checkpoint: {out / 'last.pt'}" in printed
    overrides = [QUICK[i + 1] for i in range(0, len(QUICK), 2)]
    expected = load_config("demo", overrides)
    assert load_config(out / "config.toml") == expected == load_checkpoint(out / "last.pt")["config"]


def test_stop_then_resume_from_the_run_folder_alone(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--config", "demo", "--out", str(out), "--stop-after", "1", *QUICK]) == 0
    first = capsys.readouterr().out
    assert "validation at step" not in first and load_checkpoint(out / "last.pt")["step"] == 1
    assert train_main(["--resume", "--out", str(out)]) == 0  # the config comes from out/config.toml
    assert "validation at step 3" in capsys.readouterr().out
    assert load_checkpoint(out / "last.pt")["step"] == 3
    assert [r["step"] for r in read_log(out) if "loss" in r] == [1, 2, 3]


def test_the_progress_bar_shows_loss_and_throughput(tmp_path, capsys):
    assert train_main(["--config", "demo", "--out", str(tmp_path / "run"), "--progress", *QUICK]) == 0
    captured = capsys.readouterr()
    assert re.search(r"3/3 .*loss=\d\.\d+, patches_s=[\d.]+", captured.err), captured.err
    assert "step 1/3  loss" not in captured.out  # the bar replaces the log lines


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "--config is required"),
        (["--config", "demo", "--set", "model.n_fets=3"], "unknown config key 'model.n_fets'.*did you mean 'n_feats'"),
        (["--config", "demo", "--set", "steps=many"], "'steps'.*must be int, got 'many'"),
        (["--config", "no-such-recipe"], "config 'no-such-recipe': no such file"),
        (["--config", "demo", "--stop-after", "0"], "--stop-after must be a step in 1..3000"),
        (["--config", "demo", "--device", "tpu"], "device must be auto, cpu, cuda"),
        (["--config", "demo", "--set", "data.images=/no/such/folder"], "image folder not found: /no/such/folder"),
        (["--resume"], "--resume without --config needs .*config.toml"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--out", str(tmp_path / "run"), *argv])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err), message


def test_a_used_run_folder_needs_resume_and_the_same_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--config", "demo", "--out", str(out), "--stop-after", "1", *QUICK]) == 0
    for argv, message in [
        ([], "already holds a run"),
        (["--resume", "--set", "lr=0.1"], r"config differs.*lr: 0.002 -> 0.1"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            train_main(["--config", "demo", "--out", str(out), *QUICK, *argv])
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err), message


def test_plot_draws_the_curves_of_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--config", "demo", "--out", str(out), "--set", "val_every=1", *QUICK]) == 0
    assert train_main(["--plot", str(out)]) == 0
    assert f"wrote {out / 'curves.png'}" in capsys.readouterr().out
    from PIL import Image

    with Image.open(out / "curves.png") as image:
        assert image.format == "PNG" and image.size == (1760, 396)  # loss, lr, validation psnr and ssim
        pixels = image.convert("L").getextrema()
    assert pixels[0] < 100 < pixels[1]  # lines and text on a light background, not a blank image


def test_plot_and_out_errors_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--plot", str(tmp_path)])
    assert "has no log.jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["--config", "demo"])
    assert "--out is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["--config", "demo", "--out", str(tmp_path / "r"), "--auto-resume", "--resume"])
    assert "leave out --resume" in capsys.readouterr().err
