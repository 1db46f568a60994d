"""CycleISP's networks: state-dict keys, shapes and order against the official list
(``tests/data/cycleisp_state_dict_keys.txt``, from the spec), parameter counts, the shared PReLU, the fixed
blur, the official forward written out independently (``tests/official_cycleisp.py``: equal bit for bit on the
reference backend), every fused backend against the reference in float64 (with the mosaic-only tail and the
separable blur), and torch.compile(fullgraph=True) of a denoiser."""

import re
from pathlib import Path

import official_cycleisp as official
import pytest
import torch
from conftest import fused_backends

from cycleisp_fast import backend as backend_mod
from cycleisp_fast.models import CCM, DenoiseNet, Raw2Rgb, Rgb2Raw
from cycleisp_fast.models.cycleisp import mosaic_conv3x3, separable_blur

KEYS_FILE = Path(__file__).parent.parent / "data" / "cycleisp_state_dict_keys.txt"
BACKENDS = fused_backends("dual_attention_forward")
NETWORKS = {
    "Rgb2Raw": (Rgb2Raw, 3_143_109),
    "CCM": (CCM, 1_084_419),
    "Raw2Rgb": (Raw2Rgb, 3_244_110),
    "DenoiseNet_raw": (lambda: DenoiseNet(raw=True), 2_838_404),
    "DenoiseNet_rgb": (lambda: DenoiseNet(raw=False), 2_834_947),
}


def official_keys() -> dict[str, list[tuple[str, tuple[int, ...], bool]]]:
    """network -> [(key, shape, is a PReLU alias)] in the official order."""
    sections, current = {}, None
    for line in KEYS_FILE.read_text().splitlines():
        header = re.match(r"## (\w+)", line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif current is not None and "\t" in line:
            name, rest = line.split("\t")
            shape = tuple(int(v) for v in re.findall(r"\d+", rest.split(")")[0]))
            current.append((name, shape, "PReLU-alias" in rest))
    return sections


def randomized(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(0.05 * torch.randn_like(p))
    return model


def inputs_for(name, dtype=torch.float64):
    if name in ("Rgb2Raw", "CCM", "DenoiseNet_rgb"):
        return (torch.rand(1, 3, 24, 22, dtype=dtype),)
    if name == "Raw2Rgb":
        return torch.rand(1, 4, 12, 11, dtype=dtype), torch.rand(1, 96, 12, 11, dtype=dtype)
    return torch.rand(1, 4, 12, 11, dtype=dtype), 0.01 * torch.rand(1, 4, 12, 11, dtype=dtype)


OFFICIAL = {
    "Rgb2Raw": official.rgb2raw,
    "CCM": official.ccm,
    "Raw2Rgb": official.raw2rgb,
    "DenoiseNet_raw": official.denoise,
    "DenoiseNet_rgb": official.denoise,
}


@pytest.mark.parametrize("name", NETWORKS)
def test_keys_shapes_order_and_parameter_count(name):
    build, parameters = NETWORKS[name]
    model = build()
    expected = official_keys()[name]
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [(k, s) for k, s, _ in expected]
    assert sum(p.numel() for p in model.parameters()) == parameters
    aliases = [k for k, _, alias in expected if alias]
    state = model.state_dict(keep_vars=True)
    assert aliases and all(state[k] is state[aliases[0]] for k in aliases)  # one PReLU under every alias


def test_ccm_blur_is_the_fixed_official_gaussian():
    blur = CCM().blur.weight
    assert not blur.requires_grad and blur.shape == (3, 1, 21, 21)
    assert abs(blur[0, 0, 10, 10].item() - 0.0028886) < 1e-7 and abs(blur[0, 0, 0, 0].item() - 0.0014424) < 1e-7
    assert abs(blur[0].sum().item() - 1) < 1e-6


@pytest.mark.parametrize("name", NETWORKS)
def test_reference_backend_equals_the_official_forward(name):
    model = randomized(NETWORKS[name][0]().double())
    inputs = inputs_for(name)
    with torch.no_grad(), backend_mod.use_backend("reference"):
        assert torch.equal(model(*inputs), OFFICIAL[name](model.state_dict(), *inputs))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["Rgb2Raw", "CCM", "DenoiseNet_raw"])
def test_fused_backend_matches_reference(name, backend):
    # 1e-10 in float64; CCM's separable blur differs from the dense one by the official kernel's float32
    # rounding (see test_separable_blur_equals_the_dense_official_blur)
    tolerance = 1e-6 if name == "CCM" else 1e-10
    model = randomized(NETWORKS[name][0]().double())
    inputs = inputs_for(name)
    with torch.no_grad():
        with backend_mod.use_backend("reference"):
            expected = model(*inputs)
        with backend_mod.use_backend(backend):
            actual = model(*inputs)
    assert (actual - expected).abs().max() <= tolerance * expected.abs().max()


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="x must have 3 channel"):
        Rgb2Raw()(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="height and width must be even"):
        Rgb2Raw()(torch.rand(1, 3, 9, 8))
    with pytest.raises(ValueError, match="larger than 10 pixels"):
        CCM()(torch.rand(1, 3, 10, 10))
    with pytest.raises(ValueError, match="ccm_features must be"):
        Raw2Rgb()(torch.rand(1, 4, 8, 8), torch.rand(1, 96, 4, 8))
    with pytest.raises(ValueError, match="variance must be"):
        DenoiseNet(raw=True)(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="takes no variance"):
        DenoiseNet(raw=False)(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_mosaic_only_tail_equals_mosaic_of_the_full_conv():
    features = torch.randn(2, 96, 10, 14, dtype=torch.float64)
    weight, bias = torch.randn(3, 96, 3, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    full = torch.nn.functional.conv2d(features, weight, bias, padding=1)
    torch.testing.assert_close(mosaic_conv3x3(features, weight, bias), official.mosaic(full), rtol=1e-12, atol=1e-12)


def test_separable_blur_equals_the_dense_official_blur():
    x = torch.rand(2, 3, 40, 33, dtype=torch.float64)
    kernel = CCM().blur.weight.double()
    dense = torch.nn.functional.conv2d(x, kernel, groups=3)
    # the official kernel is outer(g, g) only to float32 rounding, so the two differ at that level (values in [0, 1])
    torch.testing.assert_close(separable_blur(x, kernel), dense, rtol=0, atol=2e-7)


@pytest.mark.skipif("native" not in BACKENDS, reason="native kernels are not built")
def test_torch_compile_fullgraph_denoiser():
    model = randomized(DenoiseNet(raw=False).double())
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        with backend_mod.use_backend("native"):
            compiled = torch.compile(model, fullgraph=True)(x)
        with backend_mod.use_backend("reference"):
            expected = model(x)
    torch.testing.assert_close(compiled, expected)
