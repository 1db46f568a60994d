"""The camera ops (fused steps of the analytic ISP): the native kernels against the reference, the reference
against direct per-pixel formulas, autograd, fake impl, bad input."""

import pytest
import torch
from conftest import fused_backends
from harness import OpTester

from cycleisp_fast import _extension, ops
from cycleisp_fast.reference import camera as reference

FUSED = fused_backends("camera_mosaic")
native = pytest.mark.skipif(not _extension.has_native_kernel("camera_mosaic", "cpu"), reason="extension not built")
fused = pytest.mark.parametrize("backend", FUSED)


def _params(n, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    matrix = torch.eye(3, dtype=torch.float64) + 0.3 * torch.randn(n, 3, 3, generator=g, dtype=torch.float64)
    gains3 = 0.3 + torch.rand(n, 3, generator=g, dtype=torch.float64)
    gains4 = 0.8 + 2 * torch.rand(n, 4, generator=g, dtype=torch.float64)
    return matrix.to(dtype), gains3.to(dtype), gains4.to(dtype)


def _mosaic_by_formula(linear, m, gains):
    """Brooks' safe inverse gains, site by site, in float64."""
    linear, m, gains = linear.double(), m.double(), gains.double()
    n, _, height, width = linear.shape
    out = torch.empty(n, 4, height // 2, width // 2, dtype=torch.float64)
    for b in range(n):
        for y in range(height):
            for x in range(width):
                cam = m[b] @ linear[b, :, y, x]
                mask = (max(cam.mean().item() - 0.9, 0.0) / 0.1) ** 2
                plane = 2 * (y % 2) + x % 2
                colour = (0, 1, 1, 2)[plane]
                gain = gains[b, colour].item()
                safe = max(mask + (1 - mask) * gain, gain)
                out[b, plane, y // 2, x // 2] = min(max(cam[colour].item() * safe, 0.0), 1.0)
    return out


def _demosaic_by_formula(packed, gains, m):
    """Bilinear demosaic by explicit neighbour averages (reflect borders), then the matrix, in float64."""
    packed, gains, m = packed.double(), gains.double(), m.double()
    n, _, h, w = packed.shape
    height, width = 2 * h, 2 * w
    out = torch.empty(n, 3, height, width, dtype=torch.float64)

    def raw(b, y, x):
        y = 1 if y < 0 else (height - 2 if y >= height else y)
        x = 1 if x < 0 else (width - 2 if x >= width else x)
        plane = 2 * (y % 2) + x % 2
        return min(max(packed[b, plane, y // 2, x // 2].item() * gains[b, plane].item(), 0.0), 1.0)

    for b in range(n):
        for y in range(height):
            for x in range(width):
                plane = 2 * (y % 2) + x % 2
                cross = sum(raw(b, y + dy, x + dx) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))) / 4
                diagonal = sum(raw(b, y + dy, x + dx) for dy in (-1, 1) for dx in (-1, 1)) / 4
                row = (raw(b, y, x - 1) + raw(b, y, x + 1)) / 2
                column = (raw(b, y - 1, x) + raw(b, y + 1, x)) / 2
                centre = raw(b, y, x)
                rgb = {
                    0: (centre, cross, diagonal),
                    1: (row, centre, column),
                    2: (column, centre, row),
                    3: (diagonal, cross, centre),
                }[plane]
                out[b, :, y, x] = (m[b] @ torch.tensor(rgb, dtype=torch.float64)).clamp(0, 1)
    return out


class TestCamera(OpTester):
    """The shared op tests over the camera cases (mosaic with Brooks' highlight mask, bilinear demosaic; random
    cameras): float32 and float64 against the reference, gradients included, at 2 x 2 up to several tiles (130
    columns), layouts (the permuted input of a channels_last image among them), empty batch, opcheck."""

    family = "camera"
    dtypes = (torch.float32, torch.float64)
    empty_batch = False  # random cameras are drawn for at least one image

    def opcheck_calls(self, backend):
        """The registered mosaic and demosaic of ``backend``."""
        suffix = "_triton" if backend == "triton" else ""
        m, gains3, gains4 = _params(2)
        yield getattr(torch.ops.cycleisp_fast, "camera_mosaic" + suffix).default, (torch.rand(2, 3, 4, 6), m, gains3)
        yield getattr(torch.ops.cycleisp_fast, "camera_demosaic" + suffix).default, (torch.rand(2, 4, 3, 2), gains4, m)


def test_reference_mosaic_matches_the_formula():
    linear = torch.rand(2, 3, 4, 6, dtype=torch.float64)
    linear[0, :, :2] = 0.97  # highlights: the mask is active
    m, gains, _ = _params(2, torch.float64)
    torch.testing.assert_close(reference.camera_mosaic(linear, m, gains), _mosaic_by_formula(linear, m, gains))


def test_reference_demosaic_matches_the_formula():
    packed = torch.rand(2, 4, 3, 4, dtype=torch.float64)
    m, _, gains = _params(2, torch.float64)
    torch.testing.assert_close(reference.camera_demosaic(packed, gains, m), _demosaic_by_formula(packed, gains, m))


def test_reference_demosaic_is_exact_on_linear_ramps():
    # bilinear interpolation reproduces a function linear in x and y at every interior site
    h, w = 4, 5
    ys, xs = torch.meshgrid(
        torch.arange(2 * h, dtype=torch.float64), torch.arange(2 * w, dtype=torch.float64), indexing="ij"
    )
    colours = torch.stack([0.01 * xs + 0.02 * ys, 0.03 * xs + 0.01 * ys + 0.05, 0.02 * xs + 0.005 * ys + 0.1])[None]
    packed = torch.stack(
        [colours[:, 0, 0::2, 0::2], colours[:, 1, 0::2, 1::2], colours[:, 1, 1::2, 0::2], colours[:, 2, 1::2, 1::2]],
        dim=1,
    )
    out = reference.demosaic_bilinear(packed)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], colours[..., 1:-1, 1:-1])


@fused
def test_fused_half_precision_close_to_float32(backend):
    packed = torch.rand(2, 4, 6, 6)
    m, _, gains = _params(2)
    expected = ops.camera_demosaic(packed, gains, m, backend=backend)
    for dtype in (torch.float16, torch.bfloat16):
        out = ops.camera_demosaic(packed.to(dtype), gains.to(dtype), m.to(dtype), backend=backend)
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)


@fused
def test_gradients_through_fused_ops(backend):
    linear = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    m, gains3, gains4 = _params(1, torch.float64)
    torch.autograd.gradcheck(
        lambda x, a, g: ops.camera_mosaic(x, a, g, backend=backend),
        (linear.requires_grad_(), m.requires_grad_(), gains3.requires_grad_()),
    )
    packed = (0.2 + 0.3 * torch.rand(1, 4, 2, 3, dtype=torch.float64)).requires_grad_()
    torch.autograd.gradcheck(
        lambda p, g, a: ops.camera_demosaic(p, g, a, backend=backend),
        (packed, (0.5 * gains4).requires_grad_(), m.detach().requires_grad_()),
    )


@native
def test_native_compiles_without_graph_breaks():
    m, _, gains4 = _params(2)
    compiled = torch.compile(lambda p, g, a: ops.camera_demosaic(p, g, a) ** 0.5, fullgraph=True)
    packed = torch.rand(2, 4, 3, 4)
    torch.testing.assert_close(compiled(packed, gains4, m), reference.camera_demosaic(packed, gains4, m) ** 0.5)


@pytest.mark.parametrize("backend", ["reference", *FUSED])
def test_bad_input_is_named(backend):
    m, gains3, gains4 = _params(2)
    with pytest.raises(ValueError, match="even"):
        ops.camera_mosaic(torch.rand(2, 3, 5, 4), m, gains3, backend=backend)
    with pytest.raises(ValueError, match="rgb2cam must have shape"):
        ops.camera_mosaic(torch.rand(2, 3, 4, 4), m[:1], gains3, backend=backend)
    with pytest.raises(ValueError, match="gains must have shape"):
        ops.camera_demosaic(torch.rand(2, 4, 2, 2), gains3, m, backend=backend)
    with pytest.raises(ValueError, match="4 channel"):
        ops.camera_demosaic(torch.rand(2, 3, 2, 2), gains4, m, backend=backend)
