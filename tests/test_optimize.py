"""``cycleisp_fast.optimize``: the fastest path computes what the model on the reference backend (the official
computation) computes: float32 within float rounding, outputs and parameter gradients; bfloat16 within its stated
bound; same state-dict keys; shared parameters for training; clear errors."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

import cycleisp_fast
from cycleisp_fast import optimize
from cycleisp_fast.models import AINDNet, DenoiseNet
from cycleisp_fast.nn.prelu import OutputSavingPReLU
from cycleisp_fast.nn.winograd import WinogradConv2d
from cycleisp_fast.optimization import OptimizedModel

FP32 = {"rtol": 1e-5, "atol": 1e-5}
BF16_MIN_PSNR_DB = 35.0
"""The bfloat16 bound checked here on tiny networks (the README states the PSNR measured on the full networks)."""


def _small_denoisenet(raw: bool) -> DenoiseNet:
    torch.manual_seed(0)
    return DenoiseNet(raw=raw, n_feats=16, num_rrg=1, num_dab=2, reduction=4, backend="reference").eval()


def _inputs(raw: bool, batch: int = 2, size: int = 12) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    noisy = torch.rand(batch, 4 if raw else 3, size, size, generator=generator)
    return (noisy, 0.01 * noisy + 1e-4) if raw else (noisy,)


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return 10 * math.log10(1 / (x.double() - y.double()).square().mean().item())


def test_the_package_exports_optimize():
    assert cycleisp_fast.optimize is optimize
    assert "optimize" in cycleisp_fast.__all__


@pytest.mark.parametrize("raw", [False, True], ids=["srgb", "raw"])
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_inference_equals_the_official_computation(raw, compile):
    model = _small_denoisenet(raw)
    inputs = _inputs(raw)
    fast = optimize(model, compile=compile)
    with torch.no_grad():
        expected = model(*inputs)
    output = fast(*inputs)
    assert not output.requires_grad and output.dtype == torch.float32
    torch.testing.assert_close(output, expected, **FP32)
    assert fast.channels_last and output.shape == expected.shape


def test_aindnet_inference_equals_the_official_computation():
    torch.manual_seed(0)
    model = AINDNet(backend="reference").eval()
    noisy = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(2))
    fast = optimize(model, compile=False)
    assert fast.winograd and fast.channels_last  # Winograd and the CPU AIN kernel read channels_last
    assert any(isinstance(m, WinogradConv2d) for m in fast.module.modules())
    with torch.no_grad():
        torch.testing.assert_close(fast(noisy), model(noisy), **FP32)
    direct = optimize(model, compile=False, winograd=False)
    assert not direct.channels_last  # without Winograd, NCHW measured faster for AINDNet on the CPU
    assert not any(isinstance(m, WinogradConv2d) for m in direct.module.modules())
    with torch.no_grad():
        torch.testing.assert_close(direct(noisy), model(noisy), **FP32)


@pytest.mark.parametrize("raw", [False, True], ids=["srgb", "raw"])
def test_training_shares_the_parameters_and_gives_the_official_gradients(raw):
    model = _small_denoisenet(raw).train()
    official = _small_denoisenet(raw).train()
    inputs = _inputs(raw)
    fast = optimize(model, inference=False)
    assert [id(p) for p in fast.parameters()] == [id(p) for p in model.parameters()]
    prelus = [m for m in fast.module.modules() if isinstance(m, nn.PReLU)]
    assert prelus and all(isinstance(m, OutputSavingPReLU) for m in prelus)
    fast(*inputs).square().mean().backward()
    official(*inputs).square().mean().backward()
    for (name, p), q in zip(model.named_parameters(), official.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **FP32, msg=name)
    # An optimizer over the original's parameters trains the optimized module: one step moves both.
    before = fast(*inputs).detach()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert not torch.allclose(fast(*inputs).detach(), before)


def test_aindnet_training_gives_the_official_gradients_within_float32_rounding():
    """AINDNet's training step by Winograd (forward, input and weight gradients) and the channels_last AIN
    backward: all gradients against the official computation in float64, no further than 10x the official float32
    computation is (its float32 gradients are ill-conditioned: see cycleisp_fast/cases/models.py)."""
    torch.manual_seed(0)
    model = AINDNet(backend="reference").train()
    official32, exact = copy.deepcopy(model), copy.deepcopy(model).double()
    noisy = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    fast = optimize(model, inference=False)
    assert fast.winograd and fast.channels_last
    for module, x in ((fast, noisy), (official32, noisy), (exact, noisy.double())):
        module(x).square().mean().backward()

    def relative_error(module):
        pairs = [(p.grad.double(), e.grad) for p, e in zip(module.parameters(), exact.parameters())]
        return (
            sum((a - b).square().sum() for a, b in pairs).sqrt() / sum(b.square().sum() for _, b in pairs).sqrt()
        ).item()

    assert relative_error(model) < max(10 * relative_error(official32), 1e-5)


def test_state_dict_keeps_the_official_keys_and_loading_recompiles():
    model = _small_denoisenet(False)
    fast = optimize(model, compile=True)
    inputs = _inputs(False)
    assert list(fast.state_dict()) == list(model.state_dict())
    fast(*inputs)  # compiles, freezing the current weights
    other = DenoiseNet(raw=False, n_feats=16, num_rrg=1, num_dab=2, reduction=4).eval()
    fast.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fast(*inputs), other(*inputs), **FP32)


def test_inference_copy_leaves_the_model_alone():
    model = _small_denoisenet(False)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    fast = optimize(model, compile=False)
    assert all(p.requires_grad for p in model.parameters())
    assert all(module.backend == "reference" for module in model.modules() if hasattr(module, "backend"))
    assert all(module.backend == "auto" for module in fast.module.modules() if hasattr(module, "backend"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]) and value.is_contiguous(), key


@pytest.mark.parametrize("inference", [True, False], ids=["inference", "training"])
def test_bfloat16_stays_within_its_bound_and_returns_float32(inference):
    model = _small_denoisenet(False)
    inputs = _inputs(False)
    fast = optimize(model, inference=inference, precision="bfloat16", compile=False)
    with torch.no_grad():
        expected = model(*inputs)
        output = fast(*inputs)
    assert output.dtype == torch.float32
    assert _psnr(output, expected) > BF16_MIN_PSNR_DB


def test_the_default_levers_are_the_measured_ones():
    """On the CPU: compile for AINDNet's inference only; Winograd for float32 inference and training;
    channels_last for the CycleISP networks and wherever Winograd runs."""
    denoisenet = _small_denoisenet(False)
    torch.manual_seed(0)
    aindnet = AINDNet()
    assert optimize(denoisenet).compile_options is None and optimize(denoisenet).channels_last
    assert optimize(denoisenet).winograd and optimize(aindnet).winograd
    assert optimize(aindnet).compile_options == {
        "dynamic": False,
        "options": {"freezing": True, "triton.cudagraphs": False},
    }
    assert optimize(aindnet).channels_last
    training = optimize(aindnet, inference=False)
    assert training.compile_options is None and training.channels_last and training.winograd
    assert optimize(denoisenet, inference=False).winograd
    assert not optimize(denoisenet, precision="bfloat16").winograd


def test_winograd_convolutions_share_the_weights_and_follow_loading():
    model = _small_denoisenet(False)
    fast = optimize(model, compile=False)
    winograd = [m for m in fast.module.modules() if isinstance(m, WinogradConv2d)]
    assert winograd and all(m.in_channels >= 16 and m.out_channels >= 16 for m in winograd)
    assert list(fast.state_dict()) == list(model.state_dict())
    other = DenoiseNet(raw=False, n_feats=16, num_rrg=1, num_dab=2, reduction=4).eval()
    fast.load_state_dict(other.state_dict())
    inputs = _inputs(False)
    with torch.no_grad():
        torch.testing.assert_close(fast(*inputs), other(*inputs), **FP32)


def test_winograd_is_refused_where_it_does_not_apply():
    model = _small_denoisenet(False)
    with pytest.raises(ValueError, match="winograd=True applies to float32 on the CPU"):
        optimize(model, precision="bfloat16", winograd=True)


def test_bfloat16_on_a_cpu_without_it_warns(monkeypatch):
    monkeypatch.setattr("cycleisp_fast.optimization._cpu_has_bfloat16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bfloat16"):
        optimize(_small_denoisenet(False), precision="bfloat16")


def test_a_failing_compile_falls_back_to_the_fused_model_with_one_warning(monkeypatch):
    def broken_compile(module, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("inductor: no C++ compiler\nmore detail")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = _small_denoisenet(False)
    inputs = _inputs(False)
    fast = optimize(model, compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler.*eagerly"):
        output = fast(*inputs)
    with torch.no_grad():
        torch.testing.assert_close(output, model(*inputs), **FP32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast(*inputs)  # compile stays off: no second warning


def test_a_user_error_is_the_models_own():
    fast = optimize(_small_denoisenet(False), compile=True)
    with pytest.raises(ValueError, match="noisy"):
        fast(torch.rand(1, 5, 8, 8))


def test_bad_arguments_name_themselves():
    model = _small_denoisenet(False)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        optimize("model")
    with pytest.raises(TypeError, match="inference must be True or False"):
        optimize(model, inference="yes")
    with pytest.raises(ValueError, match="precision"):
        optimize(model, precision="int8")
    with pytest.raises(ValueError, match="float16.*GPU"):
        optimize(model, precision="float16")


def test_repr_names_the_levers():
    fast = optimize(_small_denoisenet(False), compile=False)
    assert isinstance(fast, OptimizedModel)
    assert "channels_last=True" in repr(fast) and "precision=float32" in repr(fast)
