"""Camera noise profiles for physics-based RAW noise (ELD / LED): the data files, their schema, and the per-image
parameter sampling of ELD.

A profile is one small JSON file (schema ``cycleisp_fast.noise_profile/1``)::

    {"format": "cycleisp_fast.noise_profile/1", "camera": "SonyA7S2", "source": "...",
     "saturation": 15583.0,                       # white - black level, DN: what a clean 1.0 becomes
     "K": [0.094, 6.01],                          # system gain range, DN per electron
     "read_gaussian": {"slope": a, "bias": b, "sigma": s},      # log sigma_g ~ N(a log K + b, s)
     "read_tukey": {"slope": a, "bias": b, "sigma": s, "lambda": [...]},   # Tukey scale, shapes per K bucket
     "row": {"slope": a, "bias": b, "sigma": s},                # row-noise sigma
     "color_bias": [[R, Gr, Gb, B], ...],                       # DN, per K bucket
     "quantization_step": 1.0}

``read_gaussian``, ``read_tukey``, ``row`` and ``color_bias`` are optional (a profile offers the components whose
keys it has); ``black_level``, ``dark_shading`` and ``calibration`` are kept as written. The five cameras ELD
released ship with the package (``eld:SonyA7S2``, ``eld:NikonD850``, ``eld:CanonEOS70D``, ``eld:CanonEOS700D``,
``eld:CanonEOS5D4``; each file cites its source); ``cycleisp-fast calibrate`` writes the same schema for a user's
camera, loaded by path.

Sampling (ELD): ``log K ~ U(log K_min, log K_max)``; each scale ``log sigma ~ N(slope log K + bias, sigma)``; the
Tukey shape and the colour bias are the entries of K's bucket, ``floor((K - K_min) / (K_max - K_min) * count)``
(LED's rule), or for a calibrated profile (one entry per calibrated setting) the setting nearest in log K.
:func:`virtual_cameras` draws LED-style virtual cameras, every coefficient uniform within the range the five ELD
cameras span.

Example:
    >>> profile = load_profile("eld:SonyA7S2")
    >>> profile.components
    'pgtrqc'
    >>> params = profile.sample(4, generator=torch.Generator().manual_seed(0))
    >>> params.gain.shape, params.bias.shape
    (torch.Size([4]), torch.Size([4, 4]))
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import torch

FORMAT = "cycleisp_fast.noise_profile/1"
PROFILE_DIR = Path(__file__).with_name("profiles")
BUILTIN_PREFIX = "eld:"
ELD_CAMERAS = ("SonyA7S2", "NikonD850", "CanonEOS70D", "CanonEOS700D", "CanonEOS5D4")
REQUIRED_KEYS = ("format", "camera", "saturation", "K", "quantization_step")
OPTIONAL_KEYS = (
    "source",
    "black_level",
    "read_gaussian",
    "read_tukey",
    "row",
    "color_bias",
    "dark_shading",
    "calibration",
)
FIT_KEYS = ("slope", "bias", "sigma")
MAX_TUKEY_SHAPE = 1.0


class ProfileError(ValueError):
    """A profile file or dict that does not follow the schema (the message names the file and the key)."""


@dataclass(frozen=True)
class LogLinear:
    """``log sigma ~ N(slope log K + bias, sigma)``: a noise scale's dependence on the gain."""

    slope: float
    bias: float
    sigma: float

    def sample(self, log_k: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """One scale per entry of ``log_k`` (same shape, dtype and device: float64 on the CPU)."""
        noise = torch.randn(log_k.shape, dtype=log_k.dtype, generator=generator)
        return torch.exp(self.slope * log_k + self.bias + self.sigma * noise)

    def to_dict(self) -> dict:
        """The fit as the profile schema writes it."""
        return {"slope": self.slope, "bias": self.bias, "sigma": self.sigma}


class PhysicalParams(NamedTuple):
    """Per-image noise parameters in DN (``(N,)`` each, bias ``(N, 4)`` in R, Gr, Gb, B order)."""

    gain: torch.Tensor
    read_scale: torch.Tensor
    read_shape: torch.Tensor
    row_scale: torch.Tensor
    quant_step: torch.Tensor
    bias: torch.Tensor


@dataclass(frozen=True)
class CameraProfile:
    """A camera's noise profile (see the module docstring for the schema). Build it with :func:`load_profile` or
    :meth:`from_dict`, which validate."""

    camera: str
    saturation: float
    gain_range: tuple[float, float]
    quantization_step: float = 1.0
    read_gaussian: Optional[LogLinear] = None
    read_tukey: Optional[LogLinear] = None
    tukey_shapes: tuple[float, ...] = ()
    row: Optional[LogLinear] = None
    color_bias: tuple[tuple[float, float, float, float], ...] = ()
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False)
    """Keys kept as written (``black_level``, ``dark_shading``, ``calibration``)."""
    folder: Optional[str] = field(default=None, compare=False)
    """Where the profile file lies (its ``dark_shading`` file is found beside it); None for an in-memory profile."""

    @property
    def components(self) -> str:
        """The noise letters this profile can draw, in LED's order."""
        letters = "p"
        letters += "g" if self.read_gaussian is not None else ""
        letters += "t" if self.read_tukey is not None else ""
        letters += "r" if self.row is not None else ""
        letters += "q"
        letters += "c" if self.color_bias else ""
        return letters

    @property
    def has_dark_shading(self) -> bool:
        """Whether the profile carries a dark-shading frame (PMN's fixed pattern; ``calibrate`` with 16+ darks)."""
        return "dark_shading" in self.extra

    def dark_shading(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The dark-shading frame's ``(intercept, slope)`` in DN, each ``(4, H/2, W/2)`` float64 in (R, Gr, Gb, B)
        order: the shading of gain K is ``intercept + slope * K``. Raises ProfileError naming the file."""
        if not self.has_dark_shading:
            raise ProfileError(f"profile {self.camera!r} has no dark_shading")
        name = self.extra["dark_shading"].get("file") if isinstance(self.extra["dark_shading"], dict) else None
        if not isinstance(name, str) or self.folder is None:
            raise ProfileError(f"profile {self.camera!r}: dark_shading must name an .npz file beside a profile file")
        path = Path(self.folder) / name
        try:
            import numpy as np

            with np.load(path) as arrays:
                intercept, slope = (
                    torch.from_numpy(np.asarray(arrays[k], dtype=np.float64)) for k in ("intercept", "slope")
                )
        except (OSError, KeyError, ValueError) as error:
            raise ProfileError(
                f"{path}: not a dark-shading file with arrays 'intercept' and 'slope' ({error})"
            ) from None
        if intercept.dim() != 3 or intercept.shape[0] != 4 or slope.shape != intercept.shape:
            raise ProfileError(
                f"{path}: intercept and slope must both have shape (4, H, W), got {tuple(intercept.shape)} and "
                f"{tuple(slope.shape)}"
            )
        return intercept, slope

    @classmethod
    def from_dict(cls, data: Any, where: str = "profile", folder: Optional[str] = None) -> "CameraProfile":
        """Validates ``data`` against the schema; errors name ``where`` (e.g. the file) and the key."""
        validate_profile(data, where)

        def fit(key):
            return LogLinear(*(float(data[key][k]) for k in FIT_KEYS)) if key in data else None

        return cls(
            camera=str(data["camera"]),
            saturation=float(data["saturation"]),
            gain_range=(float(data["K"][0]), float(data["K"][1])),
            quantization_step=float(data["quantization_step"]),
            read_gaussian=fit("read_gaussian"),
            read_tukey=fit("read_tukey"),
            tukey_shapes=tuple(float(v) for v in data["read_tukey"]["lambda"]) if "read_tukey" in data else (),
            row=fit("row"),
            color_bias=tuple(tuple(float(v) for v in row) for row in data.get("color_bias", ())),
            source=str(data.get("source", "")),
            extra={k: data[k] for k in ("black_level", "dark_shading", "calibration") if k in data},
            folder=folder,
        )

    def to_dict(self) -> dict:
        """The profile in the file schema."""
        data: dict[str, Any] = {"format": FORMAT, "camera": self.camera, "source": self.source}
        data.update(saturation=self.saturation, K=list(self.gain_range))
        if self.read_gaussian is not None:
            data["read_gaussian"] = self.read_gaussian.to_dict()
        if self.read_tukey is not None:
            data["read_tukey"] = dict(self.read_tukey.to_dict(), **{"lambda": list(self.tukey_shapes)})
        if self.row is not None:
            data["row"] = self.row.to_dict()
        if self.color_bias:
            data["color_bias"] = [list(row) for row in self.color_bias]
        data["quantization_step"] = self.quantization_step
        data.update(self.extra)
        return data

    def bucket(self, gain: torch.Tensor, count: int) -> torch.Tensor:
        """The entry of each gain in a per-setting table of ``count`` rows (int64): for a calibrated profile whose
        ``calibration.settings`` list one K per row, the setting nearest in log K; else LED's bucket among
        ``count`` equal slices of the gain range (clamped)."""
        settings = (
            self.extra.get("calibration", {}).get("settings", [])
            if isinstance(self.extra.get("calibration"), dict)
            else []
        )
        gains = [s.get("K") for s in settings if isinstance(s, dict)]
        if len(gains) == count and all(isinstance(k, (int, float)) and k > 0 for k in gains):
            log_k = torch.tensor(gains, dtype=torch.float64).log()
            return (gain.log()[:, None] - log_k[None, :]).abs().argmin(dim=1)
        k_min, k_max = self.gain_range
        width = (k_max - k_min) / count if k_max > k_min else 1.0
        return ((gain - k_min) / width).floor().clamp(0, count - 1).to(torch.int64)

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None, components: Optional[str] = None):
        """ELD's per-image parameters for ``n`` images (float64 on the CPU) as :class:`PhysicalParams`; parts the
        profile (or ``components``) lacks are 0. Draws from ``generator`` in a fixed order."""
        components = self.components if components is None else components
        missing = sorted(set(components) - set(self.components))
        if missing:
            raise ValueError(
                f"profile {self.camera!r} has no parameters for components {missing} (has {self.components!r})"
            )
        k_min, k_max = self.gain_range
        u = torch.rand(n, dtype=torch.float64, generator=generator)
        log_k = math.log(k_min) + (math.log(k_max) - math.log(k_min)) * u
        gain = log_k.exp()
        zeros = torch.zeros(n, dtype=torch.float64)
        read_fit = self.read_tukey if "t" in components else self.read_gaussian if "g" in components else None
        read_scale = read_fit.sample(log_k, generator) if read_fit is not None else zeros
        read_shape = zeros
        if "t" in components:
            shapes = torch.tensor(self.tukey_shapes, dtype=torch.float64)
            read_shape = shapes[self.bucket(gain, len(shapes))]
        row_scale = self.row.sample(log_k, generator) if "r" in components else zeros
        bias = torch.zeros(n, 4, dtype=torch.float64)
        if "c" in components:
            table = torch.tensor(self.color_bias, dtype=torch.float64)
            bias = table[self.bucket(gain, len(table))]
        quant = torch.full((n,), self.quantization_step if "q" in components else 0.0, dtype=torch.float64)
        return PhysicalParams(gain, read_scale, read_shape, row_scale, quant, bias)


def _fail(where: str, message: str):
    raise ProfileError(f"{where}: {message}")


def _number(value, where: str, key: str, *, positive=False, nonnegative=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"{key} must be a finite number, got {value!r}")
    if positive and not value > 0:
        _fail(where, f"{key} must be > 0, got {value!r}")
    if nonnegative and not value >= 0:
        _fail(where, f"{key} must be >= 0, got {value!r}")
    return float(value)


def validate_profile(data: Any, where: str = "profile") -> None:
    """Raises :class:`ProfileError` naming ``where`` and the key unless ``data`` follows the schema."""
    if not isinstance(data, dict):
        _fail(where, f"a profile must be a JSON object, got {type(data).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        _fail(where, f"missing keys {missing} (a profile needs {list(REQUIRED_KEYS)})")
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        _fail(where, f"unknown keys {unknown} (known: {list(REQUIRED_KEYS + OPTIONAL_KEYS)})")
    if data["format"] != FORMAT:
        _fail(where, f"format must be {FORMAT!r}, got {data['format']!r}")
    _number(data["saturation"], where, "saturation", positive=True)
    _number(data["quantization_step"], where, "quantization_step", nonnegative=True)
    k = data["K"]
    if not isinstance(k, list) or len(k) != 2:
        _fail(where, f"K must be [K_min, K_max], got {k!r}")
    k_min, k_max = (_number(v, where, "K", positive=True) for v in k)
    if k_min > k_max:
        _fail(where, f"K must have K_min <= K_max, got {k!r}")
    for key in ("read_gaussian", "read_tukey", "row"):
        if key in data:
            fit = data[key]
            if not isinstance(fit, dict) or any(name not in fit for name in FIT_KEYS):
                _fail(where, f"{key} must be an object with keys {list(FIT_KEYS)}, got {fit!r}")
            for name in FIT_KEYS:
                _number(fit[name], where, f"{key}.{name}", nonnegative=name == "sigma")
    if "read_tukey" in data:
        shapes = data["read_tukey"].get("lambda")
        if not isinstance(shapes, list) or not shapes:
            _fail(where, "read_tukey.lambda must be a non-empty list of Tukey shapes (one per K bucket)")
        for value in shapes:
            if abs(_number(value, where, "read_tukey.lambda")) > MAX_TUKEY_SHAPE:
                _fail(where, f"read_tukey.lambda values must lie in [-1, 1], got {value!r}")
    if "color_bias" in data:
        table = data["color_bias"]
        if not isinstance(table, list) or not table or any(not isinstance(r, list) or len(r) != 4 for r in table):
            _fail(where, "color_bias must be a non-empty list of [R, Gr, Gb, B] rows (one per K bucket)")
        for row in table:
            for value in row:
                _number(value, where, "color_bias")


def builtin_profiles() -> tuple[str, ...]:
    """The names of the profiles shipped with the package (``eld:<camera>``)."""
    return tuple(BUILTIN_PREFIX + path.stem.removeprefix("eld_") for path in sorted(PROFILE_DIR.glob("eld_*.json")))


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise ProfileError(f"{path}: cannot read the profile ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path}: not a JSON profile ({error})") from None


def load_profile(name: str | os.PathLike | CameraProfile) -> CameraProfile:
    """A profile by name (``"eld:SonyA7S2"``, see :func:`builtin_profiles`) or path to a JSON file."""
    if isinstance(name, CameraProfile):
        return name
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"a noise profile is a name like 'eld:SonyA7S2' or a JSON path, got {type(name).__name__}")
    text = os.fspath(name)
    if text.startswith(BUILTIN_PREFIX):
        path = PROFILE_DIR / f"eld_{text.removeprefix(BUILTIN_PREFIX)}.json"
        if not path.is_file():
            raise ProfileError(f"unknown noise profile {text!r}: built in are {', '.join(builtin_profiles())}")
    else:
        path = Path(text)
        if not path.is_file():
            raise ProfileError(
                f"noise profile {text!r} is neither a built-in name ({', '.join(builtin_profiles())}) nor a JSON file"
            )
    return CameraProfile.from_dict(_read_json(path), str(path), folder=str(path.parent))


def write_profile(profile: CameraProfile | dict, path: str | os.PathLike) -> Path:
    """Writes a profile (validated) as JSON, atomically: a temporary file beside ``path``, then a rename."""
    data = profile.to_dict() if isinstance(profile, CameraProfile) else profile
    validate_profile(data, os.fspath(path))
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _span(values: Sequence[float]) -> tuple[float, float]:
    return min(values), max(values)


def virtual_cameras(count: int, *, seed: int = 0, base: Sequence[str] = ()) -> list[CameraProfile]:
    """LED-style virtual cameras: ``count`` profiles whose gain range, scale fits, Tukey shape and colour-bias
    table are drawn uniformly within the range the ``base`` profiles span (default: the five ELD cameras).
    Each has one Tukey shape, and 16 colour-bias rows of ``U(range of the base biases) + N(0, s)`` per channel.
    Deterministic in ``seed``."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1 (the number of virtual cameras), got {count!r}")
    profiles = [load_profile(name) for name in (base or builtin_profiles())]
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), dtype=torch.float64, generator=generator))

    def fit(fits: list[LogLinear]) -> LogLinear:
        return LogLinear(*(uniform(*_span([getattr(f, k) for f in fits])) for k in FIT_KEYS))

    k_low = min(p.gain_range[0] for p in profiles)
    k_high = max(p.gain_range[1] for p in profiles)
    shapes = [s for p in profiles for s in p.tukey_shapes]
    biases = [v for p in profiles for row in p.color_bias for v in row]
    cameras = []
    for index in range(count):
        spread = uniform(0.0, 1.0)  # DN: how far a bucket's four channels scatter around its centre
        rows = []
        for _ in range(16):
            centre = uniform(*_span(biases))
            rows.append(tuple(centre + spread * float(torch.randn((), generator=generator)) for _ in range(4)))
        cameras.append(
            CameraProfile(
                camera=f"virtual{index}",
                saturation=profiles[0].saturation,
                gain_range=(k_low, k_high),
                read_gaussian=fit([p.read_gaussian for p in profiles if p.read_gaussian]),
                read_tukey=fit([p.read_tukey for p in profiles if p.read_tukey]),
                tukey_shapes=(uniform(*_span(shapes)),),
                row=fit([p.row for p in profiles if p.row]),
                color_bias=tuple(rows),
                source=f"virtual camera {index} of seed {seed}, within the span of "
                + ", ".join(p.camera for p in profiles),
            )
        )
    return cameras
