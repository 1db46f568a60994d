"""The training loop: the learning-rate schedule and each step's patches, an overfit case, bit-exact resume,
run-folder refusals and mixed precision on the CPU."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_runs import tiny_config

from cycleisp_fast.data.images import write_image
from cycleisp_fast.training import (
    Distributed,
    RunFolderError,
    StepBatches,
    load_checkpoint,
    lr_factor,
    read_log,
    resolve_config,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------- schedule and data order


def test_cosine_schedule_follows_the_formula():
    config = resolve_config({"task": "denoise-srgb", "steps": 10, "lr": 1e-3, "min_lr": 1e-5})
    for step in range(11):
        expected = 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * step / 10)) / 2
        assert lr_factor(step, config) * 1e-3 == pytest.approx(expected, rel=1e-12)
    assert lr_factor(7, {**config, "lr_schedule": "constant"}) == 1.0


def test_each_step_and_rank_draws_its_own_patches():
    seen = []
    for rank in range(3):
        batches = list(StepBatches(2, 5, 4, Distributed(rank, 3, rank)))
        assert len(batches) == 3 and all(len(b) == 4 for b in batches)
        seen += [i for batch in batches for i in batch]
    assert sorted(seen) == list(range(2 * 3 * 4, 5 * 3 * 4))  # steps 2..4 of all ranks, each item once


# ------------------------------------------------------------------------------------------------- learning


def test_loss_decreases_when_overfitting_one_image(tmp_path):
    folder = tmp_path / "one"
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    write_image(folder / "flat.png", torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")[0])
    config = tiny_config(
        "denoise-srgb",
        folder,
        steps=60,
        lr=3e-3,
        lr_schedule="constant",
        log_every=10,
        noise={"levels": "cbdnet_uniform"},
        val={"count": 4, "patch_size": 32},
    )
    result = train(config, tmp_path / "run", device="cpu", progress=False)
    losses = [r["loss"] for r in read_log(result.run_dir) if "loss" in r]
    assert losses[-1] < 0.6 * losses[0], losses
    assert result.metrics["psnr"] > result.metrics["psnr_input"] + 1, result.metrics


# ---------------------------------------------------------------------------------------------------- resume


def state_of(path):
    checkpoint = load_checkpoint(path)
    return checkpoint["state_dict"], checkpoint["optimizer"]["state"]


def test_two_steps_then_resume_two_equals_four_steps_bit_for_bit(tmp_path, image_folder):
    config = tiny_config("denoise-raw", image_folder, steps=4, log_every=1)
    straight = train(config, tmp_path / "straight", device="cpu", progress=False)
    first = train(config, tmp_path / "interrupted", device="cpu", progress=False, stop_after=2)
    assert first.step == 2 and load_checkpoint(first.checkpoint)["step"] == 2
    with open(first.run_dir / "log.jsonl", "a") as log:  # written after the checkpoint, then a torn line
        log.write('{"step": 3, "loss": 1.0}\n{"step": 4, "lo')
    resumed = train(config, tmp_path / "interrupted", device="cpu", progress=False, resume=True)
    assert resumed.step == 4
    weights, optimizer = state_of(resumed.checkpoint)
    expected_weights, expected_optimizer = state_of(straight.checkpoint)
    for key, value in expected_weights.items():
        assert torch.equal(weights[key], value), key
    for index, state in expected_optimizer.items():
        for name, value in state.items():
            assert torch.equal(optimizer[index][name], value), (index, name)
    losses = {r["step"]: r["loss"] for r in read_log(resumed.run_dir) if "loss" in r}
    assert losses == {r["step"]: r["loss"] for r in read_log(straight.run_dir) if "loss" in r}
    assert resumed.metrics == straight.metrics


def test_resume_refuses_another_config_and_fresh_runs_refuse_a_used_folder(tmp_path, image_folder):
    config = tiny_config("denoise-srgb", image_folder, steps=3)
    with pytest.raises(RunFolderError, match="nothing to resume"):
        train(config, tmp_path / "run", device="cpu", progress=False, resume=True)
    train(config, tmp_path / "run", device="cpu", progress=False, stop_after=1)
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(config, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(RunFolderError, match=r"config differs.*lr: 0.0002 -> 0.001.*model.n_feats: 8 -> 16"):
        train(
            {**config, "lr": 1e-3, "model": {**config["model"], "n_feats": 16}},
            tmp_path / "run",
            device="cpu",
            progress=False,
            resume=True,
        )
    resumed = train({**config, "log_every": 2}, tmp_path / "run", device="cpu", progress=False, resume=True)
    assert resumed.step == 3  # the logging cadence may change
    with pytest.raises(RunFolderError, match="already at step 3"):
        train(config, tmp_path / "run", device="cpu", progress=False, resume=True)


def test_mixed_precision_on_the_cpu_warns_and_trains_in_float32(tmp_path, image_folder):
    config = tiny_config("denoise-srgb", image_folder, amp="bf16", steps=1)
    with pytest.warns(UserWarning, match="amp = 'bf16' runs on CUDA only"):
        result = train(config, tmp_path / "run", device="cpu", progress=False)
    assert all(p.dtype == torch.float32 for p in result.network.parameters())
