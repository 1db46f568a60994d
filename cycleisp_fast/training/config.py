"""Training configs: one TOML file per recipe, checked key by key before anything trains.

A config is a TOML file (``cycleisp_fast/configs/NAME.toml`` for a bare name such as ``demo``) with top-level
keys (``task``, ``steps``, ``batch_size`` ...) and the tables ``[model]``, ``[data]``, ``[noise]``, ``[loss]``
and ``[val]``. :data:`~cycleisp_fast.training.schema.SCHEMA` lists every key with its type, default and the
tasks it applies to; a key the task does not use, an unknown key, a wrong type or a value out of range raises
:class:`ConfigError` naming the key (and the file). ``--set key.sub=value`` overrides are TOML values
(``--set lr=1e-3``, ``--set data.images=photos`` -- a bare word is a string). The resolved config (defaults filled
in, only the task's keys) is a plain nested dict: it is stored in every checkpoint and copied to the run folder as
TOML. Relative paths in a config are relative to the working directory, as on the command line.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from cycleisp_fast.training.schema import (
    AINDNET_TASKS,
    ISP_TASKS,
    REQUIRED,
    RESUMABLE_CHANGES,
    SCHEMA,
    SYNTHESIZER_NOISE_LEVELS,
    TASKS,
    Key,
    patch_schedule,
)


class ConfigError(ValueError):
    """A config file, key or override that is not valid; the message names the key and the file."""


def _dotted(table: str, key: str) -> str:
    return f"{table}.{key}" if table else key


def _packaged_folder():
    return resources.files("cycleisp_fast") / "configs"


def packaged_configs() -> list[str]:
    """Names of the configs shipped with the package (``cycleisp_fast/configs/*.toml``)."""
    return sorted(entry.name[:-5] for entry in _packaged_folder().iterdir() if entry.name.endswith(".toml"))


def config_path(name_or_path: str | os.PathLike) -> Path:
    """The file of ``name_or_path``: an existing path, or the packaged config of that name (``demo``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = os.fspath(name_or_path)
    if os.sep not in text and "/" not in text and not text.endswith(".toml"):
        packaged = _packaged_folder() / f"{text}.toml"
        if packaged.is_file():
            return Path(os.fspath(packaged))
        raise ConfigError(
            f"config {text!r}: no such file, nor a packaged config (packaged: {', '.join(packaged_configs())})"
        )
    raise ConfigError(f"config file {text!r} does not exist")


def parse_override(text: str) -> tuple[str, Any]:
    """``"key.sub=value"`` -> ``("key.sub", value)``: the value read as TOML (``3``, ``1e-3``, ``true``,
    ``"x"``), else taken as a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must be key=value (e.g. steps=100 or data.images=photos)")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _apply_override(raw: dict, key: str, value: Any) -> None:
    table, _, name = key.rpartition(".")
    if "." in table:
        raise ConfigError(f"override key {key!r}: tables are one level deep ([model], [data], ...)")
    if table and table not in SCHEMA:
        raise ConfigError(f"override key {key!r}: unknown table [{table}]; tables: {', '.join(t for t in SCHEMA if t)}")
    target = raw.setdefault(table, {}) if table else raw
    if not isinstance(target, dict):
        raise ConfigError(f"override key {key!r}: {table!r} is not a table in the config")
    target[name] = value


def _check_value(dotted: str, spec: Key, value: Any, where: str) -> Any:
    """``value`` checked against ``spec`` (an int is accepted for a float); returns it in the key's type."""
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
        raise ConfigError(
            f"config key {dotted!r}{where} must be {spec.type.__name__}, got {value!r} ({type(value).__name__})"
        )
    if spec.type is float and not math.isfinite(value):
        raise ConfigError(f"config key {dotted!r}{where} must be finite, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"config key {dotted!r}{where} must be one of {spec.choices}, got {value!r}")
    if spec.positive is True and not value > 0:
        raise ConfigError(f"config key {dotted!r}{where} must be > 0, got {value!r}")
    if spec.positive is False and not value >= 0:
        raise ConfigError(f"config key {dotted!r}{where} must be >= 0, got {value!r}")
    if spec.below is not None and not value < spec.below:
        raise ConfigError(f"config key {dotted!r}{where} must be < {spec.below}, got {value!r}")
    return value


def _unknown(dotted: str, known: Sequence[str], task: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(dotted.rpartition(".")[2], known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {dotted!r}{where} for task {task!r}{hint} (known: {', '.join(known)})")


def resolve_config(raw: Mapping[str, Any], *, source: str = "") -> dict[str, Any]:
    """Checks a parsed config and fills in the defaults of its task's keys; returns the resolved nested dict.

    Raises :class:`ConfigError` for a missing or unknown task, an unknown key or table, a key the task does
    not use, a wrong type, a value out of range, a missing required key, or an inconsistent combination."""
    where = f" in {source}" if source else ""
    task = raw.get("task", None)
    if task is None:
        raise ConfigError(f"config key 'task'{where} is required: one of {TASKS}")
    task = _check_value("task", SCHEMA[""]["task"], task, where)
    resolved: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, dict) and name not in SCHEMA:
            raise ConfigError(f"unknown config table [{name}]{where} (tables: {', '.join(t for t in SCHEMA if t)})")
    for table, keys in SCHEMA.items():
        given = raw if not table else raw.get(table, {})
        if not isinstance(given, dict):
            raise ConfigError(f"config key {table!r}{where} must be a table [{table}], got {given!r}")
        ours = {name: spec for name, spec in keys.items() if spec.tasks is None or task in spec.tasks}
        for name in given:
            if not table and name in SCHEMA:
                continue
            if name not in ours:
                dotted = _dotted(table, name)
                if name in keys:
                    raise ConfigError(
                        f"config key {dotted!r}{where} does not apply to task {task!r} "
                        f"(it is for {', '.join(keys[name].tasks)})"
                    )
                raise _unknown(dotted, list(ours), task, where)
        section: dict[str, Any] = {}
        for name, spec in ours.items():
            if name in given:
                section[name] = _check_value(_dotted(table, name), spec, given[name], where)
            elif spec.default is REQUIRED:
                raise ConfigError(
                    f"config key {_dotted(table, name)!r}{where} is required for task {task!r}: {spec.doc}"
                )
            else:
                section[name] = spec.default
        if table:
            if section:
                resolved[table] = section
        else:
            resolved.update(section)
    _check_combinations(resolved, where)
    return resolved


def _check_combinations(config: dict[str, Any], where: str) -> None:
    """Constraints between keys: crop sizes the task can use, and required companions."""
    task = config["task"]
    multiple = 8 if task in AINDNET_TASKS else 2  # AINDNet's estimator: 1/8 maps; the others: whole 2x2 blocks
    minimum = 24 if task in ("raw2rgb", "cycleisp-joint") else multiple  # CCM's 10-pixel reflect padding
    try:
        schedule = patch_schedule(config)
    except ValueError as error:
        raise ConfigError(f"{error}{where}") from None
    steps = [step for step, _ in schedule]
    if steps != sorted(set(steps)) or steps[-1] >= config["steps"]:
        raise ConfigError(
            f"config key 'patch_schedule'{where} needs rising steps after 0 and before steps ({config['steps']}), "
            f"got {config['patch_schedule']!r}"
        )
    sizes = [("patch_size", size) if step == 0 else ("patch_schedule", size) for step, size in schedule]
    for key, size in sizes + [("val.patch_size", config["val"]["patch_size"])]:
        if size % multiple or size < minimum:
            raise ConfigError(
                f"config key {key!r}{where} must be a multiple of {multiple} and at least {minimum} "
                f"for task {task!r}, got {size}"
            )
    data = config.get("data", {})
    if data.get("synthesizer") == "cycleisp" and not data.get("isp_weights"):
        raise ConfigError(f"config key 'data.isp_weights'{where} is required when data.synthesizer = 'cycleisp'")
    if data.get("synthesizer") == "unprocessing" and data.get("isp_weights"):
        raise ConfigError(f"config key 'data.isp_weights'{where} is only used with data.synthesizer = 'cycleisp'")
    noise = config.get("noise", {})
    if noise.get("levels") == "auto":
        noise["levels"] = SYNTHESIZER_NOISE_LEVELS[data["synthesizer"]]
    if "levels" in noise:
        _check_noise(noise, where)
    if task == "aindnet-transfer" and not data["pairs"]:
        raise ConfigError(
            f"config key 'data.pairs'{where} is required for task 'aindnet-transfer': the real noisy/clean pairs"
        )
    if task in ISP_TASKS:
        _check_isp_sources(config, where)
    if data.get("shards"):
        for key, value in (("data.images", data["images"]), ("val.images", config["val"]["images"])):
            if value:
                raise ConfigError(
                    f"config key {key!r}{where} does not fit a run on shards (data.shards): the shards hold the "
                    "images; leave it empty"
                )
    if task == "aindnet-transfer" and not config["init"]:
        raise ConfigError(
            f"config key 'init'{where} is required for task 'aindnet-transfer': the synthetic-stage "
            "checkpoint to start from"
        )
    if config["warmup_steps"] >= config["steps"]:
        raise ConfigError(
            f"config key 'warmup_steps'{where} must be shorter than the run (steps = {config['steps']}), "
            f"got {config['warmup_steps']}"
        )
    if config["restart_every"] and (
        config["lr_schedule"] != "cosine" or config["restart_every"] >= config["steps"] - config["warmup_steps"]
    ):
        raise ConfigError(
            f"config key 'restart_every'{where} restarts the cosine schedule: it needs lr_schedule = 'cosine' and a "
            f"period shorter than the steps after the warm-up ({config['steps'] - config['warmup_steps']}), "
            f"got {config['restart_every']}"
        )
    if config["min_lr"] > config["lr"]:
        raise ConfigError(f"config key 'min_lr'{where} must not exceed lr ({config['lr']}), got {config['min_lr']}")


def _check_isp_sources(config: dict[str, Any], where: str) -> None:
    """An ISP task trains on prepared RAW/sRGB pairs (``data.pairs``) or on analytic pairs of clean images
    (``data.images``), validated on the same kind (``val.pairs`` or ``val.images``): never a mix."""
    data, val = config["data"], config["val"]
    real = bool(data["pairs"])
    for key, value, wanted in (
        ("data.images", data["images"], not real),
        ("val.images", val["images"], not real),
        ("val.pairs", val["pairs"], real),
    ):
        if value and not wanted:
            kind = "prepared RAW/sRGB pairs (data.pairs)" if real else "analytic pairs of clean images (data.images)"
            raise ConfigError(f"config key {key!r}{where} does not fit a run on {kind}: leave it empty")


def load_config(name_or_path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Reads, overrides (``"key.sub=value"`` strings) and resolves a config; see :func:`resolve_config`."""
    path = config_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {error}") from None
    for text in overrides:
        _apply_override(raw, *parse_override(text))
    return resolve_config(raw, source=os.fspath(path) + (" (with --set overrides)" if overrides else ""))


def config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: Sequence[str] = RESUMABLE_CHANGES
) -> list[str]:
    """``"key: old -> new"`` for each resolved key that differs (``ignore``d keys aside)."""

    def flat(config: Mapping[str, Any]) -> dict[str, Any]:
        return {
            _dotted(table, key): value
            for table, section in [("", {k: v for k, v in config.items() if not isinstance(v, dict)})]
            + [(k, v) for k, v in config.items() if isinstance(v, dict)]
            for key, value in section.items()
        }

    old_flat, new_flat = flat(old), flat(new)
    return [
        f"{key}: {old_flat.get(key, '(absent)')!r} -> {new_flat.get(key, '(absent)')!r}"
        for key in sorted(set(old_flat) | set(new_flat))
        if key not in ignore and old_flat.get(key, REQUIRED) != new_flat.get(key, REQUIRED)
    ]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def config_to_toml(config: Mapping[str, Any]) -> str:
    """A resolved config as TOML text that :func:`load_config` reads back to the same dict."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in config.items() if not isinstance(value, dict)]
    for table, section in config.items():
        if isinstance(section, dict):
            lines += ["", f"[{table}]"] + [f"{key} = {_toml_value(value)}" for key, value in section.items()]
    return "\n".join(lines) + "\n"


def _check_noise(noise: dict[str, Any], where: str) -> None:
    """``noise.levels`` names a sampler or loadable camera profiles; ``noise.model`` fits it (auto resolved); the
    exposure ratios of physical noise are ordered and >= 1."""
    from cycleisp_fast.noise import NOISE_LEVEL_SAMPLERS, PHYSICAL
    from cycleisp_fast.noise.physical import PhysicalNoiseModel, is_profile_spec

    levels, model = noise["levels"], noise["model"]
    if is_profile_spec(levels):
        if model not in ("auto", PHYSICAL):
            raise ConfigError(
                f"config key 'noise.model'{where}: camera profile {levels!r} needs model 'physical', got {model!r}"
            )
        noise["model"] = PHYSICAL
        low, high = noise["ratio_min"], noise["ratio_max"]
        try:
            PhysicalNoiseModel(levels, ratio=(low, high))
        except ValueError as error:
            raise ConfigError(
                f"config key 'noise.levels'/'noise.ratio_min'/'noise.ratio_max'{where}: {error}"
            ) from error
        return
    if levels not in NOISE_LEVEL_SAMPLERS:
        raise ConfigError(
            f"config key 'noise.levels'{where} must be 'auto', one of {', '.join(NOISE_LEVEL_SAMPLERS)}, or camera "
            f"profiles ('eld:SonyA7S2', 'virtual:N', a .json file), got {levels!r}"
        )
    if model == PHYSICAL:
        raise ConfigError(
            f"config key 'noise.model'{where}: 'physical' needs camera profiles as noise.levels, got {levels!r}"
        )
    if model == "auto":
        noise["model"] = "heteroscedastic_gaussian"
