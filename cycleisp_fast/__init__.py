"""cycleisp_fast: fused kernels, models and pipelines for realistic-noise denoising (CycleISP, AINDNet)."""

from cycleisp_fast import _extension  # noqa: F401  (loads the compiled kernels, or warns once)
from cycleisp_fast.backend import available_backends, get_backend, set_backend, use_backend
from cycleisp_fast import ops, nn  # noqa: E402

__version__ = "0.1.0"
__all__ = ["available_backends", "get_backend", "set_backend", "use_backend", "ops", "nn", "__version__"]
