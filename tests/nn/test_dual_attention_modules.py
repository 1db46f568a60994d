"""CycleISP's attention modules (ChannelAttention, SpatialAttention, DAB, RRG): state-dict keys and order as
the spec lists them, the official forward (load its weights, compare), the
shared activation, every fused backend against the reference, and torch.compile(fullgraph=True) of an RRG.
The official forward is written out independently in ``tests/official_cycleisp.py``.

Tolerances: with the reference backend the modules run the official operations in the official order, so
outputs are equal bit for bit; fused backends agree to 1e-12 (float64, relative to the largest magnitude) with
the reference through a whole RRG, compiled or not.
"""

import official_cycleisp as official
import pytest
import torch
import torch.nn.functional as F
from conftest import fused_backends
from torch import nn

from cycleisp_fast import backend as backend_mod
from cycleisp_fast.nn import DAB, RRG, ChannelAttention, SpatialAttention, default_conv

BACKENDS = fused_backends("dual_attention_forward")
DAB_KEYS = [
    "SA.spatial.conv.weight",
    "CA.conv_du.0.weight",
    "CA.conv_du.0.bias",
    "CA.conv_du.2.weight",
    "CA.conv_du.2.bias",
    "body.0.weight",
    "body.0.bias",
    "body.1.weight",
    "body.2.weight",
    "body.2.bias",
    "conv1x1.weight",
    "conv1x1.bias",
]


def randomized(module):
    """Gives every parameter random values (the default init leaves biases small, PReLU constant)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    return module


def test_dab_keys_shapes_and_order():
    dab = DAB(default_conv, 64, 3, 16, act=nn.PReLU(64))
    shapes = {k: tuple(v.shape) for k, v in dab.state_dict().items()}
    assert list(shapes) == DAB_KEYS
    assert shapes["SA.spatial.conv.weight"] == (1, 2, 3, 3)
    assert shapes["CA.conv_du.0.weight"] == (4, 64, 1, 1) and shapes["CA.conv_du.2.weight"] == (64, 4, 1, 1)
    assert shapes["body.1.weight"] == (64,) and shapes["conv1x1.weight"] == (64, 128, 1, 1)


def test_rrg_keys_and_shared_activation():
    act = nn.PReLU(96)
    rrg = RRG(default_conv, 96, 3, 8, act=act, num_dab=5)
    keys = list(rrg.state_dict())
    assert len(keys) == 12 * 5 + 2
    assert keys[:12] == [f"body.0.{k}" for k in DAB_KEYS] and keys[-2:] == ["body.5.weight", "body.5.bias"]
    assert all(rrg.body[i].body[1] is act for i in range(5))  # one PReLU, stored under five names
    assert (
        sum(p.numel() for p in rrg.parameters())
        == 5 * (2 * (96 * 96 * 9 + 96) + 18 + 2 * 12 * 96 + 12 + 96 + 96 * 192 + 96) + 96 + 96 * 96 * 9 + 96
    )


def test_attention_layers_match_the_official_formulas():
    x = torch.randn(2, 32, 5, 6, dtype=torch.float64)
    ca = randomized(ChannelAttention(32, 8).double())
    y = ca.conv_du[0](x.mean((2, 3), keepdim=True)).relu()
    torch.testing.assert_close(ca(x), x * torch.sigmoid(ca.conv_du[2](y)))
    sa = randomized(SpatialAttention().double())
    pooled = torch.stack([x.amax(1), x.mean(1)], 1)
    torch.testing.assert_close(sa(x), x * torch.sigmoid(F.conv2d(pooled, sa.spatial.conv.weight, padding=1)))


def test_reference_backend_equals_the_official_computation_bit_for_bit():
    act = nn.PReLU(16)
    rrg = randomized(RRG(default_conv, 16, 3, 4, act=act, num_dab=2, backend="reference"))
    x = torch.randn(2, 16, 7, 9)
    with torch.no_grad():
        assert torch.equal(rrg(x), official.rrg(rrg.state_dict(), "", x, act, 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_rrg_matches_reference_with_gradients(backend):
    act = nn.PReLU(64)
    rrg = randomized(RRG(default_conv, 64, 3, 16, act=act, num_dab=2).double())
    x = torch.randn(2, 64, 6, 5, dtype=torch.float64)
    results = {}
    for name in ("reference", backend):
        with backend_mod.use_backend(name):
            leaves = [x.clone().requires_grad_(True), *rrg.parameters()]
            out = rrg(leaves[0])
            results[name] = [out, *torch.autograd.grad(out, leaves, torch.ones_like(out))]
    for actual, expected in zip(results[backend], results["reference"]):
        error = (actual - expected).abs().max() / expected.abs().max()
        assert error < 1e-12


def test_dab_bad_input_and_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        DAB(default_conv, 8, 3, 4, backend="fast")
    with pytest.raises(ValueError, match="channel // reduction must be at least 1"):
        ChannelAttention(8, 16)
    dab = DAB(default_conv, 8, 3, 4, act=nn.PReLU(8))
    with pytest.raises(RuntimeError, match="expected input.* to have 8 channels"):
        dab(torch.randn(1, 4, 5, 5))


@pytest.mark.skipif("native" not in BACKENDS, reason="native kernels are not built")
def test_torch_compile_fullgraph_rrg():
    rrg = randomized(RRG(default_conv, 16, 3, 4, act=nn.PReLU(16), num_dab=2).double())
    x = torch.randn(1, 16, 8, 8, dtype=torch.float64, requires_grad=True)
    results = {}
    for name, run in (("native", torch.compile(rrg, fullgraph=True)), ("reference", rrg)):
        with backend_mod.use_backend(name):
            out = run(x)
            results[name] = (out, *torch.autograd.grad(out.square().sum(), x))
    for actual, expected in zip(results["native"], results["reference"]):
        torch.testing.assert_close(actual, expected)
