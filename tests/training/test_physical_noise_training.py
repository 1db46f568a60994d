"""Training on physics-based RAW noise (camera profiles): the denoise-raw recipe on ELD's Sony A7S2 noise, and the
config checks of noise.levels / noise.model / noise.ratio_min / noise.ratio_max."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_runs import run_task, tiny_config

from cycleisp_fast.noise import PhysicalNoiseModel
from cycleisp_fast.training import ConfigError, make_task

pytestmark = pytest.mark.usefixtures("one_thread")


def test_denoise_raw_trains_on_profile_noise_and_checks_its_config(tmp_path, image_folder):
    config = tiny_config(
        "denoise-raw", image_folder, noise={"levels": "eld:SonyA7S2", "ratio_min": 10.0, "ratio_max": 20.0}
    )
    assert config["noise"]["model"] == "physical"
    task = make_task(config, torch.device("cpu"))
    assert isinstance(task.synthesizer.noise, PhysicalNoiseModel) and task.synthesizer.noise.ratio == (10.0, 20.0)
    result, checkpoint = run_task(tmp_path, config)
    assert checkpoint["config"]["noise"]["levels"] == "eld:SonyA7S2" and math.isfinite(result.metrics["psnr"])
    for noise, match in (
        ({"levels": "eld:SonyA7S2", "model": "poisson_gaussian"}, "needs model 'physical'"),
        ({"levels": "cycleisp_dnd", "model": "physical"}, "'physical' needs camera profiles"),
        ({"levels": "eld:Nope"}, "unknown noise profile"),
        ({"levels": "eld:SonyA7S2", "ratio_min": 30.0, "ratio_max": 20.0}, "ratio must have low <= high"),
        ({"levels": "gaussian_blur"}, "config key 'noise.levels'"),
    ):
        with pytest.raises(ConfigError, match=match):
            tiny_config("denoise-raw", image_folder, noise=noise)
