"""Modules around the Bayer ops; ``backend=None`` follows the backend in force."""

from __future__ import annotations

from torch import Tensor, nn

from cycleisp_fast import ops
from cycleisp_fast.checks import check_backend_argument, check_choice
from cycleisp_fast.ops.bayer import PATTERNS, Level


class _BayerModule(nn.Module):
    def __init__(self, pattern: str = "RGGB", backend: str | None = None):
        super().__init__()
        self.pattern = check_choice(pattern, "pattern", PATTERNS)
        self.backend = check_backend_argument(backend)

    def extra_repr(self) -> str:
        return f"pattern={self.pattern!r}" + (f", backend={self.backend!r}" if self.backend else "")


class BayerMosaic(_BayerModule):
    """``(N, 3, H, W)`` RGB -> ``(N, 1, H, W)`` CFA image. See :func:`cycleisp_fast.ops.bayer_mosaic`."""

    def forward(self, rgb: Tensor) -> Tensor:
        return ops.bayer_mosaic(rgb, self.pattern, backend=self.backend)


class BayerPack(_BayerModule):
    """``(N, 1, H, W)`` CFA -> ``(N, 4, H/2, W/2)`` (R, Gr, Gb, B), optionally level-normalised.
    See :func:`cycleisp_fast.ops.bayer_pack`."""

    def __init__(self, pattern: str = "RGGB", black_level: Level = None, white_level: Level = None,
                 backend: str | None = None):
        super().__init__(pattern, backend)
        self.black_level = black_level
        self.white_level = white_level

    def forward(self, cfa: Tensor) -> Tensor:
        return ops.bayer_pack(cfa, self.pattern, self.black_level, self.white_level, backend=self.backend)


class BayerUnpack(_BayerModule):
    """``(N, 4, h, w)`` (R, Gr, Gb, B) -> ``(N, 1, 2h, 2w)`` CFA. See :func:`cycleisp_fast.ops.bayer_unpack`."""

    def forward(self, packed: Tensor) -> Tensor:
        return ops.bayer_unpack(packed, self.pattern, backend=self.backend)
