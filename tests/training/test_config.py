"""Training configs: parsing, packaged recipes, TOML round trips, overrides and the errors naming the key."""

from __future__ import annotations

import math

import pytest

from cycleisp_fast.training import (
    SCHEMA,
    ConfigError,
    config_to_toml,
    load_config,
    packaged_configs,
    parse_override,
    resolve_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")


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


@pytest.mark.parametrize(
    "raw, message",
    [
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
        ({"task": "aindnet-transfer", "scheme": "tf", "init": "w"}, "'data.pairs'.* is required"),
        ({"task": "rgb2raw", "data": {"pairs": "p", "images": "i"}}, "'data.images'.* does not fit .*data.pairs"),
        ({"task": "raw2rgb", "data": {"pairs": "p"}, "val": {"images": "i"}}, "'val.images'.* does not fit"),
        ({"task": "rgb2raw", "val": {"pairs": "p"}}, "'val.pairs'.* does not fit .*clean images"),
        ({"task": "rgb2raw", "data": {"raw_scale": "max"}}, "'data.raw_scale'.* must be one of"),
        ({"task": "denoise-srgb", "data": {"pairs": "p"}}, "'data.pairs'.* does not apply to task 'denoise-srgb'"),
        ({"task": "denoise-srgb", "data": {"synthesizer": "cycleisp"}}, "'data.isp_weights'.* is required"),
        ({"task": "denoise-srgb", "min_lr": 1.0}, "'min_lr'.* must not exceed lr"),
        ({"task": "denoise-srgb", "model": 3}, r"must be a table \[model\]"),
    ],
)
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
