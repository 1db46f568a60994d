"""The training config schema: the tasks, and every key of a config with its type, default, the tasks it applies
to and its bounds (:data:`SCHEMA`); :mod:`cycleisp_fast.training.config` reads and checks configs against it.

A config has top-level keys (``task``, ``steps``, ``batch_size`` ...) and the tables ``[model]``, ``[data]``,
``[noise]``, ``[loss]`` and ``[val]``; a key whose ``tasks`` do not include the config's task must not appear in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cycleisp_fast.data.raw_rgb_pairs import RAW_SCALES
from cycleisp_fast.noise import NOISE_LEVEL_SAMPLERS, NOISE_MODELS, PHYSICAL
from cycleisp_fast.seeds import MAX_SEED

DENOISE_TASKS = ("denoise-srgb", "denoise-raw")
AINDNET_TASKS = ("aindnet-synthetic", "aindnet-transfer")
ISP_TASKS = ("rgb2raw", "raw2rgb", "cycleisp-joint")
TASKS = DENOISE_TASKS + AINDNET_TASKS + ISP_TASKS
SYNTHETIC_TASKS = DENOISE_TASKS + ("aindnet-synthetic",)
"""Tasks trained on pairs synthesised on the fly from clean sRGB patches."""
CLEAN_IMAGE_TASKS = SYNTHETIC_TASKS + ISP_TASKS
"""Tasks that read clean sRGB images (``data.images``)."""

SRGB_PAIR_LAYOUTS = ("folder", "sidd-srgb")
"""The layouts of :func:`cycleisp_fast.data.datasets.open_pairs` with clean/noisy sRGB pairs, what AINDNet's
transfer stage fine-tunes on."""
PAIR_LAYOUTS = ("auto",) + SRGB_PAIR_LAYOUTS

REQUIRED = object()
"""The default of a key that every config of its tasks must set."""


@dataclass(frozen=True)
class Key:
    """One config key: its type (``int``, ``float``, ``str`` or ``bool``), default, the tasks that use it
    (None: every task), and optionally its allowed values, lower bound (``positive``: > 0, else >= 0) and upper
    bound (``below``: the value must be smaller)."""

    type: type
    default: Any
    doc: str
    tasks: tuple[str, ...] | None = None
    choices: tuple | None = None
    positive: bool | None = None
    below: float | None = None


SCHEMA: dict[str, dict[str, Key]] = {
    "": {
        "task": Key(str, REQUIRED, "what to train", choices=TASKS),
        "seed": Key(
            int, 0, "seeds the initial weights, the patches and the synthetic noise", positive=False, below=MAX_SEED
        ),
        "steps": Key(int, 100_000, "optimizer steps in all", positive=True),
        "batch_size": Key(
            int, 16, "patches per step and process (the global batch is this x world size)", positive=True
        ),
        "patch_size": Key(int, 128, "training crop side in sRGB pixels (RAW crops are half)", positive=True),
        "patch_schedule": Key(
            str,
            "",
            "progressive crops (Restormer): 'STEP:SIZE,...', from global step STEP on the crops are SIZE ('': none)",
            CLEAN_IMAGE_TASKS,
        ),
        "lr": Key(float, 2e-4, "the optimizer's learning rate", positive=True),
        "optimizer": Key(str, "adam", "adam, or adamw (decoupled weight decay)", choices=("adam", "adamw")),
        "weight_decay": Key(float, 0.0, "weight decay (adam: L2 in the gradient; adamw: decoupled)", positive=False),
        "warmup_steps": Key(int, 0, "steps of linear learning-rate warm-up before the schedule", positive=False),
        "restart_every": Key(
            int, 0, "cosine: restart the cosine every this many steps after the warm-up (0: one cosine)", positive=False
        ),
        "ema_decay": Key(
            float, 0.0, "keep an EMA of the weights with this decay, e.g. 0.999 (0: off)", positive=False, below=1
        ),
        "lr_schedule": Key(
            str, "cosine", "cosine: anneal lr to min_lr over `steps`; constant", choices=("cosine", "constant")
        ),
        "min_lr": Key(float, 1e-6, "the cosine schedule's final learning rate", positive=False),
        "grad_clip": Key(float, 0.0, "clip the global gradient norm to this (0: no clipping)", positive=False),
        "amp": Key(
            str, "off", "mixed precision on CUDA (ignored, with a warning, on the CPU)", choices=("off", "bf16", "fp16")
        ),
        "log_every": Key(int, 100, "steps between log lines", positive=True),
        "tensorboard": Key(bool, False, "also write TensorBoard event files into RUN/tensorboard"),
        "val_every": Key(int, 5000, "steps between validations (0: only at the end)", positive=False),
        "save_every": Key(int, 5000, "steps between checkpoints (0: only at the end)", positive=False),
        "init": Key(str, "", "weights to start from: a training checkpoint or official weights ('' : none)"),
        "scheme": Key(
            str,
            REQUIRED,
            "what transfer learning updates: tf (AINs, estimator, last conv) or rt (all)",
            tasks=("aindnet-transfer",),
            choices=("tf", "rt"),
        ),
    },
    "model": {
        "n_feats": Key(int, 64, "DenoiseNet features", DENOISE_TASKS, positive=True),
        "num_rrg": Key(int, 4, "DenoiseNet recursive residual groups", DENOISE_TASKS, positive=True),
        "num_dab": Key(int, 8, "dual attention blocks per group", DENOISE_TASKS, positive=True),
        "reduction": Key(int, 16, "channel attention reduction", DENOISE_TASKS, positive=True),
        "coarse_scale": Key(
            int, 8, "noise estimator's coarse scale (8: code, 4: paper)", AINDNET_TASKS, choices=(8, 4)
        ),
        "noise_resize": Key(
            str,
            "tf_legacy",
            "how AINs resize the noise map (tf_legacy: code, avgpool: paper)",
            AINDNET_TASKS,
            choices=("tf_legacy", "avgpool"),
        ),
        "upsample": Key(
            str, "tf_legacy", "noise estimator's upsampling", AINDNET_TASKS, choices=("tf_legacy", "bilinear")
        ),
    },
    "data": {
        "images": Key(str, "", "folder of clean sRGB images ('': the embedded sample images)", CLEAN_IMAGE_TASKS),
        "synthesizer": Key(
            str,
            "unprocessing",
            "noise synthesis: unprocessing (analytic ISP) or cycleisp (learned)",
            SYNTHETIC_TASKS,
            choices=("unprocessing", "cycleisp"),
        ),
        "isp_weights": Key(
            str, "", "folder with rgb2raw_joint.pth, ccm_joint.pth, raw2rgb_joint.pth (for cycleisp)", SYNTHETIC_TASKS
        ),
        "shards": Key(
            str,
            "",
            "webdataset shards of `synth --format webdataset` (a folder, or 'dir/{000000..000099}.tar'): train on "
            "crops of their pairs, regenerated exactly ('': pairs synthesised from data.images)",
            SYNTHETIC_TASKS,
        ),
        "pairs": Key(
            str,
            "",
            "real pairs: aindnet-transfer, the root of its noisy/clean sRGB pairs (required); the ISP tasks, a folder "
            "of RAW/sRGB pairs made by `cycleisp-fast prepare fivek` ('': analytic pairs of data.images)",
            ("aindnet-transfer",) + ISP_TASKS,
        ),
        "raw_scale": Key(
            str,
            "levels",
            "RAW targets of data.pairs: levels, (value - black) / (white - black) clipped to [0, 1]; official, "
            "value / 2**ceil(log2(max)) as CycleISP's image2npy.py",
            ISP_TASKS,
            choices=RAW_SCALES,
        ),
        "layout": Key(
            str,
            "auto",
            "layout of the pairs folder: folder (clean/ + noisy/), sidd-srgb, or auto",
            ("aindnet-transfer",),
            choices=PAIR_LAYOUTS,
        ),
        "workers": Key(int, 0, "DataLoader worker processes per training process", positive=False),
    },
    "noise": {
        "levels": Key(
            str,
            "auto",
            "noise-level sampler (auto: the synthesizer's own: unprocessing -> Brooks' 'unprocessing', cycleisp -> "
            f"'cycleisp_dnd'; or {', '.join(NOISE_LEVEL_SAMPLERS)}), or camera noise profiles for ELD/LED noise: "
            "'eld:SonyA7S2' (eld:NikonD850, eld:CanonEOS70D, eld:CanonEOS700D, eld:CanonEOS5D4), 'virtual:N' "
            "(N LED-style virtual cameras) or a profile .json of `cycleisp-fast calibrate`",
            SYNTHETIC_TASKS,
        ),
        "model": Key(
            str,
            "auto",
            "RAW noise model (auto: heteroscedastic_gaussian for a level sampler, physical for camera profiles)",
            SYNTHETIC_TASKS,
            choices=("auto",) + NOISE_MODELS + (PHYSICAL,),
        ),
        "ratio_min": Key(
            float, 100.0, "physical noise: the smallest exposure ratio (drawn uniformly per image)", SYNTHETIC_TASKS
        ),
        "ratio_max": Key(
            float, 300.0, "physical noise: the largest exposure ratio (ELD trains on 100 .. 300)", SYNTHETIC_TASKS
        ),
    },
    "loss": {
        "noise_weight": Key(
            float, 0.05, "AINDNet's lambda on the multi-scale asymmetric loss", ("aindnet-synthetic",), positive=False
        ),
        "asymmetry": Key(
            float,
            0.25,
            "AINDNet's alpha (over-estimates weigh alpha, under 1 - alpha)",
            ("aindnet-synthetic",),
            positive=False,
        ),
        "log_eps": Key(
            float,
            1e-3,
            "floor under RAW values in the log term of the RGB2RAW loss",
            ("rgb2raw", "cycleisp-joint"),
            positive=True,
        ),
        "beta": Key(
            float,
            REQUIRED,
            "joint loss weight: beta L_rgb2raw + (1 - beta) L_raw2rgb",
            ("cycleisp-joint",),
            positive=False,
        ),
    },
    "val": {
        "count": Key(int, 16, "validation patches (0: no validation)", positive=False),
        "patch_size": Key(int, 128, "validation crop side in sRGB pixels", positive=True),
        "images": Key(str, "", "held-out clean images ('': other crops of the training images)", CLEAN_IMAGE_TASKS),
        "pairs": Key(
            str,
            "",
            "held-out real pairs, of the kind data.pairs holds ('': crops of the training pairs)",
            ("aindnet-transfer",) + ISP_TASKS,
        ),
        "layout": Key(str, "auto", "layout of val.pairs", ("aindnet-transfer",), choices=PAIR_LAYOUTS),
    },
}
"""Every config key, by table ("" is the top level)."""

SYNTHESIZER_NOISE_LEVELS = {"unprocessing": "unprocessing", "cycleisp": "cycleisp_dnd"}
"""``noise.levels = "auto"``: each synthesizer's own noise levels (Brooks' for the analytic ISP, the CycleISP
generation scripts' for the learned one)."""

RESUMABLE_CHANGES = ("log_every", "val_every", "save_every", "tensorboard", "data.workers")
"""Keys that may differ when resuming: they do not change the weights' trajectory."""


def patch_schedule(config: dict[str, Any]) -> list[tuple[int, int]]:
    """The training crop size by step: ``[(0, patch_size), (step, size), ...]`` from ``patch_size`` and
    ``patch_schedule`` ('STEP:SIZE,...'); ``ValueError`` naming the key for a malformed schedule (the config
    checks that the steps rise within the run and that every size suits the task)."""
    schedule = [(0, config["patch_size"])]
    for part in filter(None, (piece.strip() for piece in config.get("patch_schedule", "").split(","))):
        step, _, size = part.partition(":")
        if not (step.strip().isdigit() and size.strip().isdigit()):
            raise ValueError(f"config key 'patch_schedule' must be 'STEP:SIZE,...' (e.g. '40000:160'), got {part!r}")
        schedule.append((int(step), int(size)))
    return schedule
