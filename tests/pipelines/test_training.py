"""Training: configs (parsing, overrides, errors), one short run of every task, an overfit case, bit-exact
resume, and DDP with Gloo in two processes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from cycleisp_fast.data.images import write_image
from cycleisp_fast.models import CCM, AINDNet, Raw2Rgb, Rgb2Raw, load_official, trainable_parameters, transfer_tf
from cycleisp_fast.pipelines.denoisers import load_denoiser
from cycleisp_fast.pipelines.train_config import (SCHEMA, ConfigError, config_to_toml, load_config, packaged_configs,
                                                  parse_override, resolve_config)
from cycleisp_fast.pipelines.training import (CHECKPOINT_NAME, CONFIG_NAME, Distributed, RunFolderError, StepBatches,
                                              load_checkpoint, lr_factor, read_log, train)

TINY_DENOISER = {"n_feats": 8, "num_rrg": 1, "num_dab": 1, "reduction": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three smooth random 48x40 sRGB images (smooth, so that noise is what a denoiser can remove)."""
    folder = tmp_path_factory.mktemp("images")
    generator = torch.Generator().manual_seed(7)
    for index in range(3):
        coarse = torch.rand(1, 3, 6, 5, generator=generator)
        image = torch.nn.functional.interpolate(coarse, size=(48, 40), mode="bilinear", align_corners=False)[0]
        write_image(folder / f"image{index}.png", image)
    return folder


def tiny_config(task: str, images, **top) -> dict:
    """A resolved config of ``task`` small enough for a test: 2 steps of 2 patches of 32x32, tiny models."""
    raw = {"task": task, "steps": 2, "batch_size": 2, "patch_size": 32, "log_every": 1, "save_every": 0,
           "val_every": 0, "val": {"count": 2, "patch_size": 32}}
    if task.startswith("denoise"):
        raw["model"] = dict(TINY_DENOISER)
    if task != "aindnet-transfer":
        raw["data"] = {"images": os.fspath(images)}
    if task == "cycleisp-joint":
        raw["loss"] = {"beta": 0.5}
    raw.update(top)
    return resolve_config(raw)


# ---------------------------------------------------------------------------------------------------- configs

def test_every_packaged_config_resolves_and_round_trips_through_toml(tmp_path):
    names = packaged_configs()
    assert "demo" in names and len(names) >= 7
    for name in names:
        config = load_config(name, ["init=weights.pt"] if "transfer" in name else [])
        path = tmp_path / f"{name}.toml"
        path.write_text(config_to_toml(config))
        assert load_config(path) == config, name


def test_defaults_are_filled_in_for_the_task_only():
    config = resolve_config({"task": "denoise-raw"})
    assert config["model"] == {"n_feats": 64, "num_rrg": 4, "num_dab": 8, "reduction": 16}  # the official sizes
    assert config["noise"]["levels"] == "unprocessing"  # auto: the unprocessing synthesizer's own levels
    assert "loss" not in config and "pairs" not in config["data"] and "scheme" not in config
    aindnet = resolve_config({"task": "aindnet-synthetic"})
    assert aindnet["model"] == {"coarse_scale": 8, "noise_resize": "tf_legacy", "upsample": "tf_legacy"}
    assert aindnet["loss"] == {"noise_weight": 0.05, "asymmetry": 0.25}
    cycleisp = resolve_config({"task": "denoise-srgb", "data": {"synthesizer": "cycleisp", "isp_weights": "w"}})
    assert cycleisp["noise"]["levels"] == "cycleisp_dnd"


def test_overrides_are_toml_values_or_bare_strings():
    assert parse_override("steps=3") == ("steps", 3)
    assert parse_override("lr = 1e-3") == ("lr", 1e-3)
    assert parse_override("data.images=some/photos") == ("data.images", "some/photos")
    assert parse_override('data.images="x=y"') == ("data.images", "x=y")
    config = load_config("demo", ["steps=3", "model.n_feats=8", "lr=1", "data.images=photos"])
    assert (config["steps"], config["model"]["n_feats"], config["data"]["images"]) == (3, 8, "photos")
    assert config["lr"] == 1.0 and isinstance(config["lr"], float)  # an int is taken for a float key


@pytest.mark.parametrize("raw, message", [
    ({}, "'task'.* is required"),
    ({"task": "denoise"}, "'task'"),
    ({"task": "denoise-srgb", "stpes": 3}, "unknown config key 'stpes'.*did you mean 'steps'"),
    ({"task": "denoise-srgb", "model": {"n_feat": 3}}, "unknown config key 'model.n_feat'"),
    ({"task": "denoise-srgb", "optim": {"lr": 1}}, r"unknown config table \[optim\]"),
    ({"task": "aindnet-synthetic", "model": {"n_feats": 8}}, "'model.n_feats'.* does not apply to task 'aindnet"),
    ({"task": "denoise-srgb", "steps": "3"}, "'steps'.* must be int, got '3'"),
    ({"task": "denoise-srgb", "steps": True}, "'steps'.* must be int"),
    ({"task": "denoise-srgb", "lr": 0}, "'lr'.* must be > 0"),
    ({"task": "denoise-srgb", "lr": math.inf}, "'lr'.* must be finite"),
    ({"task": "denoise-srgb", "val_every": -1}, "'val_every'.* must be >= 0"),
    ({"task": "denoise-srgb", "amp": "fp8"}, "'amp'.* must be one of"),
    ({"task": "denoise-srgb", "patch_size": 33}, "'patch_size'.* must be a multiple of 2"),
    ({"task": "aindnet-synthetic", "patch_size": 36}, "'patch_size'.* must be a multiple of 8"),
    ({"task": "raw2rgb", "val": {"patch_size": 16}}, "'val.patch_size'.* must be a multiple of 2 and at least 24"),
    ({"task": "aindnet-transfer", "data": {"pairs": "p"}, "init": "w"}, "'scheme'.* is required"),
    ({"task": "aindnet-transfer", "data": {"pairs": "p"}, "scheme": "tf"}, "'init'.* is required"),
    ({"task": "cycleisp-joint"}, "'loss.beta'.* is required"),
    ({"task": "denoise-srgb", "data": {"synthesizer": "cycleisp"}}, "'data.isp_weights'.* is required"),
    ({"task": "denoise-srgb", "min_lr": 1.0}, "'min_lr'.* must not exceed lr"),
    ({"task": "denoise-srgb", "model": 3}, r"must be a table \[model\]"),
])
def test_bad_configs_raise_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message) as error:
        resolve_config(raw, source="recipe.toml")
    assert "recipe.toml" in str(error.value)


def test_config_files_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("task = \n")
    with pytest.raises(ConfigError, match="broken.toml.*not valid TOML"):
        load_config(broken)
    typo = tmp_path / "typo.toml"
    typo.write_text('task = "denoise-srgb"\nbatch = 3\n')
    with pytest.raises(ConfigError, match="'batch' in .*typo.toml"):
        load_config(typo)
    with pytest.raises(ConfigError, match="no such file, nor a packaged config.*demo"):
        load_config("no-such-recipe")
    with pytest.raises(ConfigError, match="unknown config key 'model.n_fets'.*with --set"):
        load_config("demo", ["model.n_fets=3"])
    with pytest.raises(ConfigError, match="must be key=value"):
        load_config("demo", ["steps"])


def test_every_key_documents_itself():
    for table, keys in SCHEMA.items():
        for name, key in keys.items():
            assert key.doc, f"{table}.{name}"


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


# ------------------------------------------------------------------------------------------- one run per task

def run_task(tmp_path, config, **kwargs):
    result = train(config, tmp_path / "run", device="cpu", progress=False, **kwargs)
    checkpoint = load_checkpoint(result.checkpoint)
    return result, checkpoint


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
    from skimage.metrics import peak_signal_noise_ratio

    from cycleisp_fast.pipelines.train_tasks import make_task

    config = tiny_config("denoise-srgb", image_folder, val={"count": 3, "patch_size": 32})
    torch.manual_seed(0)
    task = make_task(config, torch.device("cpu"))
    batches = task.validation_batches()
    assert [b["noisy"].shape[0] for b in batches] == [2, 1]  # chunks of batch_size
    metrics = {"psnr": 0.0, "psnr_input": 0.0}
    with torch.no_grad():
        for batch in batches:
            outputs = task.network(batch["noisy"]).clamp(0, 1)
            for output, noisy, clean in zip(outputs, batch["noisy"], batch["clean"]):
                metrics["psnr"] += peak_signal_noise_ratio(clean.numpy(), output.numpy(), data_range=1) / 3
                metrics["psnr_input"] += peak_signal_noise_ratio(clean.numpy(), noisy.numpy(), data_range=1) / 3
    result = train(config, tmp_path / "run", device="cpu", progress=False, stop_after=1)
    assert result.metrics == {}  # validation comes at the end of `steps`, not at an early stop
    from cycleisp_fast.pipelines.training import _validate

    torch.manual_seed(0)
    assert _validate(make_task(config, torch.device("cpu"))) == pytest.approx(metrics, abs=1e-6)


def test_aindnet_synthetic_then_transfer_tf_updates_only_the_transfer_parameters(tmp_path, image_folder):
    synthetic, checkpoint = run_task(tmp_path / "synthetic", tiny_config("aindnet-synthetic", image_folder))
    assert checkpoint["model"] == "aindnet" and checkpoint["model_kwargs"]["coarse_scale"] == 8
    pairs = tmp_path / "pairs"
    generator = torch.Generator().manual_seed(3)
    for index in range(2):
        clean = torch.rand(3, 40, 48, generator=generator)
        write_image(pairs / "clean" / f"p{index}.png", clean)
        write_image(pairs / "noisy" / f"p{index}.png", (clean + 0.1 * torch.randn(3, 40, 48, generator=generator)))
    config = tiny_config("aindnet-transfer", None, scheme="tf", init=os.fspath(synthetic.checkpoint),
                         data={"pairs": os.fspath(pairs)})
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
    config = tiny_config("aindnet-transfer", None, scheme="rt", init=os.fspath(srgb.checkpoint),
                         data={"pairs": os.fspath(pairs)})
    with pytest.raises(ConfigError, match="holds a 'cycleisp-srgb' model, this task trains 'aindnet'"):
        train(config, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="'data.pairs'.*not found"):
        train({**config, "data": {**config["data"], "pairs": os.fspath(tmp_path / "nowhere")}}, tmp_path / "run",
              device="cpu", progress=False)


@pytest.mark.parametrize("task, files, metric_names", [
    ("rgb2raw", {"rgb2raw_joint.pth": Rgb2Raw}, {"psnr"}),
    ("raw2rgb", {"ccm_joint.pth": CCM, "raw2rgb_joint.pth": Raw2Rgb}, {"psnr"}),
    ("cycleisp-joint", {"rgb2raw_joint.pth": Rgb2Raw, "ccm_joint.pth": CCM, "raw2rgb_joint.pth": Raw2Rgb},
     {"psnr", "psnr_raw"}),
])
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
    config = tiny_config("denoise-srgb", image_folder, data={"images": os.fspath(image_folder),
                                                             "synthesizer": "cycleisp",
                                                             "isp_weights": os.fspath(joint.run_dir)})
    assert config["noise"]["levels"] == "cycleisp_dnd"
    result, _ = run_task(tmp_path / "srgb", config)
    assert math.isfinite(result.metrics["psnr"])
    from cycleisp_fast.pipelines.train_tasks import make_task

    rgb2raw = make_task(tiny_config("rgb2raw", image_folder, init=os.fspath(joint.run_dir)), torch.device("cpu"))
    exported = torch.load(joint.run_dir / "rgb2raw_joint.pth", weights_only=True)
    for key, value in rgb2raw.network.rgb2raw.state_dict().items():
        assert torch.equal(value, exported[key]), key
    with pytest.raises(ConfigError, match="'data.isp_weights': missing .*rgb2raw_joint.pth"):
        train({**config, "data": {**config["data"], "isp_weights": os.fspath(image_folder)}}, tmp_path / "other",
              device="cpu", progress=False)


def test_init_loads_official_layout_weights_and_names_a_misfit(tmp_path, image_folder):
    from cycleisp_fast.models import DenoiseNet
    from cycleisp_fast.pipelines.train_tasks import make_task

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


# ------------------------------------------------------------------------------------------------- learning

def test_loss_decreases_when_overfitting_one_image(tmp_path):
    folder = tmp_path / "one"
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    write_image(folder / "flat.png", torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")[0])
    config = tiny_config("denoise-srgb", folder, steps=60, lr=3e-3, lr_schedule="constant", log_every=10,
                         noise={"levels": "cbdnet_uniform"}, val={"count": 4, "patch_size": 32})
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
        train({**config, "lr": 1e-3, "model": {**config["model"], "n_feats": 16}}, tmp_path / "run", device="cpu",
              progress=False, resume=True)
    resumed = train({**config, "log_every": 2}, tmp_path / "run", device="cpu", progress=False, resume=True)
    assert resumed.step == 3  # the logging cadence may change
    with pytest.raises(RunFolderError, match="already at step 3"):
        train(config, tmp_path / "run", device="cpu", progress=False, resume=True)


def test_mixed_precision_on_the_cpu_warns_and_trains_in_float32(tmp_path, image_folder):
    config = tiny_config("denoise-srgb", image_folder, amp="bf16", steps=1)
    with pytest.warns(UserWarning, match="amp = 'bf16' runs on CUDA only"):
        result = train(config, tmp_path / "run", device="cpu", progress=False)
    assert all(p.dtype == torch.float32 for p in result.network.parameters())


# ----------------------------------------------------------------------------------------------------- DDP

DDP_CONFIG = {"task": "denoise-srgb", "steps": 3, "batch_size": 2, "patch_size": 32, "log_every": 1, "val_every": 0,
              "save_every": 0, "lr": 1e-3, "model": TINY_DENOISER, "val": {"count": 2, "patch_size": 32}}
DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from cycleisp_fast.pipelines.train_config import resolve_config
    from cycleisp_fast.pipelines.training import train

    raw, out = json.loads(sys.argv[1]), sys.argv[2]
    result = train(resolve_config(raw), out, device="cpu", progress=False)
    rank = int(os.environ["RANK"])
    torch.save(result.network.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    print(f"rank {rank} of {os.environ['WORLD_SIZE']} done at step {result.step}")
""")


def ddp_reference(config: dict, world_size: int) -> dict:
    """The weights DDP should reach, computed in one process: at step s, rank r's loss on its own patches
    (StepBatches) and noise (offset s * world + r); the gradients averaged over the ranks; Adam."""
    from cycleisp_fast.pipelines.train_tasks import make_task

    torch.manual_seed(config["seed"])
    task = make_task(config, torch.device("cpu"))
    network = task.network
    dataset = task.dataset(config["steps"] * world_size * config["batch_size"])
    optimizer = torch.optim.Adam(network.parameters(), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    samplers = [iter(StepBatches(0, config["steps"], config["batch_size"], Distributed(r, world_size, r)))
                for r in range(world_size)]
    for step in range(config["steps"]):
        gradients = []
        for rank in range(world_size):
            items = torch.stack([dataset[i] for i in next(samplers[rank])])
            network.zero_grad()
            task.loss(network, task.make_batch(items, offset=step * world_size + rank)).backward()
            gradients.append([p.grad.clone() for p in network.parameters()])
        for parameter, *grads in zip(network.parameters(), *gradients):
            parameter.grad = sum(grads) / world_size
        optimizer.step()
        scheduler.step()
    return network.state_dict()


def test_ddp_with_gloo_averages_the_ranks_gradients_and_saves_rank_0(tmp_path, image_folder):
    import json

    raw = {**DDP_CONFIG, "data": {"images": os.fspath(image_folder)}}
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", os.fspath(script),
               json.dumps(raw), os.fspath(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "rank 0 of 2 done at step 3" in completed.stdout and "rank 1 of 2 done at step 3" in completed.stdout
    rank0, rank1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    checkpoint = load_checkpoint(out / CHECKPOINT_NAME)
    expected = ddp_reference(resolve_config(raw), world_size=2)
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
        assert torch.equal(value, checkpoint["state_dict"][key]), key
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)
    assert [r["step"] for r in read_log(out) if "loss" in r] == [1, 2, 3]  # one writer: rank 0
