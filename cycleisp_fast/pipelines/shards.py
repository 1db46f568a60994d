"""Synthetic pairs as webdataset shards that regenerate their noise exactly: the shard layout ``synth --format
webdataset`` writes (:func:`write_shard`), the split of the shards between processes (:func:`owned_shards`) and the
streaming dataset that reads them back and regenerates every noisy sample on the device (:class:`SyntheticShards`).

A sample's noise is a pure function of ``(seed, offset)`` and of its clean input, so a shard need only hold the clean
image and the metadata: sample ``i`` of a run is synthesised alone (a batch of one) at ``offset = i``, from its clean
sRGB stored losslessly as a 16-bit PNG (the synthesizer's input is exactly ``png / 65535``; an 8-bit source's
``k / 255`` is stored as ``257 k``, the same number). Each sample of a shard, keyed ``%09d`` by its index (keys do not
depend on file names, which may hold dots, which webdataset splits on):

    KEY.clean.png     the clean sRGB, 16-bit RGB PNG (the synthesizer's input)
    KEY.json          the metadata: index, source file and copy, seed, offset, pipeline, noise levels and model,
                      the sampled levels (shot, read) and, for unprocessing, the camera; the weights for cycleisp
    KEY.noisy.png     only with ``--with-noisy``: the noisy sRGB, 16-bit PNG

Shards are ``OUT/000000.tar``, ``OUT/000001.tar``, ... of ``shard_size`` samples each (the last may be shorter),
written atomically with fixed tar headers (mtime 0), so that a shard's bytes depend only on the run's settings:
any process that writes it writes the same file. ``OUT/shards.json`` lists the shards and their keys in order.

Example:
    >>> from cycleisp_fast.pipelines.shards import SyntheticShards
    >>> shards = SyntheticShards("pairs/{000000..000009}.tar")  # doctest: +SKIP
    >>> for sample in shards:  # doctest: +SKIP
    ...     noisy, clean = sample["noisy"], sample["clean"]  # (3, H, W) each, regenerated exactly
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import png
import torch
from torch import Tensor

from cycleisp_fast.data.files import DataFileError, atomic_path
from cycleisp_fast.data.images import quantize
from cycleisp_fast.noise import NoiseModel
from cycleisp_fast.pipelines.synthesis import make_synthesizer
from cycleisp_fast.seeds import MAX_SEED, Stream, keyed_generator

SHARD_FORMAT = 1
RESAMPLE_STEP = 0x9E3779B97F4A7C15
"""With ``resample``, epoch ``e`` draws under the seed ``(seed + e * RESAMPLE_STEP) mod 2**63`` (the golden-ratio
constant: consecutive epochs' seeds lie far apart)."""
INDEX_FILE = "shards.json"


def shard_name(number: int) -> str:
    """``"000012.tar"``: the file of shard ``number``."""
    return f"{number:06d}.tar"


def sample_key(index: int) -> str:
    """``"000000123"``: the webdataset key of sample ``index``."""
    return f"{index:09d}"


def shard_plan(count: int, shard_size: int) -> list[range]:
    """The sample indices of each shard: ``count`` samples in order, ``shard_size`` per shard."""
    return [range(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def owned_shards(shards: int, rank: int, world_size: int) -> list[int]:
    """The shards process ``rank`` of ``world_size`` writes: every ``world_size``-th from ``rank`` (disjoint, and
    together all of them)."""
    return list(range(rank, shards, world_size))


def encode_png16(image: Tensor) -> bytes:
    """A ``(3, H, W)`` float image in [0, 1] as a 16-bit RGB PNG (:func:`~cycleisp_fast.data.images.quantize`)."""
    samples = quantize(image, 16)
    height, width = samples.shape[:2]
    buffer = io.BytesIO()
    png.Writer(width, height, greyscale=False, bitdepth=16).write(buffer, samples.reshape(height, -1))
    return buffer.getvalue()


def decode_png16(data: bytes, where: str) -> Tensor:
    """The ``(3, H, W)`` float32 image of a 16-bit RGB PNG: samples / 65535 (DataFileError naming ``where``)."""
    try:
        width, height, rows, info = png.Reader(bytes=data).read()
        if info["bitdepth"] != 16 or info["planes"] != 3:
            raise ValueError(f"expected a 16-bit RGB PNG, got {info['bitdepth']} bits, {info['planes']} planes")
        samples = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, 3)
    except (png.Error, ValueError) as error:
        raise DataFileError(f"{where}: not a readable 16-bit PNG ({error})") from error
    return torch.from_numpy(samples.transpose(2, 0, 1).copy()).to(torch.float32).div_(65535.0)


def shard_input(clean: Tensor) -> tuple[bytes, Tensor]:
    """``(png, image)``: a clean ``(3, H, W)`` image as a shard stores it (16-bit PNG) and as the synthesizer takes
    it, decoded from that PNG: the same numbers that :class:`SyntheticShards` regenerates from."""
    data = encode_png16(clean)
    return data, decode_png16(data, "clean image")


def write_shard(path: str | os.PathLike, samples: Sequence[Mapping[str, Any]]) -> None:
    """Writes one shard atomically: each sample a dict of ``key``, ``json`` (the metadata dict) and ``png`` files
    (``{"clean": bytes, "noisy": bytes}``); tar headers fixed (mtime 0, one owner), members sorted per sample."""
    import webdataset

    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            writer = webdataset.TarWriter(handle, encoder=False, mtime=0.0, user="cycleisp", group="cycleisp")
            for sample in samples:
                files = {f"{name}.png": data for name, data in sample["png"].items()}
                meta = json.dumps(sample["json"], sort_keys=True).encode("utf-8")
                writer.write({"__key__": sample["key"], "json": meta, **files})
            writer.close()


def read_shard(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The samples of a shard in order: ``{"key", "meta", "clean": (3, H, W), "noisy": (3, H, W) or None}``.

    Raises:
        DataFileError: the shard is truncated or corrupt, or a sample lacks its metadata or clean image (named).
    """
    path = Path(path)
    current: dict[str, Any] = {}

    def finish(sample: dict[str, Any]) -> dict[str, Any]:
        where = f"shard {path}, sample {sample['key']}"
        if "json" not in sample or "clean.png" not in sample:
            raise DataFileError(f"{where}: lacks its {'json' if 'json' not in sample else 'clean.png'} member")
        try:
            meta = json.loads(sample["json"])
        except ValueError as error:
            raise DataFileError(f"{where}: its metadata is not JSON ({error})") from error
        if not isinstance(meta, dict) or meta.get("format") != SHARD_FORMAT:
            raise DataFileError(f"{where}: metadata of an unknown format (expected format {SHARD_FORMAT})")
        noisy = sample.get("noisy.png")
        return {
            "key": sample["key"],
            "meta": meta,
            "clean": decode_png16(sample["clean.png"], f"{where} clean.png"),
            "noisy": None if noisy is None else decode_png16(noisy, f"{where} noisy.png"),
        }

    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, suffix = member.name.rpartition("/")[2].partition(".")
                if current and current["key"] != key:
                    yield finish(current)
                    current = {}
                current.setdefault("key", key)
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise tarfile.ReadError(f"member {member.name} holds {len(data)} of its {member.size} bytes")
                current[suffix] = data
            _check_end_of_archive(tar, path)
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise FileNotFoundError(f"shard {path} does not exist") from None
        raise DataFileError(f"shard {path} is truncated or corrupt: {type(error).__name__}: {error}") from error
    if current:
        yield finish(current)


def _check_end_of_archive(tar: tarfile.TarFile, path: Path) -> None:
    """A whole tar file ends with two zero blocks after its last member; a file cut at a member boundary does not
    (tarfile takes the end of the data for the end of the archive)."""
    tar.fileobj.seek(tar.offset)
    tail = tar.fileobj.read(2 * tarfile.BLOCKSIZE)
    if len(tail) < 2 * tarfile.BLOCKSIZE or tail.count(0) != len(tail):
        raise tarfile.ReadError("it ends without the end-of-archive blocks")


def expand_urls(urls: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Shard paths from a brace pattern (``"dir/{000000..000123}.tar"``, as webdataset writes them), a folder (its
    ``shards.json`` index), or a list of paths."""
    if isinstance(urls, (str, os.PathLike)):
        text = os.fspath(urls)
        if Path(text).is_dir():
            index = Path(text) / INDEX_FILE
            if not index.is_file():
                raise FileNotFoundError(
                    f"{text} holds no {INDEX_FILE}: not a folder written by synth --format webdataset"
                )
            return [os.fspath(Path(text) / entry["file"]) for entry in json.loads(index.read_text())["shards"]]
        from braceexpand import braceexpand

        return list(braceexpand(text))
    return [os.fspath(url) for url in urls]


def _place() -> tuple[int, int]:
    """``(rank, world size)`` of this process: torch.distributed's when initialised, else 0 of 1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class SyntheticShards(torch.utils.data.IterableDataset):
    """Streams the samples of webdataset shards written by ``synth --format webdataset`` and regenerates each noisy
    sample from its clean image and metadata, exactly as ``synth`` made it.

    Each item: ``key``, ``meta`` (the sample's metadata), sRGB ``clean`` and ``noisy`` ``(3, H, W)``, packed RGGB
    ``clean_raw``, ``noisy_raw``, ``variance`` ``(4, H/2, W/2)``, the levels ``shot``, ``read`` (scalars), on
    ``device``.

    Splitting: every epoch, the shards are ordered by a permutation keyed by ``(seed, epoch)`` (``shuffle``) and
    dealt round-robin to the ``world size x workers`` readers (torch.distributed's ranks, when initialised, times the
    DataLoader's workers); the shards that do not divide evenly among the ranks are left out of that epoch (other
    ones each epoch), so every rank sees the same number of shards (DDP needs equal steps) and no sample twice. Call
    :meth:`set_epoch` before each epoch. Samples keep their shard's order.

    Noise: ``resample = False`` (default) regenerates the noise the shard was made with, every epoch;
    ``resample = True`` draws fresh noise (and camera) each epoch ``e``, under the seed ``(seed + e * RESAMPLE_STEP)
    mod 2**63`` at the sample's own offset; epoch 0 is the original.

    Args:
        urls: a brace pattern (``"pairs/{000000..000009}.tar"``), a folder written by ``synth`` or a list of paths.
        weights: for the cycleisp pipeline, the ``rgb2raw``, ``ccm``, ``raw2rgb`` checkpoints (default: the paths
            the metadata names).
        device: where the pairs are synthesised (keep the CPU inside DataLoader workers).
        backend: the fused ops' backend.
        shuffle: order the shards by ``(seed, epoch)`` (else in the given order).
        seed: the seed of the shard order.
        resample: draw fresh noise each epoch.
        on_error: ``"raise"`` (default) a corrupt or truncated shard, naming it; ``"warn"``: warn and skip the rest
            of that shard.
    """

    def __init__(
        self,
        urls: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        weights: Mapping[str, str | os.PathLike] | None = None,
        device: str | torch.device = "cpu",
        backend: str | None = None,
        shuffle: bool = True,
        seed: int = 0,
        resample: bool = False,
        on_error: str = "raise",
    ):
        if on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', got {on_error!r}")
        self.urls = expand_urls(urls)
        if not self.urls:
            raise ValueError("urls names no shards")
        self.weights, self.device, self.backend = weights, torch.device(device), backend
        self.shuffle, self.seed, self.resample, self.on_error = shuffle, seed, resample, on_error
        self.epoch = 0
        self._synthesizers: dict[tuple, Any] = {}

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that orders the shards (and, with ``resample``, draws the noise)."""
        self.epoch = int(epoch)

    def shards_of(self, rank: int, world_size: int, worker: int = 0, workers: int = 1) -> list[str]:
        """The shards that reader ``(rank, worker)`` reads this epoch."""
        order = list(range(len(self.urls)))
        if self.shuffle:
            generator = keyed_generator(self.seed, self.epoch, Stream.SHARD_ORDER)
            order = torch.randperm(len(order), generator=generator).tolist()
        order = order[: len(order) // world_size * world_size]
        mine = order[rank::world_size]
        return [self.urls[i] for i in mine[worker::workers]]

    def _synthesizer(self, meta: dict[str, Any]):
        key = (meta["pipeline"], meta["levels"], meta["noise"])
        if key not in self._synthesizers:
            weights = None
            if meta["pipeline"] == "cycleisp":
                weights = dict(self.weights) if self.weights is not None else meta["weights"]
            noise = NoiseModel(meta["levels"], meta["noise"], backend=self.backend)
            self._synthesizers[key] = make_synthesizer(
                meta["pipeline"], weights, noise=noise, device=self.device, backend=self.backend
            )
        return self._synthesizers[key]

    def regenerate(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The pair of one sample of :func:`read_shard`, synthesised from its clean image and metadata."""
        meta = sample["meta"]
        seed = meta["seed"]
        if self.resample and self.epoch:
            seed = (seed + self.epoch * RESAMPLE_STEP) % MAX_SEED
        with torch.no_grad():
            pairs = self._synthesizer(meta)(sample["clean"][None].to(self.device), seed=seed, offset=meta["offset"])
        return {
            "key": sample["key"],
            "meta": meta,
            "clean": pairs.clean[0],
            "noisy": pairs.noisy[0],
            "clean_raw": pairs.clean_raw[0],
            "noisy_raw": pairs.noisy_raw[0],
            "variance": pairs.variance[0],
            "shot": pairs.shot[0],
            "read": pairs.read[0],
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world_size = _place()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for url in self.shards_of(rank, world_size, worker, workers):
            try:
                for sample in read_shard(url):
                    yield self.regenerate(sample)
            except DataFileError as error:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"skipping the rest of a shard: {error}", RuntimeWarning, stacklevel=2)
