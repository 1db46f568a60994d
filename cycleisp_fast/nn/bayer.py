"""Modules around the Bayer ops; ``backend=None`` follows the backend in force."""

from __future__ import annotations

import torch  # noqa: F401 (the examples)
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
        """The pattern (and backend) shown by ``repr``."""
        return f"pattern={self.pattern!r}" + (f", backend={self.backend!r}" if self.backend else "")


class BayerMosaic(_BayerModule):
    """``(N, 3, H, W)`` RGB -> ``(N, 1, H, W)`` CFA image. See :func:`cycleisp_fast.ops.bayer_mosaic`.

    Args:
        pattern: colours of the top-left 2x2 block, row by row: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``.
        backend: backend of the op; None follows the one in force.

    Shape:
        - input: ``(N, 3, H, W)``, H and W even
        - output: ``(N, 1, H, W)``

    Example:
        >>> BayerMosaic("GRBG")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def forward(self, rgb: Tensor) -> Tensor:
        """The CFA samples of ``rgb``."""
        return ops.bayer_mosaic(rgb, self.pattern, backend=self.backend)


class BayerPack(_BayerModule):
    """``(N, 1, H, W)`` CFA -> ``(N, 4, H/2, W/2)`` (R, Gr, Gb, B), optionally level-normalised.
    See :func:`cycleisp_fast.ops.bayer_pack`.

    Args:
        pattern: colours of the top-left 2x2 block of the input.
        black_level: optional, with ``white_level``: a number or 4 numbers (R, Gr, Gb, B).
        white_level: optional, with ``black_level``.
        backend: backend of the op; None follows the one in force.

    Shape:
        - input: ``(N, 1, H, W)``, H and W even; floating or integer RAW samples
        - output: ``(N, 4, H/2, W/2)``

    Example:
        >>> pack = BayerPack("BGGR", black_level=64, white_level=1023)
        >>> pack(torch.randint(64, 1024, (1, 1, 6, 8), dtype=torch.int32)).shape
        torch.Size([1, 4, 3, 4])
    """

    def __init__(
        self, pattern: str = "RGGB", black_level: Level = None, white_level: Level = None, backend: str | None = None
    ):
        super().__init__(pattern, backend)
        self.black_level = black_level
        self.white_level = white_level

    def forward(self, cfa: Tensor) -> Tensor:
        """The packed planes of ``cfa``."""
        return ops.bayer_pack(cfa, self.pattern, self.black_level, self.white_level, backend=self.backend)


class BayerUnpack(_BayerModule):
    """``(N, 4, h, w)`` (R, Gr, Gb, B) -> ``(N, 1, 2h, 2w)`` CFA. See :func:`cycleisp_fast.ops.bayer_unpack`.

    Args:
        pattern: colours of the top-left 2x2 block of the output.
        backend: backend of the op; None follows the one in force.

    Shape:
        - input: ``(N, 4, h, w)``
        - output: ``(N, 1, 2h, 2w)``

    Example:
        >>> cfa = torch.rand(1, 1, 4, 4)
        >>> torch.equal(BayerUnpack("GBRG")(BayerPack("GBRG")(cfa)), cfa)
        True
    """

    def forward(self, packed: Tensor) -> Tensor:
        """The CFA image of ``packed``."""
        return ops.bayer_unpack(packed, self.pattern, backend=self.backend)
