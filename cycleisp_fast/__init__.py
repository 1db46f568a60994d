"""cycleisp_fast: fused kernels, models and pipelines for realistic-noise denoising (CycleISP, AINDNet)."""

from cycleisp_fast import (  # noqa: E402
    _extension,  # noqa: F401  (loads the compiled kernels, or warns once)
    models,
    nn,
    ops,
)
from cycleisp_fast.backend import available_backends, get_backend, set_backend, use_backend
from cycleisp_fast.optimization import optimize

__version__ = "0.1.0"
"""The package's version, written only here (pyproject.toml reads it)."""
__all__ = [
    "available_backends",
    "get_backend",
    "optimize",
    "set_backend",
    "use_backend",
    "ops",
    "nn",
    "models",
    "__version__",
]
