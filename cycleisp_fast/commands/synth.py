"""Synthesizes realistic noisy/clean pairs: ``cycleisp-fast synth [INPUT ...] -o OUT``.

Inputs are image files or folders of images (PNG/JPEG/TIFF, 8 or 16 bit); without inputs, the colour photos that
scikit-image ships. Pipelines: ``unprocessing`` (default, no weights: Brooks et al.'s analytic camera with a random
camera per image, noise in RAW) or ``cycleisp`` (the learned Rgb2Raw -> noise -> Raw2Rgb with CCM, from official
or compatible checkpoints: ``--weights DIR`` holding rgb2raw_joint.pth, ccm_joint.pth, raw2rgb_joint.pth, or the
three paths).

Output layout (``NAME`` = input stem, ``NAME_k`` with ``--repeat``):
  OUT/clean/NAME.png   the clean sRGB target (8-bit PNG; ``--format tiff``: 16-bit TIFF)
  OUT/noisy/NAME.png   the noisy sRGB image
  OUT/raw/NAME.npz     packed RGGB float32 ``clean``, ``noisy``, ``variance`` (4, H/2, W/2), the levels ``shot``,
                       ``read`` (variances), and for unprocessing the camera (``rgb2cam``, ``cam2rgb``,
                       ``rgb_gain``, ``red_gain``, ``blue_gain``); ``--no-raw`` skips it
  OUT/synth.json       the settings of the run
With --format webdataset (pip install 'cycleisp_fast[shards]'), OUT gets webdataset shards instead, for datasets
that outgrow one folder or one machine (cycleisp_fast.pipelines.shards):
  OUT/000000.tar ...   --shard-size samples each: KEY.clean.png (16-bit, the synthesizer's exact input), KEY.json
                       (seed, offset, pipeline, levels, camera, source), KEY.noisy.png with --with-noisy
  OUT/shards.json      the shards and their sample keys, in order
Sample i is synthesised alone at offset i, so SyntheticShards regenerates its noise bit for bit from the clean image
and shards can be shipped clean-only. Under torchrun (torchrun --nnodes N --nproc_per_node P -m cycleisp_fast synth
...), rank r of W writes shards r, r + W, ...: the union is the single-process run, file for file; each shard is
written atomically, so a rank that crashes redoes only its unfinished shard when rerun.
OUT takes one run at a time (a lock file, .cycleisp-fast.lock; one per rank under torchrun): a second run into it
fails at once and writes nothing. Every file is written atomically. Run again with the same settings to resume:
finished pairs are skipped and the rest come out exactly as an uninterrupted run makes them (folders: batch ``b``
draws from ``(seed, offset=b)``; images of the same size are batched in input order). Images with an odd side lose
their last row or column; --max-size crops them while they are still 8/16-bit samples.

Noise: a level sampler (--levels, default per pipeline) with --noise heteroscedastic_gaussian or poisson_gaussian, or
physics-based RAW noise (ELD / LED: shot, Tukey-lambda read, row, quantisation noise and colour bias) from camera
profiles: --levels eld:SonyA7S2 (a camera ELD calibrated; also eld:NikonD850, eld:CanonEOS70D, eld:CanonEOS700D,
eld:CanonEOS5D4), virtual:N (LED-style virtual cameras) or the .json of ``cycleisp-fast calibrate``, at exposure
--ratio LOW[,HIGH] (the clean RAW made that many times darker before the noise and brightened after, as SID / ELD
train; default 100,300).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cycleisp_fast.arguments import parse_device
from cycleisp_fast.data.files import output_problem
from cycleisp_fast.data.locks import run_folder_lock
from cycleisp_fast.pipelines.synthesis import CYCLEISP_WEIGHTS as WEIGHT_FILES
from cycleisp_fast.seeds import MAX_SEED

FORMATS = {"png": (".png", 8), "tiff": (".tif", 16), "webdataset": (".tar", 16)}
SETTINGS_FILE = "synth.json"


@dataclass(frozen=True)
class Item:
    """One output pair: the input image (index into the loaded list), its copy number and the pair's file name."""

    image: int
    copy: int
    name: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``synth`` options to ``parser``."""
    from cycleisp_fast.noise import NOISE_LEVEL_SAMPLERS, NOISE_MODELS, PHYSICAL

    parser.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="INPUT",
        help="image files or folders (default: the embedded sample images)",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--pipeline", choices=("unprocessing", "cycleisp"), default="unprocessing")
    parser.add_argument("--weights", type=Path, help=f"folder holding {', '.join(WEIGHT_FILES.values())} (cycleisp)")
    for key, file in WEIGHT_FILES.items():
        parser.add_argument(f"--{key}", type=Path, help=f"the {key} checkpoint (instead of --weights DIR/{file})")
    parser.add_argument(
        "--levels",
        help=f"noise-level sampler ({', '.join(NOISE_LEVEL_SAMPLERS)}; default: unprocessing for the unprocessing "
        "pipeline, cycleisp_dnd for cycleisp), or camera noise profiles for ELD/LED noise: eld:SonyA7S2 (also "
        "eld:NikonD850, eld:CanonEOS70D, eld:CanonEOS700D, eld:CanonEOS5D4), virtual:N, or a profile .json",
    )
    parser.add_argument(
        "--noise",
        choices=NOISE_MODELS + (PHYSICAL,),
        help="RAW noise model (default: heteroscedastic_gaussian for a level sampler, physical for camera profiles)",
    )
    parser.add_argument(
        "--ratio",
        type=_ratio,
        help="physical noise: exposure ratio LOW[,HIGH], drawn per image (default 100,300 as ELD trains)",
    )
    parser.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default="png",
        help="sRGB files: 8-bit png or 16-bit tiff; or webdataset shards (clean + metadata, noise regenerated)",
    )
    parser.add_argument("--no-raw", action="store_true", help="do not write the packed RAW .npz files (png, tiff)")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard (webdataset; default 1000)")
    parser.add_argument("--with-noisy", action="store_true", help="webdataset: also store each noisy sRGB image")
    parser.add_argument("--repeat", type=int, default=1, help="noisy samples per input image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch-size", type=int, default=8, help="images per synthesis call (png, tiff; shards take one at a time)"
    )
    parser.add_argument("--max-size", type=int, help="centre-crop each side to at most this many pixels")
    parser.add_argument("--device", type=parse_device, default=torch.device("cpu"))
    parser.add_argument("--backend", choices=("auto", "reference", "native", "triton"), default=None)


def _ratio(text: str) -> tuple[float, float]:
    """``"100"`` -> (100, 100); ``"100,300"`` -> (100, 300)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW[,HIGH] numbers, got {text!r}") from None
    if len(values) not in (1, 2) or not all(math.isfinite(v) and v >= 1 for v in values) or values[0] > values[-1]:
        raise argparse.ArgumentTypeError(f"expected LOW[,HIGH] with 1 <= LOW <= HIGH, got {text!r}")
    return values[0], values[-1]


def _noise_choice(args, parser) -> tuple[str, str, tuple[float, float] | None]:
    """``(levels, noise model, ratio)`` resolved from --pipeline, --levels, --noise, --ratio (parser.error if they
    do not fit together)."""
    from cycleisp_fast.noise import NOISE_LEVEL_SAMPLERS, PHYSICAL
    from cycleisp_fast.noise.physical import DEFAULT_RATIO, PhysicalNoiseModel, is_profile_spec

    levels = args.levels or ("unprocessing" if args.pipeline == "unprocessing" else "cycleisp_dnd")
    if is_profile_spec(levels):
        if args.noise not in (None, PHYSICAL):
            parser.error(f"--levels {levels} (camera profiles) takes --noise physical, got --noise {args.noise}")
        ratio = args.ratio or DEFAULT_RATIO
        try:
            PhysicalNoiseModel(levels, ratio=ratio)
        except ValueError as error:
            parser.error(f"--levels: {error}")
        return levels, PHYSICAL, ratio
    if levels not in NOISE_LEVEL_SAMPLERS:
        parser.error(
            f"--levels must be one of {', '.join(NOISE_LEVEL_SAMPLERS)} or camera profiles (eld:SonyA7S2, virtual:N, "
            f"a .json file), got {levels!r}"
        )
    if args.noise == PHYSICAL:
        parser.error("--noise physical needs camera profiles: --levels eld:SonyA7S2 (or virtual:N, a .json file)")
    if args.ratio is not None:
        parser.error("--ratio is for camera-profile noise (--levels eld:..., virtual:N or a .json profile)")
    return levels, args.noise or "heteroscedastic_gaussian", None


def _weights(args, parser) -> dict[str, Path] | None:
    given = {key: getattr(args, key) for key in WEIGHT_FILES if getattr(args, key) is not None}
    if args.pipeline == "unprocessing":
        if given or args.weights:
            parser.error("--weights/--rgb2raw/--ccm/--raw2rgb are for --pipeline cycleisp")
        return None
    weights = {}
    for key, file in WEIGHT_FILES.items():
        path = given.get(key) or (args.weights / file if args.weights else None)
        if path is None:
            parser.error(f"--pipeline cycleisp needs --weights DIR (with {file}) or --{key} FILE")
        if not path.is_file():
            parser.error(f"the {key} checkpoint {path} does not exist")
        weights[key] = path
    return weights


def _load_inputs(inputs: list[Path], max_size: int | None) -> dict[str, torch.Tensor]:
    """Name -> (3, H, W) image with even sides, in input order (folders sorted by name)."""
    from cycleisp_fast.data.crops import centre_crop
    from cycleisp_fast.data.images import list_images, read_image
    from cycleisp_fast.data.samples import sample_images

    if not inputs:
        return sample_images(max_size=max_size)
    files = []
    for path in inputs:
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist")
        files.extend(list_images(path) if path.is_dir() else [path])
    images = {}
    for file in files:
        if file.stem in images:
            raise ValueError(
                f"two inputs are named {file.stem!r} (the output names come from the input stems): rename {file}"
            )
        image = read_image(file, max_size=max_size)  # cropped before it becomes float32
        image = centre_crop(image, None, even_sides=True)
        if min(image.shape[1:]) < 2:
            raise ValueError(f"input {file} has a side of 1 pixel: too small for a Bayer mosaic")
        images[file.stem] = image.contiguous()
    return images


def plan_batches(items: list[Item], sizes: list[tuple[int, int]], batch_size: int) -> list[list[Item]]:
    """Consecutive items of the same image size, at most ``batch_size`` per batch (deterministic in the inputs)."""
    batches: list[list[Item]] = []
    for item in items:
        if batches and len(batches[-1]) < batch_size and sizes[batches[-1][0].image] == sizes[item.image]:
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches


def _outputs(out: Path, name: str, suffix: str, raw: bool) -> list[Path]:
    paths = [out / "clean" / f"{name}{suffix}", out / "noisy" / f"{name}{suffix}"]
    return paths + ([out / "raw" / f"{name}.npz"] if raw else [])


def _check_settings(out: Path, settings: dict) -> None:
    """Writes the run's settings, or checks them against those of the run being resumed."""
    from cycleisp_fast.data.files import atomic_path

    path = out / SETTINGS_FILE
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); delete it or use a new output folder") from error
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise ValueError(
                f"{out} holds a run with other settings ({', '.join(changed)} differ): use a new output "
                "folder, or the same settings to resume it"
            )
        return
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Checks the options, loads the inputs and synthesizes every pair into ``--out`` (resuming); returns 0.

    Bad options end with ``parser.error``; unreadable inputs or a run with other settings in ``--out`` raise.
    """
    for name in ("repeat", "batch_size", "max_size", "shard_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.max_size is not None and args.max_size < 2:
        parser.error("--max-size must be at least 2")
    if problem := output_problem(args.out, folder=True):
        parser.error(f"-o/--out: {problem}")
    if not 0 <= args.seed < MAX_SEED:
        parser.error(f"--seed must be in [0, 2**63), got {args.seed}")
    shards = args.format == "webdataset"
    if not shards and args.with_noisy:
        parser.error("--with-noisy is for --format webdataset (the other formats always write the noisy images)")
    if shards and args.no_raw:
        parser.error("--no-raw is for --format png/tiff (shards hold no RAW: it is regenerated)")
    if shards:
        try:
            import webdataset  # noqa: F401
        except ImportError:
            parser.error("--format webdataset needs the webdataset package: pip install 'cycleisp_fast[shards]'")
    rank, world_size = _torchrun_place(parser)
    weights = _weights(args, parser)
    levels, args.noise, ratio = _noise_choice(args, parser)
    images = _load_inputs(list(args.inputs), args.max_size)
    settings = {
        "pipeline": args.pipeline,
        "levels": levels,
        "noise": args.noise,
        **({"ratio": list(ratio)} if ratio is not None else {}),
        "seed": args.seed,
        "repeat": args.repeat,
        "max_size": args.max_size,
        "format": args.format,
        **(
            {"shard_size": args.shard_size, "with_noisy": args.with_noisy}
            if shards
            else {"batch_size": args.batch_size, "raw": not args.no_raw}
        ),
        "inputs": list(images),
        "weights": {k: os.fspath(v) for k, v in weights.items()} if weights else None,
    }
    lock = f".cycleisp-fast.rank{rank}.lock" if world_size > 1 else ".cycleisp-fast.lock"
    with run_folder_lock(args.out, "synth", name=lock):
        _check_settings(args.out, settings)
        if shards:
            written, total = _synthesize_shards(args, images, weights, levels, ratio, rank, world_size)
            who = f"rank {rank} of {world_size} wrote" if world_size > 1 else "wrote"
            print(f"{who} {written} of {total} shards in {args.out} (shards.json lists them)")
            return 0
        count = _synthesize(args, images, weights, levels, ratio)
    print(f"{count} pairs in {args.out} (clean/, noisy/{'' if args.no_raw else ', raw/'})")
    return 0


def _torchrun_place(parser: argparse.ArgumentParser) -> tuple[int, int]:
    """``(rank, world size)`` from torchrun's RANK and WORLD_SIZE (0 of 1 without them)."""
    try:
        rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        parser.error(
            f"RANK and WORLD_SIZE must be integers, got {os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}"
        )
    if not 0 <= rank < world_size:
        parser.error(f"RANK must be in [0, WORLD_SIZE), got RANK={rank}, WORLD_SIZE={world_size}")
    return rank, world_size


def _items(names: list[str], repeat: int) -> list[Item]:
    """Every output pair in order: each image's copies, the images in input order."""
    return [
        Item(i, k, names[i] if repeat == 1 else f"{names[i]}_{k}") for i in range(len(names)) for k in range(repeat)
    ]


def _synthesize_shards(
    args: argparse.Namespace,
    images: dict[str, torch.Tensor],
    weights,
    levels: str,
    ratio: tuple[float, float] | None,
    rank: int,
    world_size: int,
) -> tuple[int, int]:
    """Writes this rank's shards into ``args.out`` (its lock held), skipping those already there; returns
    ``(shards written now, shards of the run)``."""
    from tqdm import tqdm

    from cycleisp_fast.data.files import atomic_path
    from cycleisp_fast.noise import make_noise_model
    from cycleisp_fast.pipelines.shards import (
        INDEX_FILE,
        SHARD_FORMAT,
        encode_png16,
        owned_shards,
        sample_key,
        shard_input,
        shard_name,
        shard_plan,
        write_shard,
    )
    from cycleisp_fast.pipelines.synthesis import make_synthesizer

    names, tensors = list(images), list(images.values())
    items = _items(names, args.repeat)
    plan = shard_plan(len(items), args.shard_size)
    index = {
        "format": SHARD_FORMAT,
        "samples": len(items),
        "shards": [{"file": shard_name(s), "keys": [sample_key(i) for i in part]} for s, part in enumerate(plan)],
    }
    with atomic_path(args.out / INDEX_FILE) as temporary:  # every rank writes the same bytes
        temporary.write_text(json.dumps(index, indent=1) + "\n")
    mine = owned_shards(len(plan), rank, world_size)
    todo = [s for s in mine if not (args.out / shard_name(s)).exists()]
    for s in todo:  # what a killed process left of its shard: a hidden temporary file
        for stale in args.out.glob(f".{shard_name(s)}.*.tmp.tar"):
            stale.unlink(missing_ok=True)
    noise = make_noise_model(levels, args.noise, ratio=ratio, backend=args.backend)
    synth = make_synthesizer(args.pipeline, weights, noise=noise, device=args.device, backend=args.backend)
    total = sum(len(plan[s]) for s in mine)
    done = total - sum(len(plan[s]) for s in todo)
    if done:
        print(f"resuming: {len(mine) - len(todo)} of {len(mine)} shards already in {args.out}")
    with tqdm(total=total, initial=done, unit="pair", disable=None) as progress:
        for s in todo:
            samples = []
            for i in plan[s]:
                item = items[i]
                clean_png, clean = shard_input(tensors[item.image])
                with torch.no_grad():
                    pairs = synth(clean[None].to(args.device), seed=args.seed, offset=i)
                meta = {
                    "format": SHARD_FORMAT,
                    "index": i,
                    "source": names[item.image],
                    "copy": item.copy,
                    "size": list(clean.shape[1:]),
                    "max_size": args.max_size,
                    "seed": args.seed,
                    "offset": i,
                    "pipeline": args.pipeline,
                    "levels": levels,
                    "noise": args.noise,
                    **({"ratio": list(ratio)} if ratio is not None else {}),
                    "shot": pairs.shot[0].tolist(),
                    "read": pairs.read[0].tolist(),
                    "weights": {k: os.fspath(v) for k, v in weights.items()} if weights else None,
                    "camera": None
                    if pairs.camera is None
                    else {field: value[0].tolist() for field, value in pairs.camera._asdict().items()},
                }
                files = {"clean": clean_png}
                if args.with_noisy:
                    files["noisy"] = encode_png16(pairs.noisy[0].float().cpu())
                samples.append({"key": sample_key(i), "json": meta, "png": files})
                progress.update(1)
            write_shard(args.out / shard_name(s), samples)
    return len(todo), len(plan)


def _synthesize(
    args: argparse.Namespace, images: dict[str, torch.Tensor], weights, levels: str, ratio: tuple[float, float] | None
) -> int:
    """Writes every pair of the run into ``args.out`` (its lock held), skipping those already there; returns the
    number of pairs of the run."""
    from tqdm import tqdm

    from cycleisp_fast.data.files import save_numpy
    from cycleisp_fast.data.images import write_image
    from cycleisp_fast.noise import make_noise_model
    from cycleisp_fast.pipelines.synthesis import make_synthesizer

    suffix, bits = FORMATS[args.format]
    noise = make_noise_model(levels, args.noise, ratio=ratio, backend=args.backend)
    synth = make_synthesizer(args.pipeline, weights, noise=noise, device=args.device, backend=args.backend)
    names, tensors = list(images), list(images.values())
    items = _items(names, args.repeat)
    batches = plan_batches(items, [tuple(t.shape[1:]) for t in tensors], args.batch_size)
    done = {
        item.name for item in items if all(p.exists() for p in _outputs(args.out, item.name, suffix, not args.no_raw))
    }
    if done:
        print(f"resuming: {len(done)} of {len(items)} pairs already in {args.out}")
    with tqdm(total=len(items), initial=len(done), unit="pair", disable=None) as progress:
        for offset, batch in enumerate(batches):
            if all(item.name in done for item in batch):
                continue
            clean = torch.stack([tensors[item.image] for item in batch]).to(args.device)
            with torch.no_grad():
                pairs = synth(clean, seed=args.seed, offset=offset)
            for j, item in enumerate(batch):
                if item.name in done:
                    continue
                clean_path, noisy_path, *raw_path = _outputs(args.out, item.name, suffix, not args.no_raw)
                if raw_path:
                    arrays = {
                        "clean": pairs.clean_raw[j],
                        "noisy": pairs.noisy_raw[j],
                        "variance": pairs.variance[j],
                        "shot": pairs.shot[j],
                        "read": pairs.read[j],
                    }
                    if pairs.camera is not None:
                        arrays.update({field: value[j] for field, value in pairs.camera._asdict().items()})
                    save_numpy(raw_path[0], **{k: v.float() for k, v in arrays.items()})
                write_image(clean_path, pairs.clean[j].float().cpu(), bits=bits)
                write_image(noisy_path, pairs.noisy[j].float().cpu(), bits=bits)
                progress.update(1)
    return len(items)
