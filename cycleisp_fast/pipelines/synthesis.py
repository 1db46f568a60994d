"""Realistic noisy/clean pair synthesis, batched on the device, reproducible from ``(seed, offset)``.

Two synthesizers with one call signature, ``synth(clean (N, 3, H, W), *, seed=None, offset=0, generator=None)
-> SyntheticBatch``:

* :class:`UnprocessingSynthesizer` (the default; needs no weights): Brooks et al.'s analytic camera
  (:mod:`cycleisp_fast.pipelines.unprocessing`) with a random camera per image: sRGB -> packed RAW, noise in RAW
  (:class:`cycleisp_fast.noise.NoiseModel`, Brooks' levels by default), and both the clean and the noisy RAW
  developed by the same forward pipeline, so that the pair differs only by the noise.
* :class:`CycleISPSynthesizer`: CycleISP's learned pipeline as its generation scripts run it: the input blurred
  (5x5 Gaussian, sigma 1, reflect padding), ``Rgb2Raw`` clamped to [0, 1], noise in packed RAW (CycleISP's
  ``random_noise_levels_dnd``), ``Raw2Rgb`` guided by ``CCM`` of the blurred input, clamped; the clean target is
  the blurred input itself. Unlike the scripts, any even size works (no zero-padding to 512x512).

:class:`CleanPatches` is a seeded dataset of random clean crops, so that training synthesises its pairs on the fly
(``synth(batch.to(device), seed=seed, offset=step)``) instead of reading precomputed ones; :class:`SyntheticPairs`
is the per-item form, for ``DataLoader`` workers.
"""

from __future__ import annotations

import os
from typing import Mapping, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cycleisp_fast.checks import check_count, check_generator, check_int, check_tensor
from cycleisp_fast.data.crops import random_crop
from cycleisp_fast.noise import NoiseModel
from cycleisp_fast.pipelines.unprocessing import CameraParams, process, random_camera_params, unprocess
from cycleisp_fast.seeds import Stream, keyed_generator


class SyntheticBatch(NamedTuple):
    """A batch of synthetic pairs. sRGB ``clean``/``noisy`` ``(N, 3, H, W)`` in [0, 1]; packed RGGB ``clean_raw``,
    ``noisy_raw`` and ``variance = shot * noisy_raw + read`` ``(N, 4, H/2, W/2)``; the levels ``shot``, ``read``
    ``(N,)`` (variances); ``noise_std`` ``(N, 3, H, W)``, the per-pixel standard deviation of the sRGB noise to
    first order (AINDNet's noise-map target), or None unless the synthesizer was built with ``noise_std=True``;
    ``camera``: the :class:`CameraParams` of the analytic pipeline (None for the learned one)."""

    clean: Tensor
    noisy: Tensor
    clean_raw: Tensor
    noisy_raw: Tensor
    variance: Tensor
    shot: Tensor
    read: Tensor
    noise_std: Optional[Tensor] = None
    camera: Optional[CameraParams] = None


def _check_call(clean, seed, offset, generator) -> None:
    check_tensor(clean, "clean", shape_doc="(N, 3, H, W) sRGB in [0, 1], H and W even", channels=3, even=True)
    if not clean.is_floating_point():
        raise TypeError(f"clean must be a floating tensor in [0, 1], got {clean.dtype}")
    if seed is not None and generator is not None:
        raise ValueError("give seed (with offset) or generator, not both")
    check_generator(generator)


def _std_response(develop, clean_raw: Tensor, variance: Tensor, clean: Tensor) -> Tensor:
    """``|develop(clean_raw + sqrt(variance)) - clean|``: how far a one-sigma RAW shift moves each sRGB pixel, the
    first-order standard deviation of the developed noise (``clean = develop(clean_raw)``)."""
    return (develop(clean_raw + variance.sqrt()) - clean).abs()


class UnprocessingSynthesizer:
    """Brooks et al.'s pipeline: ``clean`` sRGB -> :func:`unprocess` (random camera per image) -> noise in RAW ->
    :func:`process` with the same camera (gains, demosaic, colour matrix, gamma, tone curve) for both the clean
    and the noisy RAW.

    Args:
        noise: the RAW noise; default ``NoiseModel("unprocessing")`` (Brooks' levels, heteroscedastic Gaussian,
            clipped to [0, 1], variance from the noisy RAW as CycleISP's denoiser takes it, on ``backend``).
        noise_std: also return :attr:`SyntheticBatch.noise_std` (one more ``process`` pass).
        backend: backend of the fused ops (Bayer, noise); None: the current one.
    """

    def __init__(self, noise: Optional[NoiseModel] = None, *, noise_std: bool = False, backend: Optional[str] = None):
        self.noise = NoiseModel("unprocessing", backend=backend) if noise is None else noise
        if not callable(self.noise):
            raise TypeError(f"noise must be a NoiseModel, got {type(noise).__name__}")
        self.noise_std = bool(noise_std)
        self.backend = backend

    def __repr__(self) -> str:
        return f"UnprocessingSynthesizer(noise={self.noise!r}, noise_std={self.noise_std})"

    def __call__(
        self, clean: Tensor, *, seed: Optional[int] = None, offset: int = 0, generator: Optional[torch.Generator] = None
    ) -> SyntheticBatch:
        """The pairs of ``clean`` ``(N, 3, H, W)`` (sRGB in [0, 1], H, W even), one random camera per image.

        The cameras and the noise are drawn from ``(seed, offset)`` when ``seed`` is given, else from ``generator``.
        """
        _check_call(clean, seed, offset, generator)
        camera_generator = generator if seed is None else keyed_generator(seed, offset, Stream.CAMERA)
        with torch.no_grad():
            camera = random_camera_params(
                clean.shape[0], generator=camera_generator, device=clean.device, dtype=clean.dtype
            )
        clean_raw = unprocess(clean, camera, backend=self.backend)
        sample = self.noise(clean_raw, seed=seed, offset=offset, generator=generator)

        def develop(raw: Tensor) -> Tensor:
            return process(
                raw,
                camera.red_gain,
                camera.blue_gain,
                camera.cam2rgb,
                rgb_gain=camera.rgb_gain,
                tone_map=True,
                backend=self.backend,
            )

        target = develop(clean_raw)
        noise_std = None
        if self.noise_std:
            noise_std = _std_response(develop, clean_raw, _clean_variance(sample, clean_raw), target)
        return SyntheticBatch(
            target,
            develop(sample.noisy),
            clean_raw,
            sample.noisy,
            sample.variance,
            sample.shot,
            sample.read,
            noise_std,
            camera,
        )


def _clean_variance(sample, clean_raw: Tensor) -> Tensor:
    """``shot * clean_raw + read`` with the sample's per-image (or per-channel) levels."""
    shot, read = sample.shot, sample.read
    shape = (clean_raw.shape[0], -1, 1, 1)
    return shot.reshape(shape).to(clean_raw.dtype) * clean_raw + read.reshape(shape).to(clean_raw.dtype)


PRE_BLUR_SIZE, PRE_BLUR_SIGMA = 5, 1.0
"""CycleISP's generation scripts blur every input with this Gaussian (reflect padding) before the networks."""


def pre_blur(x: Tensor) -> Tensor:
    """The generation scripts' input blur: a 5x5 Gaussian of sigma 1 with reflect padding 2, ``(N, 3, H, W)``."""
    from cycleisp_fast.models.cycleisp import gaussian_kernel

    kernel = gaussian_kernel(PRE_BLUR_SIZE, PRE_BLUR_SIGMA, 3).to(device=x.device, dtype=x.dtype)
    return F.conv2d(F.pad(x, (PRE_BLUR_SIZE // 2,) * 4, mode="reflect"), kernel, groups=3)


class CycleISPSynthesizer:
    """CycleISP's learned pipeline (its ``generate_rgb_data.py`` / ``generate_raw_data.py``), any even size.

    Args:
        rgb2raw: the :class:`~cycleisp_fast.models.Rgb2Raw` network with its weights, on the device of the batches.
        ccm: the :class:`~cycleisp_fast.models.CCM` network, likewise.
        raw2rgb: the :class:`~cycleisp_fast.models.Raw2Rgb` network, likewise.
        noise: default ``NoiseModel("cycleisp_dnd")`` (the scripts' levels: CycleISP's log10 variant).
        noise_std: also return :attr:`SyntheticBatch.noise_std` (one more ``Raw2Rgb`` pass).

    Images must be larger than 10 pixels (CCM's reflect padding). Gradients are tracked as autograd is set: wrap
    calls in ``torch.no_grad()`` to synthesise data (``synth`` and the trainer do); networks are used as given
    (call ``.eval()``; they have no dropout or batch norm anyway).
    """

    def __init__(
        self,
        rgb2raw: torch.nn.Module,
        ccm: torch.nn.Module,
        raw2rgb: torch.nn.Module,
        noise: Optional[NoiseModel] = None,
        *,
        noise_std: bool = False,
    ):
        self.rgb2raw, self.ccm, self.raw2rgb = rgb2raw, ccm, raw2rgb
        self.noise = NoiseModel("cycleisp_dnd") if noise is None else noise
        self.noise_std = bool(noise_std)

    def __call__(
        self, clean: Tensor, *, seed: Optional[int] = None, offset: int = 0, generator: Optional[torch.Generator] = None
    ) -> SyntheticBatch:
        """The pairs of ``clean`` ``(N, 3, H, W)`` (sRGB in [0, 1], H, W even); the target is ``clean`` blurred.

        The noise is drawn from ``(seed, offset)`` when ``seed`` is given, else from ``generator``; ``camera`` is None.
        """
        _check_call(clean, seed, offset, generator)
        target = pre_blur(clean)
        clean_raw = self.rgb2raw(target).clamp(0.0, 1.0)
        sample = self.noise(clean_raw, seed=seed, offset=offset, generator=generator)
        features = self.ccm(target)

        def develop(raw: Tensor) -> Tensor:
            return self.raw2rgb(raw, features).clamp(0.0, 1.0)

        noise_std = None
        if self.noise_std:
            noise_std = _std_response(develop, clean_raw, _clean_variance(sample, clean_raw), develop(clean_raw))
        return SyntheticBatch(
            target,
            develop(sample.noisy),
            clean_raw,
            sample.noisy,
            sample.variance,
            sample.shot,
            sample.read,
            noise_std,
            None,
        )


CYCLEISP_WEIGHTS = {"rgb2raw": "rgb2raw_joint.pth", "ccm": "ccm_joint.pth", "raw2rgb": "raw2rgb_joint.pth"}
"""The checkpoints the learned pipeline needs, and their official file names."""
SYNTHESIZERS = ("unprocessing", "cycleisp")


def make_synthesizer(
    kind: str = "unprocessing",
    weights: Optional[Mapping[str, str | os.PathLike]] = None,
    *,
    noise: Optional[NoiseModel] = None,
    noise_std: bool = False,
    device=None,
    backend: Optional[str] = None,
):
    """A synthesizer by name. ``"unprocessing"`` takes no weights; ``"cycleisp"`` needs ``weights`` with the keys
    ``rgb2raw``, ``ccm``, ``raw2rgb`` (paths to official or compatible checkpoints), loaded with
    :func:`cycleisp_fast.models.load_official` onto ``device`` in eval mode."""
    if kind == "unprocessing":
        if weights:
            raise ValueError("the unprocessing pipeline takes no weights; use kind='cycleisp' for the learned one")
        return UnprocessingSynthesizer(noise, noise_std=noise_std, backend=backend)
    if kind != "cycleisp":
        raise ValueError(f"kind must be one of {SYNTHESIZERS}, got {kind!r}")
    from cycleisp_fast.models import CCM, Raw2Rgb, Rgb2Raw, load_official

    weights = dict(weights or {})
    missing = [k for k in CYCLEISP_WEIGHTS if k not in weights]
    extra = [k for k in weights if k not in CYCLEISP_WEIGHTS]
    if missing or extra:
        raise ValueError(
            f"the cycleisp pipeline needs weights for {tuple(CYCLEISP_WEIGHTS)}; missing {missing}, unexpected {extra}"
        )
    networks = []
    for key, cls in zip(CYCLEISP_WEIGHTS, (Rgb2Raw, CCM, Raw2Rgb)):
        path = os.fspath(weights[key])
        try:
            networks.append(load_official(cls(backend=backend), path).to(device).eval())
        except ValueError as error:
            raise ValueError(f"{key} weights {path!r}: {error}") from error
    return CycleISPSynthesizer(*networks, noise=noise, noise_std=noise_std)


# --------------------------------------------------------------------------------------------------------
# Clean patches for on-the-fly training pairs
# --------------------------------------------------------------------------------------------------------


def dihedral(x: Tensor, k: int) -> Tensor:
    """The ``k``-th of the 8 flips/rotations of the square (``k`` in 0..7) of ``(..., H, W)``."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


class CleanPatches(torch.utils.data.Dataset):
    """Random clean crops for on-the-fly pair synthesis: item ``i`` is a ``(3, p, p)`` crop of a random image at an
    even offset, under one of the 8 flips/rotations, all drawn from a generator keyed by ``(seed, i)`` (so any
    number of workers and any order give the same items).

    Args:
        images: ``(3, H, W)`` float tensors in [0, 1], each at least ``patch_size`` in both sides.
        patch_size: p, even.
        length: the number of items (an epoch).
        seed: keys every item's generator with ``i`` (the same seed gives the same items).
        augment: apply the random flip/rotation (default True).
    """

    def __init__(self, images: Sequence[Tensor], patch_size: int, *, length: int, seed: int = 0, augment: bool = True):
        self.patch_size = check_count(patch_size, "patch_size", "the side of a patch")
        if self.patch_size % 2:
            raise ValueError(f"patch_size must be even (whole Bayer blocks), got {patch_size}")
        self.length = check_count(length, "length", "the number of patches")
        self.seed, self.augment = check_int(seed, "seed"), bool(augment)
        self.images = list(images)
        if not self.images:
            raise ValueError("images must hold at least one image")
        for index, image in enumerate(self.images):
            if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"images[{index}] must be a (3, H, W) tensor, got "
                    f"{tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__}"
                )
            if min(image.shape[1:]) < self.patch_size:
                raise ValueError(
                    f"images[{index}] is {tuple(image.shape[1:])}, smaller than patch_size "
                    f"{self.patch_size}: use a smaller patch_size or drop the image"
                )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} patches")
        generator = keyed_generator(self.seed, index, Stream.PATCH)
        draws = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        image = self.images[min(int(draws[0] * len(self.images)), len(self.images) - 1)]
        patch = random_crop(image, self.patch_size, draws[1:3])
        if self.augment:
            patch = dihedral(patch, min(int(draws[3] * 8), 7))
        return patch.contiguous()


class SyntheticPairs(torch.utils.data.Dataset):
    """Pairs synthesised per item, for a ``DataLoader`` with CPU workers: item ``i`` is ``synth`` applied to
    ``patches[i]`` with ``(seed, offset=i)``, as a dict of the :class:`SyntheticBatch` tensors without the batch
    dimension (``clean``, ``noisy``, ``clean_raw``, ``noisy_raw``, ``variance``, ``shot``, ``read`` and
    ``noise_std`` when the synthesizer makes it). On a GPU, synthesising whole batches on the device
    (``synth(batch.to(device), seed=seed, offset=step)``) is faster; this is the per-item form of the same pairs'
    recipe (a pair's noise depends on its batch position, so the two forms draw different samples)."""

    def __init__(self, patches: torch.utils.data.Dataset, synth=None, *, seed: int = 0):
        self.patches = patches
        self.synth = UnprocessingSynthesizer() if synth is None else synth
        self.seed = check_int(seed, "seed")

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        with torch.no_grad():
            batch = self.synth(self.patches[index][None], seed=self.seed, offset=index)
        fields = ("clean", "noisy", "clean_raw", "noisy_raw", "variance", "shot", "read", "noise_std")
        return {name: getattr(batch, name)[0] for name in fields if getattr(batch, name) is not None}
