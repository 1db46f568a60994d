"""Physics-based RAW noise for training pairs: :class:`PhysicalNoiseModel` draws ELD's per-image parameters from
camera profiles (:mod:`cycleisp_fast.noise.profiles`) and an exposure ratio, then applies the fused, seeded
:func:`cycleisp_fast.ops.physical_noise`. ``NoiseModel("eld:SonyA7S2")`` builds one.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple, Optional, Sequence, Union

import torch

from cycleisp_fast.checks import check_generator, check_int
from cycleisp_fast.noise.profiles import CameraProfile, PhysicalParams, load_profile, virtual_cameras
from cycleisp_fast.ops.noise import check_clip
from cycleisp_fast.ops.physical_noise import parse_components
from cycleisp_fast.seeds import Stream, keyed_generator

DEFAULT_RATIO = (100.0, 300.0)
"""ELD's exposure ratios for training (``ratio ~ U(100, 300)``)."""
VIRTUAL_PREFIX = "virtual:"


class DrawnParams(NamedTuple):
    """What :meth:`PhysicalNoiseModel.sample_params` draws per image (float64, CPU): the ELD parameters, the exposure
    ratio, ``scale = saturation / ratio`` (DN per unit of the clean image) and the index of the camera profile."""

    params: PhysicalParams
    ratio: torch.Tensor
    scale: torch.Tensor
    camera: torch.Tensor


class PhysicalSample(NamedTuple):
    """What :class:`PhysicalNoiseModel` returns: the noisy batch; the variance map (None unless
    ``return_variance``) and the per-image heteroscedastic equivalents ``shot``, ``read`` of the noise in the units
    of x (``Var[y] = shot * x + read``), as :class:`~cycleisp_fast.noise.NoisySample` has them; the parameters in DN
    and the exposure ratio of each image."""

    noisy: torch.Tensor
    variance: Optional[torch.Tensor]
    shot: torch.Tensor
    read: torch.Tensor
    params: PhysicalParams
    ratio: torch.Tensor


def tukey_lambda_variance(shape: torch.Tensor) -> torch.Tensor:
    """The variance of the standard Tukey-lambda distribution (float64): ``2/l^2 (1/(1+2l) - G(l+1)^2/G(2l+2))``,
    ``pi^2/3`` (logistic) near 0, infinite for ``l <= -1/2``."""
    shape = shape.to(torch.float64)
    small = shape.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(shape), shape)
    general = (
        2.0
        / safe**2
        * (1.0 / (1.0 + 2.0 * safe) - torch.exp(2.0 * torch.lgamma(safe + 1.0) - torch.lgamma(2.0 * safe + 2.0)))
    )
    variance = torch.where(small, torch.full_like(shape, math.pi**2 / 3.0), general)
    return torch.where(shape <= -0.5, torch.full_like(shape, math.inf), variance)


def _profiles(spec) -> list[CameraProfile]:
    if isinstance(spec, str) and spec.startswith(VIRTUAL_PREFIX):
        count = spec.removeprefix(VIRTUAL_PREFIX)
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"noise profile {spec!r}: write 'virtual:N' with N >= 1 virtual cameras")
        return virtual_cameras(int(count))
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError("profiles must name at least one camera profile")
        return [load_profile(item) for item in spec]
    return [load_profile(spec)]


def _check_ratio(ratio) -> tuple[float, float]:
    low, high = (ratio, ratio) if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) else tuple(ratio)
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 1):
            raise ValueError(f"ratio must be a number >= 1 or a (low, high) range of them, got {ratio!r}")
    if low > high:
        raise ValueError(f"ratio must have low <= high, got {ratio!r}")
    return float(low), float(high)


def is_profile_spec(levels) -> bool:
    """Whether ``levels`` names camera profiles (``eld:...``, ``virtual:N``, a ``.json`` path or a
    :class:`CameraProfile`) rather than a noise-level sampler."""
    if isinstance(levels, CameraProfile):
        return True
    if isinstance(levels, (list, tuple)) and levels:
        return all(is_profile_spec(item) for item in levels)
    if isinstance(levels, os.PathLike):
        levels = os.fspath(levels)
    return isinstance(levels, str) and (levels.startswith(("eld:", VIRTUAL_PREFIX)) or levels.lower().endswith(".json"))


class PhysicalNoiseModel:
    """ELD / LED noise for training pairs: per image a camera profile, ELD's parameters for it, an exposure ratio,
    then :func:`cycleisp_fast.ops.physical_noise` on the packed Bayer batch.

    Args:
        profiles: a profile name (``"eld:SonyA7S2"``), a JSON path, ``"virtual:N"`` (N LED-style virtual cameras),
            a :class:`CameraProfile`, or a list of them (one drawn per image, uniformly).
        components: LED's letters (default: ``"ptrqc"`` where the profiles have Tukey read noise, else ``"pgrqc"``,
            without the letters a profile lacks).
        ratio: the exposure ratio, a number or a ``(low, high)`` range drawn uniformly per image (default ELD's
            (100, 300)); 1 is a normally exposed image. The clean image is ``ratio`` times darker before the noise
            and brightened by ``ratio`` after, as in SID / ELD.
        bayer_pattern: the CFA the packed (R, Gr, Gb, B) planes came from, for the row noise (default RGGB).
        clip: None or ``(min, max)`` applied to the noisy output (e.g. ``(None, 1.0)`` as SID clips its input).
        return_variance: also return the heteroscedastic variance map ``shot * max(y, 0) + read`` (the input of
            CycleISP's RAW denoiser).
        dark_shading: add the dark-shading frame of profiles that carry one (``calibrate`` with 16+ dark frames;
            PMN's fixed pattern, ``intercept + slope * K``), over a window drawn per image.
        backend: of the fused op.

    Calling ``model(clean, *, generator=None, seed=None, offset=0)`` on packed RAW ``(N, 4, H, W)`` in [0, 1]
    returns a :class:`PhysicalSample`; ``(seed, offset)`` fix the parameters and the noise as for
    :class:`~cycleisp_fast.noise.NoiseModel`.

    Example:
        >>> model = PhysicalNoiseModel("eld:SonyA7S2", ratio=100)
        >>> sample = model(torch.full((2, 4, 16, 16), 0.2), seed=0)
        >>> sample.noisy.shape, sample.params.gain.shape
        (torch.Size([2, 4, 16, 16]), torch.Size([2]))
        >>> torch.equal(model(torch.full((2, 4, 16, 16), 0.2), seed=0).noisy, sample.noisy)
        True
    """

    def __init__(
        self,
        profiles: Union[str, CameraProfile, Sequence] = "eld:SonyA7S2",
        *,
        components: Optional[str] = None,
        ratio=DEFAULT_RATIO,
        bayer_pattern: str = "RGGB",
        clip=None,
        return_variance: bool = True,
        dark_shading: bool = True,
        backend: Optional[str] = None,
    ):
        self.profiles = _profiles(profiles)
        self.dark_shading = bool(dark_shading)
        self._shading_frames = {  # read once: (intercept, slope) per profile index
            index: profile.dark_shading()
            for index, profile in enumerate(self.profiles)
            if self.dark_shading and profile.has_dark_shading
        }
        self.spec = profiles
        common = set.intersection(*(set(p.components) for p in self.profiles))
        if components is None:
            components = "".join(c for c in ("ptrqc" if "t" in common else "pgrqc") if c in common)
        parse_components(components)
        lacking = sorted(set(components) - common)
        if lacking:
            raise ValueError(
                f"components {components!r}: the profiles {[p.camera for p in self.profiles]} lack parameters for "
                f"{lacking}"
            )
        self.components = components
        self.ratio = _check_ratio(ratio)
        self.bayer_pattern = bayer_pattern
        self.clip = None if clip is None else check_clip(clip)
        if not isinstance(return_variance, bool):
            raise TypeError(f"return_variance must be a bool, got {type(return_variance).__name__}")
        self.return_variance = return_variance
        self.backend = backend

    def __repr__(self) -> str:
        return (
            f"PhysicalNoiseModel(profiles={[p.camera for p in self.profiles]}, components={self.components!r}, "
            f"ratio={self.ratio}, clip={self.clip})"
        )

    def sample_params(self, n: int, *, generator: Optional[torch.Generator] = None) -> DrawnParams:
        """The :class:`DrawnParams` of ``n`` images (float64, CPU): the profile of each image drawn uniformly, then
        its ELD parameters and exposure ratio."""
        choice = torch.randint(len(self.profiles), (n,), generator=generator)
        low, high = self.ratio
        ratio = low + (high - low) * torch.rand(n, dtype=torch.float64, generator=generator)
        drawn = [p.sample(n, generator=generator, components=self.components) for p in self.profiles]
        params = PhysicalParams(*(torch.stack([d[k] for d in drawn])[choice, torch.arange(n)] for k in range(6)))
        saturation = torch.tensor([p.saturation for p in self.profiles], dtype=torch.float64)[choice]
        return DrawnParams(params, ratio, saturation / ratio, choice)

    def _dark_shading(
        self, drawn: DrawnParams, shape: torch.Size, generator: Optional[torch.Generator]
    ) -> Optional[torch.Tensor]:
        """PMN's dark shading of each image whose profile has one, ``intercept + slope * K`` (DN) over a window of the
        frame drawn from ``generator`` (the crop's place in the sensor is unknown); None when no profile has one."""
        if not self._shading_frames:
            return None
        n, _, height, width = shape
        frames = torch.zeros(n, 4, height, width, dtype=torch.float64)
        for index in range(n):
            camera = int(drawn.camera[index])
            if camera not in self._shading_frames:
                continue
            intercept, slope = self._shading_frames[camera]
            if intercept.shape[1] < height or intercept.shape[2] < width:
                raise ValueError(
                    f"profile {self.profiles[camera].camera!r}: its dark-shading frame {tuple(intercept.shape[1:])} is "
                    f"smaller than the packed images {height}x{width}"
                )
            top = int(torch.randint(intercept.shape[1] - height + 1, (), generator=generator))
            left = int(torch.randint(intercept.shape[2] - width + 1, (), generator=generator))
            window = (slice(None), slice(top, top + height), slice(left, left + width))
            frames[index] = intercept[window] + slope[window] * drawn.params.gain[index]
        return frames

    def __call__(
        self,
        clean: torch.Tensor,
        *,
        generator: Optional[torch.Generator] = None,
        seed: Optional[int] = None,
        offset: int = 0,
    ) -> PhysicalSample:
        """The :class:`PhysicalSample` of the packed Bayer batch ``clean`` ``(N, 4, H, W)`` in [0, 1]; ``generator``,
        ``seed`` and ``offset`` fix the draw as for :class:`~cycleisp_fast.noise.NoiseModel`."""
        if not isinstance(clean, torch.Tensor) or clean.dim() != 4 or clean.shape[1] != 4:
            shape = tuple(clean.shape) if isinstance(clean, torch.Tensor) else type(clean).__name__
            raise ValueError(f"clean must be packed Bayer planes of shape (N, 4, H, W), got {shape}")
        if not clean.is_floating_point():
            raise TypeError(f"clean must have a floating dtype, got {clean.dtype}")
        n = int(clean.shape[0])
        if n == 0:
            raise ValueError("clean must hold at least one image (N > 0)")
        generator = check_generator(generator)
        offset = check_int(offset, "offset")
        param_generator = generator
        if seed is not None:
            seed = check_int(seed, "seed")
            if generator is None:
                param_generator = keyed_generator(seed, offset, Stream.PHYSICAL)
        drawn = self.sample_params(n, generator=param_generator)
        params, ratio, scale = drawn.params, drawn.ratio, drawn.scale
        shading = self._dark_shading(drawn, clean.shape, param_generator)
        from cycleisp_fast.ops import physical_noise

        acc = torch.float64 if clean.dtype == torch.float64 else torch.float32

        def on_device(t):
            return t.to(device=clean.device, dtype=acc)

        noisy = physical_noise(
            clean,
            on_device(params.gain),
            scale=on_device(scale),
            read_scale=on_device(params.read_scale),
            read_shape=on_device(params.read_shape),
            row_scale=on_device(params.row_scale),
            quant_step=on_device(params.quant_step),
            bias=on_device(params.bias),
            components=self.components,
            bayer_pattern=self.bayer_pattern,
            dark_shading=None if shading is None else on_device(shading),
            seed=seed,
            offset=offset,
            generator=generator if seed is None else None,
            clip=self.clip,
            backend=self.backend,
        )
        shot, read = self.equivalent_levels(params, scale)
        shot, read = on_device(shot), on_device(read)
        variance = None
        if self.return_variance:
            variance = shot.view(-1, 1, 1, 1) * noisy.to(acc).clamp(min=0) + read.view(-1, 1, 1, 1)
        return PhysicalSample(noisy, variance, shot, read, params, ratio)

    def equivalent_levels(self, params: PhysicalParams, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heteroscedastic ``(shot, read)`` of the noise in the units of the clean image: ``shot = K / scale``
        (the Poisson part), ``read = (Var read + sigma_row^2 + step^2 / 12) / scale^2`` (colour bias excluded)."""
        read_var = torch.zeros_like(scale)
        if "t" in self.components:
            read_var = params.read_scale**2 * tukey_lambda_variance(params.read_shape)
        elif "g" in self.components:
            read_var = params.read_scale**2
        if "r" in self.components:
            read_var = read_var + params.row_scale**2
        if "q" in self.components:
            read_var = read_var + params.quant_step**2 / 12.0
        shot = params.gain / scale if "p" in self.components else torch.zeros_like(scale)
        return shot, read_var / scale**2
