"""One short run of every task: checkpoints the denoise command loads, validation metrics, AINDNet transfer,
the ISP networks' official-layout weights, init weights, data-loader workers and image-size errors."""

from __future__ import annotations

import math
import os

import pytest
import torch
from tiny_runs import TINY_DENOISER, run_task, tiny_config

from cycleisp_fast.data.images import write_image
from cycleisp_fast.models import CCM, AINDNet, Raw2Rgb, Rgb2Raw, load_official, trainable_parameters, transfer_tf
from cycleisp_fast.pipelines.denoisers import load_denoiser
from cycleisp_fast.training import CONFIG_NAME, ConfigError, load_config, read_log, train

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------- one run per task


@pytest.mark.parametrize("task, model_name", [("denoise-srgb", "cycleisp-srgb"), ("denoise-raw", "cycleisp-raw")])
def test_denoisers_train_and_their_checkpoints_load_for_denoising(tmp_path, image_folder, task, model_name):
    result, checkpoint = run_task(tmp_path, tiny_config(task, image_folder))
    assert (checkpoint["model"], checkpoint["model_kwargs"], checkpoint["step"]) == (model_name, TINY_DENOISER, 2)
    assert checkpoint["config"]["task"] == task
    model = load_denoiser(model_name, result.checkpoint)  # what the denoise and eval commands do
    for key, value in model.state_dict().items():
        assert torch.equal(value, result.network.state_dict()[key]), key
    log = read_log(result.run_dir)
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["patches_per_s"] > 0 for r in log if "loss" in r)
    validation = [r for r in log if "val_psnr" in r]
    assert len(validation) == 1 and validation[0]["step"] == 2 and result.metrics["psnr"] == validation[0]["val_psnr"]
    assert 10 < result.metrics["psnr_input"] < 60
    assert load_config(result.run_dir / CONFIG_NAME) == checkpoint["config"]


def test_validation_psnr_is_the_mean_over_patches_of_skimage_psnr(tmp_path, image_folder):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from cycleisp_fast.training import make_task

    config = tiny_config("denoise-srgb", image_folder, val={"count": 3, "patch_size": 32})
    torch.manual_seed(0)
    task = make_task(config, torch.device("cpu"))
    batches = task.validation_batches()
    assert [b["noisy"].shape[0] for b in batches] == [2, 1]  # chunks of batch_size
    metrics = {"psnr": 0.0, "psnr_input": 0.0, "ssim": 0.0, "ssim_input": 0.0}

    def skimage_ssim(image, clean):
        return structural_similarity(
            clean.numpy(),
            image.numpy(),
            data_range=1,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )

    with torch.no_grad():
        for batch in batches:
            outputs = task.network(batch["noisy"]).clamp(0, 1)
            for output, noisy, clean in zip(outputs, batch["noisy"], batch["clean"]):
                metrics["psnr"] += peak_signal_noise_ratio(clean.numpy(), output.numpy(), data_range=1) / 3
                metrics["psnr_input"] += peak_signal_noise_ratio(clean.numpy(), noisy.numpy(), data_range=1) / 3
                metrics["ssim"] += skimage_ssim(output, clean) / 3
                metrics["ssim_input"] += skimage_ssim(noisy.clamp(0, 1), clean) / 3
    result = train(config, tmp_path / "run", device="cpu", progress=False, stop_after=1)
    assert result.metrics == {}  # validation comes at the end of `steps`, not at an early stop
    from cycleisp_fast.training.loop import _validate

    torch.manual_seed(0)
    assert _validate(make_task(config, torch.device("cpu")))[0] == pytest.approx(metrics, abs=1e-6)


def test_aindnet_synthetic_then_transfer_tf_updates_only_the_transfer_parameters(tmp_path, image_folder):
    synthetic, checkpoint = run_task(tmp_path / "synthetic", tiny_config("aindnet-synthetic", image_folder))
    assert checkpoint["model"] == "aindnet" and checkpoint["model_kwargs"]["coarse_scale"] == 8
    pairs = tmp_path / "pairs"
    generator = torch.Generator().manual_seed(3)
    for index in range(2):
        clean = torch.rand(3, 40, 48, generator=generator)
        write_image(pairs / "clean" / f"p{index}.png", clean)
        write_image(pairs / "noisy" / f"p{index}.png", (clean + 0.1 * torch.randn(3, 40, 48, generator=generator)))
    config = tiny_config(
        "aindnet-transfer", None, scheme="tf", init=os.fspath(synthetic.checkpoint), data={"pairs": os.fspath(pairs)}
    )
    transfer, _ = run_task(tmp_path / "transfer", config)
    reference = AINDNet()
    transfer_tf(reference)
    trainable = {name for name, p in reference.named_parameters() if p.requires_grad}
    assert trainable_parameters(transfer.network) == trainable_parameters(reference)
    before = checkpoint["state_dict"]
    for name, value in transfer.network.state_dict().items():
        changed = not torch.equal(value, before[name])
        assert changed == (name in trainable), name
    assert 0 < transfer.metrics["psnr_input"] < 60  # validated on centre crops of the training pairs


def test_transfer_init_must_be_an_aindnet_checkpoint_of_the_same_configuration(tmp_path, image_folder):
    srgb, _ = run_task(tmp_path / "srgb", tiny_config("denoise-srgb", image_folder))
    pairs = tmp_path / "pairs"
    for kind in ("clean", "noisy"):
        write_image(pairs / kind / "p.png", torch.rand(3, 32, 32))
    config = tiny_config(
        "aindnet-transfer", None, scheme="rt", init=os.fspath(srgb.checkpoint), data={"pairs": os.fspath(pairs)}
    )
    with pytest.raises(ConfigError, match="holds a 'cycleisp-srgb' model, this task trains 'aindnet'"):
        train(config, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="'data.pairs'.*not found"):
        train(
            {**config, "data": {**config["data"], "pairs": os.fspath(tmp_path / "nowhere")}},
            tmp_path / "run",
            device="cpu",
            progress=False,
        )


@pytest.mark.parametrize(
    "task, files, metric_names",
    [
        ("rgb2raw", {"rgb2raw_joint.pth": Rgb2Raw}, {"psnr"}),
        ("raw2rgb", {"ccm_joint.pth": CCM, "raw2rgb_joint.pth": Raw2Rgb}, {"psnr"}),
        (
            "cycleisp-joint",
            {"rgb2raw_joint.pth": Rgb2Raw, "ccm_joint.pth": CCM, "raw2rgb_joint.pth": Raw2Rgb},
            {"psnr", "psnr_raw"},
        ),
    ],
)
def test_isp_tasks_train_and_export_official_layout_weights(tmp_path, image_folder, task, files, metric_names):
    result, checkpoint = run_task(tmp_path, tiny_config(task, image_folder))
    assert set(result.metrics) == metric_names and all(math.isfinite(v) for v in result.metrics.values())
    state = checkpoint["state_dict"]
    for file, network_class in files.items():
        network = load_official(network_class(), result.run_dir / file)
        prefix = file.removesuffix("_joint.pth") + "."
        for key, value in network.state_dict().items():
            assert torch.equal(value, state[prefix + key]), prefix + key
    assert sorted(p.name for p in result.run_dir.glob("*.pth")) == sorted(files)


def test_isp_weights_of_a_run_drive_the_learned_synthesizer(tmp_path, image_folder):
    joint, _ = run_task(tmp_path / "joint", tiny_config("cycleisp-joint", image_folder, steps=1))
    config = tiny_config(
        "denoise-srgb",
        image_folder,
        data={"images": os.fspath(image_folder), "synthesizer": "cycleisp", "isp_weights": os.fspath(joint.run_dir)},
    )
    assert config["noise"]["levels"] == "cycleisp_dnd"
    result, _ = run_task(tmp_path / "srgb", config)
    assert math.isfinite(result.metrics["psnr"])
    from cycleisp_fast.training import make_task

    rgb2raw = make_task(tiny_config("rgb2raw", image_folder, init=os.fspath(joint.run_dir)), torch.device("cpu"))
    exported = torch.load(joint.run_dir / "rgb2raw_joint.pth", weights_only=True)
    for key, value in rgb2raw.network.rgb2raw.state_dict().items():
        assert torch.equal(value, exported[key]), key
    with pytest.raises(ConfigError, match="'data.isp_weights': missing .*rgb2raw_joint.pth"):
        train(
            {**config, "data": {**config["data"], "isp_weights": os.fspath(image_folder)}},
            tmp_path / "other",
            device="cpu",
            progress=False,
        )


def test_init_loads_official_layout_weights_and_names_a_misfit(tmp_path, image_folder):
    from cycleisp_fast.models import DenoiseNet
    from cycleisp_fast.training import make_task

    official = DenoiseNet(raw=False, **TINY_DENOISER)
    torch.save({"state_dict": {f"module.{k}": v for k, v in official.state_dict().items()}}, tmp_path / "official.pth")
    config = tiny_config("denoise-srgb", image_folder, init=os.fspath(tmp_path / "official.pth"))
    network = make_task(config, torch.device("cpu")).network
    for key, value in official.state_dict().items():
        assert torch.equal(network.state_dict()[key], value), key
    bigger = {**config, "model": {**TINY_DENOISER, "n_feats": 12}}
    with pytest.raises(ConfigError, match="'init'.*official.pth.*wrong shapes"):
        make_task(bigger, torch.device("cpu"))
    with pytest.raises(ConfigError, match="'init'.*does not exist"):
        make_task({**config, "init": os.fspath(tmp_path / "none.pth")}, torch.device("cpu"))


def test_data_loader_workers_do_not_change_the_training(tmp_path, image_folder):
    without = train(tiny_config("denoise-srgb", image_folder), tmp_path / "w0", device="cpu", progress=False)
    config = tiny_config("denoise-srgb", image_folder, data={"images": os.fspath(image_folder), "workers": 2})
    with_workers = train(config, tmp_path / "w2", device="cpu", progress=False)
    for key, value in without.network.state_dict().items():
        assert torch.equal(with_workers.network.state_dict()[key], value), key


def test_an_image_smaller_than_the_patch_is_named(tmp_path, image_folder):
    with pytest.raises(ConfigError, match="image .*image0.png is 40x48, smaller than patch_size = 64"):
        train(tiny_config("denoise-srgb", image_folder, patch_size=64), tmp_path / "run", device="cpu", progress=False)


# ------------------------------------------------------------------------------------------- real RAW/sRGB pairs


def camera_pairs(folder, count=3, size=(48, 56)):
    """A prepared folder of pairs from a toy camera: the sRGB is a smooth random image, the RAW its RGGB mosaic of
    ``0.8 * srgb**2`` above a black level of 64 (white 1023), so that RGB2RAW has a mapping to learn."""
    from cycleisp_fast.data.raw_rgb_pairs import write_entry
    from cycleisp_fast.ops import bayer_mosaic

    generator = torch.Generator().manual_seed(0)
    for index in range(count):
        coarse = torch.rand(1, 3, size[0] // 8, size[1] // 8, generator=generator)
        srgb = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0]
        srgb = (srgb * 255).round() / 255
        linear = bayer_mosaic((0.8 * srgb**2)[None], "RGGB")[0, 0]
        mosaic = (64 + linear * (1023 - 64)).round().numpy().astype("uint16")
        meta = {
            "source": f"toy{index}.dng",
            "pattern": "RGGB",
            "crop": [0, 0],
            "sensor_size": list(size),
            "black_level": [64.0] * 4,
            "white_level": 1023.0,
            "official_scale": 1024.0,
            "white_balance": [1.0, 1.0, 1.0],
            "white_balance_source": "none",
            "cam_to_srgb": None,
            "cam_to_srgb_source": None,
            "noise_profile": None,
            "rendering": {},
        }
        write_entry(folder, f"toy{index}", mosaic, (srgb * 255).round().byte().numpy(), meta)
    return folder


@pytest.mark.parametrize("task", ["rgb2raw", "raw2rgb", "cycleisp-joint"])
def test_isp_tasks_on_prepared_pairs_lower_their_validation_loss(tmp_path, task):
    from cycleisp_fast.training import make_task

    pairs = camera_pairs(tmp_path / "pairs")
    config = tiny_config(
        task,
        "",
        steps=12,
        lr=1e-4,
        lr_schedule="constant",
        patch_size=24,
        data={"pairs": os.fspath(pairs)},
        val={"count": 3, "patch_size": 32},
    )
    torch.manual_seed(0)
    untrained = make_task(config, torch.device("cpu"))
    batches = untrained.validation_batches()
    assert [tuple(b["srgb"].shape) for b in batches] == [(2, 3, 32, 32), (1, 3, 32, 32)]
    assert batches[0]["raw"].shape == (2, 4, 16, 16) and 0 <= batches[0]["raw"].min() <= batches[0]["raw"].max() <= 1

    def validation_loss(task_object, network):
        with torch.no_grad():
            return sum(float(task_object.loss(network, batch)) for batch in batches)

    before = validation_loss(untrained, untrained.network)
    result, _ = run_task(tmp_path, config)
    after = validation_loss(untrained, result.network)
    assert after < 0.6 * before, (before, after)  # measured: 0.41 to 0.45 of it
    assert {"psnr"} <= set(result.metrics) and all(math.isfinite(v) for v in result.metrics.values())
    if task == "cycleisp-joint":  # the learned synthesis runs on ISP weights trained on real pairs
        from cycleisp_fast import cli

        argv = ["synth", "-o", os.fspath(tmp_path / "synth"), "--pipeline", "cycleisp", "--weights"]
        assert cli.main([*argv, os.fspath(result.run_dir), "--max-size", "32"]) == 0
        assert len(list((tmp_path / "synth" / "noisy").glob("*.png"))) == 7


def test_real_pair_configs_are_checked(tmp_path):
    from cycleisp_fast.training import make_task

    pairs = camera_pairs(tmp_path / "pairs", count=1)
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="'data.pairs'.*not a prepared RAW/sRGB folder"):
        make_task(tiny_config("rgb2raw", "", data={"pairs": os.fspath(tmp_path)}), cpu)
    with pytest.raises(ConfigError, match="'toy0' is 56x48, smaller than patch_size \\+ 2"):
        make_task(tiny_config("rgb2raw", "", patch_size=48, data={"pairs": os.fspath(pairs)}), cpu)
    with pytest.raises(ConfigError, match="'toy0' is 56x48, smaller than val.patch_size = 64"):
        make_task(tiny_config("rgb2raw", "", data={"pairs": os.fspath(pairs)}, val={"patch_size": 64}), cpu)
    official = make_task(tiny_config("rgb2raw", "", data={"pairs": os.fspath(pairs), "raw_scale": "official"}), cpu)
    levels = make_task(tiny_config("rgb2raw", "", data={"pairs": os.fspath(pairs)}), cpu)
    raw_official, raw_levels = official.validation_batches()[0]["raw"], levels.validation_batches()[0]["raw"]
    torch.testing.assert_close(raw_official, (raw_levels * (1023 - 64) + 64) / 1024, rtol=0, atol=1e-6)
