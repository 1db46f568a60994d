"""Bayer ops: every fused backend against the plain-PyTorch reference, gradients, opcheck, compile,
layouts, bad input, and an independent library's Bayer conventions.

Tolerances: mosaic / pack / unpack without levels move data and must be bit-exact in every dtype. With
levels, both sides compute ``(x - black) / (white - black)`` in float32 (float64 for float64 input) and
round once, so they are bit-exact too, gradients included.
"""

import numpy as np
import pytest
import torch
from conftest import fused_backends
from harness import OpTester
from hypothesis import given, settings
from hypothesis import strategies as st

from cycleisp_fast import ops
from cycleisp_fast.ops.bayer import PATTERNS
from cycleisp_fast.reference import bayer as reference

BACKENDS = fused_backends("bayer_remap")

# (public op, reference, input channels, input is full resolution)
OPS = {
    "bayer_mosaic": (ops.bayer_mosaic, reference.bayer_mosaic, 3, True),
    "bayer_pack": (ops.bayer_pack, reference.bayer_pack, 1, True),
    "bayer_unpack": (ops.bayer_unpack, reference.bayer_unpack, 4, False),
    "rgb_to_packed_bayer": (ops.rgb_to_packed_bayer, reference.rgb_to_packed_bayer, 3, True),
}


def make_input(op_name, n=2, h=6, w=10, dtype=torch.float32, requires_grad=False):
    _, _, channels, full = OPS[op_name]
    shape = (n, channels, h, w) if full else (n, channels, h // 2, w // 2)
    return torch.randn(shape, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)


LAYOUT_SHAPES = {"rgb": (2, 3, 4, 6), "cfa": (2, 1, 4, 6), "packed": (2, 4, 2, 3)}
LAYOUT_PAIRS = [(s, d) for s in LAYOUT_SHAPES for d in LAYOUT_SHAPES if s != d]


class TestBayer(OpTester):
    """The shared op tests over the Bayer cases (mosaic, pack with and without float levels, pack of uint16 RAW
    with levels, unpack, rgb_to_packed_bayer; every CFA pattern): bit-exact against the reference in every dtype,
    gradients included, layouts, empty batch, float64 gradcheck and gradgradcheck (reference and native), opcheck
    of the registered remap between every pair of layouts."""

    family = "bayer"
    gradcheck_sizes = {
        "bayer_mosaic": (1, 3, 4, 6),
        "bayer_pack": (1, 1, 4, 6),
        "bayer_unpack": (1, 4, 2, 3),
        "rgb_to_packed_bayer": (1, 3, 4, 6),
    }
    gradcheck_backends = ("reference", "native")
    gradgradcheck = True

    def tolerances(self, case, variant, dtype, backend, what):
        """Bit-exact, but for the Triton interpreter's float32 -> bfloat16 conversion with levels, which does not
        round to nearest even (a GPU does): results may be one bfloat16 ulp apart."""
        if backend == "triton" and dtype == torch.bfloat16 and "black_level" in variant.kwargs:
            return {"rtol": 2**-7, "atol": 0.0}
        return super().tolerances(case, variant, dtype, backend, what)

    def opcheck_calls(self, backend):
        """``bayer_remap`` of ``backend`` between every pair of layouts, without and with levels."""
        name = {"native": "bayer_remap", "triton": "bayer_remap_triton"}[backend]
        op = getattr(torch.ops.cycleisp_fast, name)
        levels = ([0.1, 0.0, 0.2, 0.1], [1.0, 2.0, 1.5, 0.9])
        for src_layout, dst_layout in LAYOUT_PAIRS:
            src = torch.randn(LAYOUT_SHAPES[src_layout], requires_grad=True)
            yield op, (src, src_layout, dst_layout, "GBRG")
            yield op, (src, src_layout, dst_layout, "BGGR", *levels)


def test_reference_matches_cycleisp_mosaic_for_rggb():
    # CycleISP's mosaic: [R, Gr, Gb, B] = x[:,0,0::2,0::2], x[:,1,0::2,1::2], x[:,1,1::2,0::2], x[:,2,1::2,1::2]
    rgb = torch.rand(2, 3, 8, 6)
    expected = torch.stack(
        [rgb[:, 0, 0::2, 0::2], rgb[:, 1, 0::2, 1::2], rgb[:, 1, 1::2, 0::2], rgb[:, 2, 1::2, 1::2]], dim=1
    )
    assert torch.equal(reference.rgb_to_packed_bayer(rgb, "RGGB"), expected)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_canonical_channel_order_for_every_pattern(pattern):
    # A CFA whose every site holds its colour letter's code: pack must give R, G, G, B planes, and the
    # first green plane must come from the red row.
    code = {"R": 10.0, "G": 20.0, "B": 30.0}
    block = torch.tensor([[code[pattern[0]], code[pattern[1]]], [code[pattern[2]], code[pattern[3]]]])
    row_index = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    cfa = (block + row_index / 10).repeat(2, 3).view(1, 1, 4, 6)
    red_row = pattern.index("R") // 2
    for backend in ["reference", *BACKENDS]:
        packed = ops.bayer_pack(cfa, pattern, backend=backend)
        planes = packed[0, :, 0, 0].tolist()
        assert [round(p) for p in planes] == [10, 20, 20, 30]
        assert round((planes[1] % 1) * 10) == red_row  # Gr lies on the red row
        assert round((planes[2] % 1) * 10) == 1 - red_row


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_mosaic_agrees_with_colour_demosaicing(backend, pattern):
    colour_demosaicing = pytest.importorskip("colour_demosaicing")
    rgb = np.random.default_rng(1).random((6, 8, 3))
    expected = colour_demosaicing.mosaicing_CFA_Bayer(rgb, pattern)
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    ours = ops.bayer_mosaic(image, pattern, backend=backend)[0, 0].numpy()
    np.testing.assert_array_equal(ours, expected)
    # and the packed planes sit where its R/G/B masks say
    red_mask, green_mask, blue_mask = colour_demosaicing.masks_CFA_Bayer((6, 8), pattern)
    packed = ops.rgb_to_packed_bayer(image, pattern, backend=backend)[0].numpy()
    np.testing.assert_array_equal(packed[0].ravel(), rgb[..., 0][red_mask])
    np.testing.assert_array_equal(
        np.sort(np.concatenate([packed[1].ravel(), packed[2].ravel()])), np.sort(rgb[..., 1][green_mask])
    )
    np.testing.assert_array_equal(packed[3].ravel(), rgb[..., 2][blue_mask])


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_unpack_inverts_pack_and_mosaic_composes(backend, pattern):
    cfa = torch.randn(3, 1, 8, 4)
    assert torch.equal(ops.bayer_unpack(ops.bayer_pack(cfa, pattern, backend=backend), pattern, backend=backend), cfa)
    rgb = torch.randn(2, 3, 4, 6)
    direct = ops.rgb_to_packed_bayer(rgb, pattern, backend=backend)
    assert torch.equal(
        direct, ops.bayer_pack(ops.bayer_mosaic(rgb, pattern, backend=backend), pattern, backend=backend)
    )


# ---------------------------------------------------------------- levels and RAW integer input


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.uint16, torch.int16, torch.uint8, torch.int32], ids=str)
@pytest.mark.parametrize(
    "levels", [(64, 1023), ([64, 60, 62, 66], [1023, 1000, 1010, 1020])], ids=["scalar", "per-channel"]
)
def test_pack_integer_raw_with_levels(backend, dtype, levels):
    black, white = levels
    cfa = torch.randint(0, 127 if dtype == torch.uint8 else 1100, (2, 1, 6, 8)).to(dtype)
    ours = ops.bayer_pack(cfa, "GBRG", black, white, backend=backend)
    black4 = [float(black)] * 4 if np.isscalar(black) else black
    white4 = [float(white)] * 4 if np.isscalar(white) else white
    expected = reference.bayer_pack(cfa, "GBRG", black4, white4)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, expected)
    # independent of the reference: plain NumPy on the R plane of GBRG, at (1, 0)
    r_plane = (cfa[:, 0, 1::2, 0::2].numpy().astype(np.float32) - np.float32(black4[0])) / (
        np.float32(white4[0]) - np.float32(black4[0])
    )
    np.testing.assert_array_equal(ours[:, 0].numpy(), r_plane)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pack_integer_without_levels_gives_float_samples(backend):
    cfa = torch.randint(0, 65535, (1, 1, 4, 4)).to(torch.uint16)
    packed = ops.bayer_pack(cfa, "RGGB", backend=backend)
    assert packed.dtype == torch.float32
    assert torch.equal(packed, reference.bayer_pack(cfa, "RGGB"))
    assert packed.max() <= 65535 and packed.min() >= 0


def test_level_tensors_are_accepted():
    cfa = torch.randint(0, 4096, (1, 1, 4, 4)).to(torch.int32)
    a = ops.bayer_pack(cfa, "RGGB", torch.tensor(64.0), torch.tensor([4095.0] * 4))
    b = ops.bayer_pack(cfa, "RGGB", 64, 4095)
    assert torch.equal(a, b)


# ---------------------------------------------------------------- gradients, opcheck, compile


def test_gradcheck_float64_pack_with_levels():
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    for backend in ["reference", *BACKENDS]:
        assert torch.autograd.gradcheck(
            lambda t: ops.bayer_pack(t, "BGGR", 0.1, [0.9, 0.8, 1.0, 2.0], backend=backend), (x,)
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    from cycleisp_fast.nn import BayerMosaic, BayerPack, BayerUnpack

    class Roundtrip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mosaic = BayerMosaic("GRBG", backend=backend)
            self.pack = BayerPack("GRBG", backend=backend)
            self.unpack = BayerUnpack("GRBG", backend=backend)

        def forward(self, rgb):
            return self.unpack(self.pack(self.mosaic(rgb)) * 2.0)

    model = Roundtrip()
    rgb = torch.randn(2, 3, 6, 8, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(rgb)
    out.sum().backward()
    expected = reference.bayer_mosaic(rgb.detach(), "GRBG") * 2
    assert torch.equal(out, expected)
    assert torch.equal(rgb.grad, 2 * _mosaic_grad_of_ones(rgb.shape, "GRBG"))


def _mosaic_grad_of_ones(shape, pattern):
    """d sum(mosaic(x)) / dx: 1 where the site keeps that colour, else 0 (from the reference's autograd)."""
    x = torch.zeros(shape, requires_grad=True)
    reference.bayer_mosaic(x, pattern).sum().backward()
    return x.grad


# ---------------------------------------------------------------- memory layouts


@pytest.mark.parametrize("backend", BACKENDS)
def test_sliced_and_stride_zero_inputs(backend):
    """A crop of a larger image and a packed input expanded from one pixel (stride 0 in every dimension)."""
    # channels_last, W-major and batch-broadcast inputs of every op: TestBayer.test_layouts_match_reference
    big = torch.randn(2, 3, 16, 12)
    sliced = big[:, :, 2:10, 1:7]
    assert torch.equal(ops.bayer_mosaic(sliced, "GBRG", backend=backend), reference.bayer_mosaic(sliced, "GBRG"))
    packed = torch.randn(1, 4, 1, 1).expand(3, 4, 5, 2)  # stride-0 input
    assert torch.equal(ops.bayer_unpack(packed, "RGGB", backend=backend), reference.bayer_unpack(packed, "RGGB"))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    pattern=st.sampled_from(PATTERNS),
    op_name=st.sampled_from(list(OPS)),
    channels_last=st.booleans(),
)
def test_native_matches_reference_fuzzed(n, h, w, pattern, op_name, channels_last):
    if "native" not in BACKENDS:
        pytest.skip("native backend not built")
    op, ref = OPS[op_name][:2]
    x = make_input(op_name, n=n, h=2 * h, w=2 * w)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    assert torch.equal(op(x, pattern, backend="native"), ref(x, pattern))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_bad_input_names_the_argument(backend):
    rgb = torch.rand(1, 3, 4, 4)
    cases = [
        (lambda: ops.bayer_mosaic(rgb[:, :, :3], backend=backend), ValueError, "rgb height and width must be even"),
        (lambda: ops.bayer_mosaic(rgb[:, :2], backend=backend), ValueError, "rgb must have 3 channel"),
        (lambda: ops.bayer_mosaic(rgb[0], backend=backend), ValueError, "rgb must have shape"),
        (lambda: ops.bayer_mosaic(rgb.numpy(), backend=backend), TypeError, "rgb must be a torch.Tensor"),
        (lambda: ops.bayer_mosaic((rgb * 9).to(torch.uint8), backend=backend), TypeError, "rgb must have a floating"),
        (lambda: ops.bayer_mosaic(rgb, "RGBG", backend=backend), ValueError, "pattern must be one of"),
        (lambda: ops.bayer_mosaic(rgb, 0, backend=backend), TypeError, "pattern must be a str"),
        (lambda: ops.bayer_pack(rgb, backend=backend), ValueError, "cfa must have 1 channel"),
        (lambda: ops.bayer_pack(rgb[:, :1, :, :3], backend=backend), ValueError, "cfa height and width"),
        (lambda: ops.bayer_unpack(rgb, backend=backend), ValueError, "packed must have 4 channel"),
        (lambda: ops.bayer_pack(rgb[:, :1], "RGGB", 0.1, backend=backend), ValueError, "given together"),
        (lambda: ops.bayer_pack(rgb[:, :1], "RGGB", 1.0, 0.5, backend=backend), ValueError, "white_level must exceed"),
        (lambda: ops.bayer_pack(rgb[:, :1], "RGGB", [0, 0], 1, backend=backend), ValueError, "black_level must be"),
        (
            lambda: ops.bayer_pack(rgb[:, :1], "RGGB", 0, float("inf"), backend=backend),
            ValueError,
            "white_level must be finite",
        ),
        (lambda: ops.bayer_pack(rgb[:, :1].to(torch.int64), backend=backend), TypeError, "uint16"),
        (
            lambda: ops.bayer_pack(rgb[:, :1], "RGGB", torch.zeros(4, device="meta"), 1.0, backend=backend),
            ValueError,
            "black_level is on meta but the image is on cpu",
        ),
        (lambda: ops.bayer_pack(rgb[:, :1], backend="cuda"), ValueError, "backend must be one of"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


@pytest.mark.skipif("native" not in BACKENDS, reason="native backend not built")
def test_registered_op_checks_its_arguments():
    """As noise_sample's: RuntimeError from the operator itself (the stable ABI carries no exception type)."""
    remap = torch.ops.cycleisp_fast.bayer_remap
    with pytest.raises(RuntimeError, match="pattern must be one of"):
        remap(torch.rand(1, 1, 4, 4), "cfa", "packed", "RGBX")
    with pytest.raises(RuntimeError, match="src height and width must be even"):
        remap(torch.rand(1, 1, 3, 4), "cfa", "packed", "RGGB")
    with pytest.raises(RuntimeError, match="must have 3 channels"):
        remap(torch.rand(1, 1, 4, 4), "rgb", "packed", "RGGB")
    with pytest.raises(RuntimeError, match="must differ"):
        remap(torch.rand(1, 1, 4, 4), "cfa", "cfa", "RGGB")
    with pytest.raises(RuntimeError, match="4 values"):
        remap(torch.rand(1, 1, 4, 4), "cfa", "packed", "RGGB", [0.0], [1.0])
    with pytest.raises(RuntimeError, match="src must be a floating tensor"):
        remap(torch.zeros(1, 1, 4, 4, dtype=torch.int64), "cfa", "packed", "RGGB")
