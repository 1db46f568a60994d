"""Tiny training runs for the tests of tests/training: a resolved config of any task small enough for a test
(2 steps of 2 patches of 32x32, tiny models) and a run of it on the CPU."""

from __future__ import annotations

import os

from cycleisp_fast.training import load_checkpoint, resolve_config, train

TINY_DENOISER = {"n_feats": 8, "num_rrg": 1, "num_dab": 1, "reduction": 4}


def tiny_config(task: str, images, **top) -> dict:
    """A resolved config of ``task`` small enough for a test: 2 steps of 2 patches of 32x32, tiny models."""
    raw = {
        "task": task,
        "steps": 2,
        "batch_size": 2,
        "patch_size": 32,
        "log_every": 1,
        "save_every": 0,
        "val_every": 0,
        "val": {"count": 2, "patch_size": 32},
    }
    if task.startswith("denoise"):
        raw["model"] = dict(TINY_DENOISER)
    if task != "aindnet-transfer":
        raw["data"] = {"images": os.fspath(images)}
    if task == "cycleisp-joint":
        raw["loss"] = {"beta": 0.5}
    raw.update(top)
    return resolve_config(raw)


def run_task(tmp_path, config, **kwargs):
    result = train(config, tmp_path / "run", device="cpu", progress=False, **kwargs)
    checkpoint = load_checkpoint(result.checkpoint)
    return result, checkpoint
