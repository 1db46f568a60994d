"""Synthetic pairs as webdataset shards that regenerate their noise exactly: the shard layout ``synth --format
webdataset`` writes (:func:`write_shard`), the split of the shards between processes (:func:`owned_shards`), the
streaming dataset that reads them back and regenerates every noisy sample on the device (:class:`SyntheticShards`),
and random access for training crops (:class:`ShardSamples`, :class:`ShardPatches`; both regenerate through a
:class:`Regenerator`).

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

import json
import os
import struct
import tarfile
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import png
import torch
from torch import Tensor

from cycleisp_fast.data.crops import crop_offsets
from cycleisp_fast.data.files import DataFileError, atomic_path
from cycleisp_fast.data.images import png_header, quantize
from cycleisp_fast.noise import make_noise_model
from cycleisp_fast.pipelines.synthesis import make_synthesizer
from cycleisp_fast.seeds import MAX_SEED, Stream, keyed_generator

SHARD_FORMAT = 1
RESAMPLE_STEP = 0x9E3779B97F4A7C15
"""With ``resample``, epoch ``e`` draws under the seed ``(seed + e * RESAMPLE_STEP) mod 2**63`` (the golden-ratio
constant: consecutive epochs' seeds lie far apart)."""
INDEX_FILE = "shards.json"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png16(image: Tensor) -> bytes:
    """A ``(3, H, W)`` float image in [0, 1] as a 16-bit RGB PNG (:func:`~cycleisp_fast.data.images.quantize`).

    Every row is stored with PNG's "Up" filter (the byte-wise difference to the row above) and deflated at level 1:
    on photographs about 5x faster than a row-by-row encoder at the default level, and a quarter smaller than no
    filter (any PNG reader decodes it; the tests read it back with pypng)."""
    return _encode_samples(quantize(image, 16))


def _encode_samples(samples: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint16 samples as a PNG (see :func:`encode_png16`)."""
    height, width = samples.shape[:2]
    rows = samples.astype(">u2").reshape(height, width * 6 // 2).view(np.uint8)
    filtered = np.empty((height, 1 + rows.shape[1]), dtype=np.uint8)
    filtered[:, 0] = 2  # the Up filter
    filtered[:1, 1:] = rows[:1]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter is defined
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, RGB, deflate, no interlace
    idat = zlib.compress(filtered.tobytes(), 1)
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _samples_of_up_filtered_png(data: bytes) -> np.ndarray | None:
    """``(H, W, 3)`` uint16 samples of a 16-bit RGB PNG whose rows all use the Up filter (what
    :func:`encode_png16` writes), decoded with numpy; None for any other PNG (or a malformed one)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    position, header, idat = len(_PNG_SIGNATURE), None, []
    while position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        if len(body) != length or data[position + 8 + length : position + 12 + length] != struct.pack(
            ">I", zlib.crc32(kind + body)
        ):
            return None
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body) if length == 13 else None
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None or header[2:] != (16, 2, 0, 0, 0):
        return None
    width, height = header[:2]
    expected = height * (1 + width * 6)
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), expected + 1)  # never more than the header claims
    except zlib.error:
        return None
    if len(raw) != expected:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * 6)
    if not np.all(rows[:, 0] == 2):
        return None
    unfiltered = np.cumsum(rows[:, 1:], axis=0, dtype=np.uint8)  # undoes Up: each row plus the one above, mod 256
    return unfiltered.view(">u2").astype(np.uint16).reshape(height, width, 3)


def decode_png16(data: bytes, where: str) -> Tensor:
    """The ``(3, H, W)`` float32 image of a 16-bit RGB PNG: samples / 65535 (DataFileError naming ``where``). The
    PNGs that :func:`encode_png16` writes are decoded with numpy, any other with pypng; a header over the pixel
    limit (:mod:`cycleisp_fast.data.limits`) is refused before anything is decompressed."""
    png_header(data, where)
    samples = _samples_of_up_filtered_png(data)
    if samples is None:
        try:
            width, height, rows, info = png.Reader(bytes=data).read()
            if info["bitdepth"] != 16 or info["planes"] != 3:
                raise ValueError(f"expected a 16-bit RGB PNG, got {info['bitdepth']} bits, {info['planes']} planes")
            samples = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, 3)
        except (png.Error, ValueError) as error:
            raise DataFileError(f"{where}: not a readable 16-bit PNG ({error})") from error
    return _as_input(samples)


def _as_input(samples: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint16 samples -> the ``(3, H, W)`` float32 image ``samples / 65535``."""
    return torch.from_numpy(samples.transpose(2, 0, 1).copy()).to(torch.float32).div_(65535.0)


def shard_input(clean: Tensor) -> tuple[bytes, Tensor]:
    """``(png, image)``: a clean ``(3, H, W)`` image as a shard stores it (16-bit PNG) and as the synthesizer takes
    it, the PNG's samples / 65535: the same numbers that :func:`decode_png16` gives :class:`SyntheticShards`."""
    samples = quantize(clean, 16)
    return _encode_samples(samples), _as_input(samples)


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


def _decode_sample(path: Path, key: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    """``{"key", "meta", "clean", "noisy"}`` of one sample's member files (suffix -> bytes) of shard ``path``."""
    where = f"shard {path}, sample {key}"
    if "json" not in files or "clean.png" not in files:
        raise DataFileError(f"{where}: lacks its {'json' if 'json' not in files else 'clean.png'} member")
    try:
        meta = json.loads(files["json"])
    except ValueError as error:
        raise DataFileError(f"{where}: its metadata is not JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != SHARD_FORMAT:
        raise DataFileError(f"{where}: metadata of an unknown format (expected format {SHARD_FORMAT})")
    noisy = files.get("noisy.png")
    return {
        "key": key,
        "meta": meta,
        "clean": decode_png16(files["clean.png"], f"{where} clean.png"),
        "noisy": None if noisy is None else decode_png16(noisy, f"{where} noisy.png"),
    }


def _members(path: Path, read: bool) -> Iterator[tuple[str, str, Any]]:
    """``(key, suffix, bytes if read else (offset, size))`` of every file of shard ``path``, in order; the shard's
    whole structure is checked (member sizes, the end-of-archive blocks). DataFileError names a broken shard."""
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, suffix = member.name.rpartition("/")[2].partition(".")
                if not read:
                    yield key, suffix, (member.offset_data, member.size)
                    continue
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise tarfile.ReadError(f"member {member.name} holds {len(data)} of its {member.size} bytes")
                yield key, suffix, data
            _check_end_of_archive(tar, path)
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise FileNotFoundError(f"shard {path} does not exist") from None
        raise DataFileError(f"shard {path} is truncated or corrupt: {type(error).__name__}: {error}") from error


def read_shard(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The samples of a shard in order: ``{"key", "meta", "clean": (3, H, W), "noisy": (3, H, W) or None}``.

    Raises:
        DataFileError: the shard is truncated or corrupt, or a sample lacks its metadata or clean image (named).
    """
    path = Path(path)
    key, files = None, {}
    for member_key, suffix, data in _members(path, read=True):
        if files and member_key != key:
            yield _decode_sample(path, key, files)
            files = {}
        key, files[suffix] = member_key, data
    if files:
        yield _decode_sample(path, key, files)


class ShardSamples(torch.utils.data.Dataset):
    """Random access to the samples of shards (for map-style datasets, e.g. training crops): item ``j`` is the
    ``j``-th sample over the shards in order, as :func:`read_shard` gives it. Opening reads every shard's tar
    headers (not the data) into an index, and checks each shard whole.

    Args:
        urls: as :class:`SyntheticShards` takes them.
    """

    def __init__(self, urls: str | os.PathLike | Sequence[str | os.PathLike]):
        self.urls = [Path(url) for url in expand_urls(urls)]
        self.entries: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
        for number, url in enumerate(self.urls):
            for key, suffix, place in _members(url, read=False):
                if not self.entries or self.entries[-1][:2] != (number, key):
                    self.entries.append((number, key, {}))
                self.entries[-1][2][suffix] = place
        if not self.entries:
            raise DataFileError(f"the shards {', '.join(map(str, self.urls[:3]))} hold no samples")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        number, key, places = self.entries[index]
        path, files = self.urls[number], {}
        try:
            with open(path, "rb") as handle:
                for suffix, (offset, size) in places.items():
                    handle.seek(offset)
                    files[suffix] = handle.read(size)
        except OSError as error:
            raise DataFileError(f"shard {path} cannot be read: {error}") from error
        if any(len(files[suffix]) != size for suffix, (_, size) in places.items()):
            raise DataFileError(f"shard {path} is truncated: it changed since it was indexed")
        return _decode_sample(path, key, files)


class Regenerator:
    """Synthesises a shard sample's pair again from its clean image and metadata (one synthesizer per pipeline,
    levels and noise model, built on first use).

    Args:
        weights: for the cycleisp pipeline, the ``rgb2raw``, ``ccm``, ``raw2rgb`` checkpoints (default: the paths
            the metadata names).
        device: where the pairs are synthesised.
        backend: the fused ops' backend.
        noise_std: also make AINDNet's noise-map target (``noise_std``; draws nothing more).
    """

    def __init__(
        self,
        weights: Mapping[str, str | os.PathLike] | None = None,
        *,
        device: str | torch.device = "cpu",
        backend: str | None = None,
        noise_std: bool = False,
    ):
        self.weights, self.device, self.backend, self.noise_std = weights, torch.device(device), backend, noise_std
        self._synthesizers: dict[tuple, Any] = {}

    def _synthesizer(self, meta: dict[str, Any]):
        ratio = tuple(meta["ratio"]) if meta.get("ratio") is not None else None
        key = (meta["pipeline"], meta["levels"], meta["noise"], ratio)
        if key not in self._synthesizers:
            weights = None
            if meta["pipeline"] == "cycleisp":
                weights = dict(self.weights) if self.weights is not None else meta["weights"]
            noise = make_noise_model(meta["levels"], meta["noise"], ratio=ratio, backend=self.backend)
            self._synthesizers[key] = make_synthesizer(
                meta["pipeline"],
                weights,
                noise=noise,
                noise_std=self.noise_std,
                device=self.device,
                backend=self.backend,
            )
        return self._synthesizers[key]

    def __call__(self, sample: dict[str, Any], *, epoch: int = 0) -> dict[str, Any]:
        """``key``, ``meta`` and the pair's tensors without the batch dimension (sRGB ``clean``, ``noisy``, packed
        ``clean_raw``, ``noisy_raw``, ``variance``, ``shot``, ``read``, and ``noise_std``); ``epoch > 0`` draws
        under the seed ``(seed + epoch * RESAMPLE_STEP) mod 2**63`` (fresh noise), 0 the stored noise."""
        meta = sample["meta"]
        seed = (meta["seed"] + epoch * RESAMPLE_STEP) % MAX_SEED if epoch else meta["seed"]
        with torch.no_grad():
            pairs = self._synthesizer(meta)(sample["clean"][None].to(self.device), seed=seed, offset=meta["offset"])
        tensors = {name: value[0] for name, value in pairs._asdict().items() if isinstance(value, Tensor)}
        return {"key": sample["key"], "meta": meta, **tensors}


class ShardPatches(torch.utils.data.Dataset):
    """Aligned random crops of regenerated shard samples, for training: item ``i`` is a random sample of
    ``samples``, its pair regenerated exactly (:class:`Regenerator`), then cropped at an even offset to ``p x p``
    (sRGB fields ``clean``, ``noisy``, ``noise_std``) and ``p/2 x p/2`` (packed RAW fields ``clean_raw``,
    ``noisy_raw``, ``variance``; ``shot`` and ``read`` as they are); the sample and the crop are drawn from a
    generator keyed by ``(seed, i)``. No flips: the noise was drawn for the image as stored.

    Args:
        samples: a :class:`ShardSamples`.
        regenerate: a :class:`Regenerator` (on the CPU inside DataLoader workers).
        patch_size: ``p``, even.
        length: the number of items.
        seed: the draws' seed.
    """

    def __init__(self, samples: ShardSamples, regenerate: Regenerator, patch_size: int, *, length: int, seed: int):
        if patch_size < 2 or patch_size % 2:
            raise ValueError(f"patch_size must be even and at least 2, got {patch_size}")
        self.samples, self.regenerate, self.patch_size, self.length, self.seed = (
            samples,
            regenerate,
            patch_size,
            length,
            seed,
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} patches")
        draws = torch.rand(3, generator=keyed_generator(self.seed, index, Stream.SHARD_PATCH), dtype=torch.float64)
        draws = draws.tolist()
        sample = self.samples[min(int(draws[0] * len(self.samples)), len(self.samples) - 1)]
        return crop_pair(self.regenerate(sample), self.patch_size, draws[1:3])


def crop_pair(pair: Mapping[str, Any], size: int, uniforms: Sequence[float] | None = None) -> dict[str, Tensor]:
    """The ``size x size`` crop (``size / 2`` for the packed RAW fields) of a regenerated pair at an even offset
    picked by two uniform draws (every even offset equally likely), or centred (even offset) when ``uniforms`` is
    None. DataFileError when the sample is smaller than ``size`` (named)."""
    height, width = pair["clean"].shape[-2:]
    if min(height, width) < size:
        raise DataFileError(f"shard sample {pair['key']} is {width}x{height}, smaller than the crop {size}")
    top, left = crop_offsets(height, width, size, uniforms)
    crops = {}
    for name, value in pair.items():
        if not isinstance(value, Tensor):
            continue
        if value.dim() == 3 and value.shape[-2:] == (height, width):
            crops[name] = value[:, top : top + size, left : left + size].contiguous()
        elif value.dim() == 3:  # packed RAW, half the size
            crops[name] = value[:, top // 2 : (top + size) // 2, left // 2 : (left + size) // 2].contiguous()
        else:
            crops[name] = value
    return crops


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
        self.regenerate = Regenerator(weights, device=device, backend=backend)
        self.shuffle, self.seed, self.resample, self.on_error = shuffle, seed, resample, on_error
        self.epoch = 0

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

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world_size = _place()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for url in self.shards_of(rank, world_size, worker, workers):
            try:
                for sample in read_shard(url):
                    yield self.regenerate(sample, epoch=self.epoch if self.resample else 0)
            except DataFileError as error:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"skipping the rest of a shard: {error}", RuntimeWarning, stacklevel=2)
