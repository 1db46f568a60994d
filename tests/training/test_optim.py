"""Warm-up, AdamW / weight decay, the weight average (EMA) and clean stops on SIGTERM / SIGUSR1: each against a
hand computation or an uninterrupted run."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from tiny_runs import tiny_config

from cycleisp_fast.pipelines.denoisers import load_denoiser
from cycleisp_fast.training import (
    CHECKPOINT_NAME,
    ConfigError,
    WeightAverage,
    load_checkpoint,
    lr_factor,
    make_optimizer,
    read_log,
    resolve_config,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_warmup_is_linear_then_the_cosine_spans_the_rest():
    config = resolve_config({"task": "denoise-srgb", "steps": 20, "lr": 1e-3, "min_lr": 0.0, "warmup_steps": 4})
    assert [lr_factor(step, config) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    for step in range(4, 21):
        assert lr_factor(step, config) == pytest.approx(0.5 * (1 + math.cos(math.pi * (step - 4) / 16)), abs=1e-12)
    assert lr_factor(2, {**config, "lr_schedule": "constant"}) == 0.75
    assert lr_factor(9, {**config, "lr_schedule": "constant"}) == 1.0


def test_adamw_decays_decoupled_and_adam_through_the_gradient():
    base = {"lr": 0.1, "weight_decay": 0.5}
    weights = {}
    for name in ("adam", "adamw"):
        parameter = torch.nn.Parameter(torch.tensor([2.0, -4.0]))
        optimizer = make_optimizer([parameter], {**base, "optimizer": name})
        parameter.grad = torch.zeros(2)  # no loss gradient: only the decay acts
        optimizer.step()
        weights[name] = parameter.detach()
    # AdamW: p <- p - lr * wd * p, then Adam's step of a zero gradient (nothing)
    torch.testing.assert_close(weights["adamw"], torch.tensor([2.0, -4.0]) * (1 - 0.1 * 0.5))
    # Adam: the decay is a gradient wd * p, normalised by Adam's first step to lr * sign
    torch.testing.assert_close(weights["adam"], torch.tensor([2.0 - 0.1, -4.0 + 0.1]), atol=1e-6, rtol=0)


def test_weight_average_follows_its_formula_and_applied_restores():
    network = torch.nn.Linear(2, 1)
    history = [network.weight.detach().clone()]
    average = WeightAverage(network, 0.9)
    for value in (1.0, 3.0, -2.0):
        with torch.no_grad():
            network.weight.fill_(value)
        average.update(network)
        history.append(network.weight.detach().clone())
    expected = history[0]
    for weights in history[1:]:
        expected = 0.9 * expected + 0.1 * weights
    torch.testing.assert_close(average.state_dict()["weight"], expected)
    with average.applied(network):
        torch.testing.assert_close(network.weight, expected)
    assert torch.equal(network.weight, history[-1])
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        WeightAverage(network, 1.0)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("ema_decay", 1.0, "must be < 1"),
        ("ema_decay", -0.1, "must be >= 0"),
        ("weight_decay", -1e-4, "must be >= 0"),
        ("warmup_steps", 10, "must be shorter than the run"),
        ("optimizer", "sgd", "must be one of"),
    ],
)
def test_bad_optimisation_keys_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=f"{key}.*{message}"):
        resolve_config({"task": "denoise-srgb", "steps": 10, key: value})


def test_ema_run_resumes_bit_for_bit_and_denoise_loads_the_average(tmp_path, image_folder):
    config = tiny_config(
        "denoise-srgb", image_folder, steps=4, ema_decay=0.5, optimizer="adamw", weight_decay=1e-2, warmup_steps=2
    )
    straight = train(config, tmp_path / "straight", device="cpu", progress=False)
    train(config, tmp_path / "interrupted", device="cpu", progress=False, stop_after=2)
    resumed = train(config, tmp_path / "interrupted", device="cpu", progress=False, resume=True)
    expected, got = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for field in ("state_dict", "ema_state_dict"):
        for key, value in expected[field].items():
            assert torch.equal(got[field][key], value), (field, key)
    assert any(not torch.equal(expected["ema_state_dict"][k], v) for k, v in expected["state_dict"].items())
    model = load_denoiser("cycleisp-srgb", straight.checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected["ema_state_dict"][key]), key
    assert resumed.metrics == straight.metrics  # validated on the average, in both


def _log_records(run_dir) -> int:
    try:
        return len(read_log(run_dir))
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_stop_signal_checkpoints_and_auto_resume_continues(tmp_path, image_folder, signal_number):
    run = tmp_path / "run"
    common = ["--config", "demo", "--out", str(run), "--device", "cpu", "--set", f"data.images={image_folder}"]
    common += ["--set", "steps=400", "--set", "patch_size=32", "--set", "batch_size=1", "--set", "log_every=1"]
    common += ["--set", "val.count=0", "--set", "save_every=0", "--no-progress"]
    command = [sys.executable, "-m", "cycleisp_fast", "train", *common, "--auto-resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while _log_records(run) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    name = signal.Signals(signal_number).name
    assert f"stopped by {name}" in out
    stopped_at = load_checkpoint(run / CHECKPOINT_NAME)["step"]
    assert 3 <= stopped_at < 400
    again = subprocess.run(
        command + ["--stop-after", str(stopped_at + 2)], capture_output=True, text=True, env=env, timeout=240
    )
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(run / CHECKPOINT_NAME)["step"] == stopped_at + 2
    steps = [record["step"] for record in read_log(run) if "loss" in record]
    assert steps == list(range(1, stopped_at + 3))  # nothing lost, nothing repeated


def test_tensorboard_events_hold_the_logged_values_and_a_resume_drops_the_later_ones(tmp_path, image_folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config("denoise-srgb", image_folder, steps=4, val_every=2, tensorboard=True)
    run = tmp_path / "run"
    train(config, run, device="cpu", progress=False, stop_after=2)
    shutil.copy(run / CHECKPOINT_NAME, tmp_path / "step2.pt")
    train(config, run, device="cpu", progress=False, resume=True)  # steps 3 and 4 logged ...
    shutil.copy(tmp_path / "step2.pt", run / CHECKPOINT_NAME)  # ... then lost, as in a crash before the save
    result = train(config, run, device="cpu", progress=False, resume=True)
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    records = read_log(result.run_dir)
    losses = {r["step"]: r["loss"] for r in records if "loss" in r}
    scalars = events.Scalars("train/loss")
    assert [event.step for event in scalars] == sorted(losses) == [1, 2, 3, 4]  # the lost steps once, not twice
    logged = {event.step: event.value for event in scalars}
    for step, loss in losses.items():
        assert logged[step] == pytest.approx(loss, rel=1e-6)  # event files store float32
    psnr = {r["step"]: r["val_psnr"] for r in records if "val_psnr" in r}
    assert {e.step: pytest.approx(e.value, rel=1e-6) for e in events.Scalars("val/psnr")} == psnr
    (preview, *_) = events.Images("val/preview")
    assert preview.width == 3 * 32 and preview.height == 2 * 32  # noisy | denoised | clean, the 2 images stacked


def test_cosine_restarts_every_period_and_bad_periods_are_config_errors():
    config = resolve_config(
        {"task": "denoise-srgb", "steps": 22, "lr": 1.0, "min_lr": 0.0, "warmup_steps": 2, "restart_every": 10}
    )
    for step in range(2, 22):
        expected = 0.5 * (1 + math.cos(math.pi * ((step - 2) % 10) / 10))
        assert lr_factor(step, config) == pytest.approx(expected, abs=1e-12), step
    assert lr_factor(12, config) == 1.0 and lr_factor(11, config) < 0.03  # back up at the restart
    for bad in ({"restart_every": 20}, {"restart_every": 5, "lr_schedule": "constant"}):
        with pytest.raises(ConfigError, match="restart_every"):
            resolve_config({"task": "denoise-srgb", "steps": 22, "warmup_steps": 2, **bad})


def test_a_patch_schedule_grows_the_crops_at_its_steps(tmp_path, image_folder):
    from cycleisp_fast.training import Distributed, StepBatches, make_task

    config = tiny_config("denoise-srgb", image_folder, steps=4, patch_schedule="2:36, 3:40")
    task = make_task(config, torch.device("cpu"))
    place = Distributed(rank=1, world_size=2, local_rank=1)
    dataset = task.dataset(config["steps"] * place.world_size * config["batch_size"])
    sizes = [{tuple(dataset[i].shape) for i in batch} for batch in StepBatches(0, 4, config["batch_size"], place)]
    assert sizes == [{(3, 32, 32)}, {(3, 32, 32)}, {(3, 36, 36)}, {(3, 40, 40)}]
    small = tiny_config("denoise-srgb", image_folder, steps=4)
    plain = make_task(small, torch.device("cpu")).dataset(16)
    assert torch.equal(dataset[3], plain[3])  # before the first change: the crops of patch_size
    result = train(config, tmp_path / "run", device="cpu", progress=False)
    assert result.step == 4


@pytest.mark.parametrize(
    "schedule, message",
    [("2-48", "STEP:SIZE"), ("3:48,2:64", "rising steps"), ("4:48", "before steps"), ("2:49", "multiple of 2")],
)
def test_bad_patch_schedules_are_config_errors(image_folder, schedule, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config("denoise-srgb", image_folder, steps=4, patch_schedule=schedule)


def test_a_signal_during_a_checkpoint_write_leaves_a_resumable_run(tmp_path, image_folder, monkeypatch):
    from cycleisp_fast.training import loop

    write = loop.save_torch

    def write_while_signalled(state, path):
        if path.name == CHECKPOINT_NAME and state["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the checkpoint of step 2 is being written
        return write(state, path)

    monkeypatch.setattr(loop, "save_torch", write_while_signalled)
    config = tiny_config("denoise-srgb", image_folder, steps=6, save_every=2)
    stopped = train(config, tmp_path / "run", device="cpu", progress=False)
    assert stopped.stopped_by == "SIGTERM" and stopped.step == 3  # the write finished; the next step stopped
    assert load_checkpoint(stopped.checkpoint)["step"] == 3
    monkeypatch.undo()
    assert train(config, tmp_path / "run", device="cpu", progress=False, resume=True).step == 6


def test_validation_patches_smaller_than_the_ssim_window_get_psnr_only(tmp_path, image_folder):
    config = tiny_config("denoise-srgb", image_folder, val={"count": 2, "patch_size": 8})
    result = train(config, tmp_path / "run", device="cpu", progress=False)
    assert set(result.metrics) == {"psnr", "psnr_input"}
