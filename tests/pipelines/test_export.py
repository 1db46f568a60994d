"""Export to ONNX and torch.export (``pipelines/export.py``): every network's exported graph, run by onnxruntime
itself (not through the package's wrapper) or reloaded with ``torch.export.load``, gives the PyTorch model's output
at sizes other than the traced one; the size-generic paths the tracer takes equal the eager shortcuts; bad files
and arguments are named."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import cycleisp_fast
from cycleisp_fast.models import CCM, AINDNet, DenoiseNet, Raw2Rgb, Rgb2Raw
from cycleisp_fast.nn import ain as ain_module
from cycleisp_fast.nn import tf_compat
from cycleisp_fast.pipelines import export

TINY = dict(n_feats=8, num_rrg=1, num_dab=1, reduction=4)


def make_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    builders = {
        "cycleisp-srgb": lambda: DenoiseNet(raw=False, **TINY),
        "cycleisp-raw": lambda: DenoiseNet(raw=True, **TINY),
        "aindnet": AINDNet,
        "rgb2raw": Rgb2Raw,
        "ccm": CCM,
        "raw2rgb": Raw2Rgb,
    }
    return builders[name]().eval()


def inputs_for(name: str, batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(height * 1000 + width)
    channels = [c for _, c in export.NETWORKS[name].inputs]
    tensors = [torch.rand(batch, c, height, width, generator=generator) for c in channels]
    if name == "cycleisp-raw":
        tensors[1] = 0.01 * tensors[0] + 1e-4
    return tuple(tensors)


def reference_output(model, inputs):
    with torch.no_grad(), cycleisp_fast.use_backend("reference"):
        return model(*inputs)


# sizes unlike the traced ones: other parities at every scale, non-square, batch 1 and 3
SIZES = {1: [(1, 26, 38), (3, 33, 20)], 2: [(1, 26, 38), (3, 34, 20)]}


@pytest.mark.parametrize("name", list(export.NETWORKS))
def test_onnx_export_runs_in_onnxruntime_at_other_sizes(tmp_path, name):
    model = make_model(name)
    path = tmp_path / f"{name}.onnx"
    result = export.export_model(model, name, path)
    assert result.path == path and result.format == "onnx" and result.max_error <= export.EXPORT_TOLERANCE
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    entry = export.NETWORKS[name]
    assert [node.name for node in session.get_inputs()] == [input_name for input_name, _ in entry.inputs]
    assert [node.name for node in session.get_outputs()] == [entry.output]
    metadata = json.loads(session.get_modelmeta().custom_metadata_map[export.METADATA_KEY])
    assert metadata["network"] == name
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert all(":" not in op for op in ops), ops  # standard operators only
    for batch, height, width in SIZES[entry.multiple]:
        inputs = inputs_for(name, batch, height, width)
        (output,) = session.run(None, {node.name: x.numpy() for node, x in zip(session.get_inputs(), inputs)})
        expected = reference_output(model, inputs)
        assert output.shape == tuple(expected.shape)
        np.testing.assert_allclose(output, expected.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_pt2_program_reloads_and_matches(tmp_path, fused):
    model = make_model("cycleisp-raw")
    path = tmp_path / "raw.pt2"
    export.export_model(model, "cycleisp-raw", path, fused=fused)
    extra = {f"{export.METADATA_KEY}.json": ""}
    program = torch.export.load(path, extra_files=extra)
    assert json.loads(extra[f"{export.METADATA_KEY}.json"]) == {
        "network": "cycleisp-raw",
        "inputs": ["noisy", "variance"],
        "fused": fused,
    }
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("cycleisp_fast" in target for target in targets) == fused
    for batch, height, width in SIZES[1]:
        inputs = inputs_for("cycleisp-raw", batch, height, width)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(*inputs), reference_output(model, inputs), rtol=0, atol=1e-5)


def test_load_exported_runs_like_the_model_and_checks_its_inputs(tmp_path):
    model = make_model("cycleisp-srgb")
    export.export_model(model, "cycleisp-srgb", tmp_path / "srgb.onnx")
    exported = export.load_exported(tmp_path / "srgb.onnx")
    assert exported.network == "cycleisp-srgb" and exported.domain == "srgb"
    x = torch.rand(2, 3, 21, 30)
    torch.testing.assert_close(exported(x), reference_output(model, (x,)), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="noisy"):
        exported(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="takes 1 input"):
        exported(x, x)


def test_even_sizes_are_required_where_the_network_needs_them(tmp_path):
    export.export_model(make_model("ccm"), "ccm", tmp_path / "ccm.pt2")
    with pytest.raises(ValueError, match="multiples of 2"):
        export.load_exported(tmp_path / "ccm.pt2")(torch.rand(1, 3, 25, 24))


def test_a_failed_check_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "EXPORT_TOLERANCE", -1.0)
    with pytest.raises(RuntimeError, match="differs from the model"):
        export.export_model(make_model("cycleisp-srgb"), "cycleisp-srgb", tmp_path / "srgb.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "output, fused, message",
    [("model.onnx.tmp", False, "must end in .onnx or .pt2"), ("model.onnx", True, "use a .pt2 output")],
)
def test_bad_export_arguments_are_named(tmp_path, output, fused, message):
    with pytest.raises(ValueError, match=message):
        export.export_model(make_model("cycleisp-srgb"), "cycleisp-srgb", tmp_path / output, fused=fused)
    with pytest.raises(ValueError, match="network must be one of"):
        export.export_model(make_model("cycleisp-srgb"), "unet", tmp_path / "x.onnx")


def test_files_that_are_not_exports_are_named(tmp_path):
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.ReLU().eval(), (torch.rand(1, 3),), str(foreign), dynamo=True, verbose=False)
    with pytest.raises(ValueError, match=f"{foreign}.*metadata"):
        export.load_exported(foreign)
    truncated = tmp_path / "truncated.onnx"
    export.export_model(make_model("cycleisp-srgb"), "cycleisp-srgb", truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(ValueError, match="could not be read as an ONNX model"):
        export.load_exported(truncated)
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="torch.export program"):
        export.load_exported(tmp_path / "junk.pt2")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        export.load_exported(tmp_path / "missing.onnx")


def test_load_network_needs_weights_that_fit(tmp_path):
    with pytest.raises(ValueError, match="needs weights"):
        export.load_network("rgb2raw", None)
    torch.save(Raw2Rgb().state_dict(), tmp_path / "raw2rgb.pth")
    with pytest.raises(ValueError, match="do not fit network 'rgb2raw'"):
        export.load_network("rgb2raw", tmp_path / "raw2rgb.pth")
    assert isinstance(export.load_network("raw2rgb", tmp_path / "raw2rgb.pth"), Raw2Rgb)


# ------------------------------------------------------------- the size-generic paths equal the shortcuts


@pytest.fixture
def traced_paths(monkeypatch):
    """Makes the TF-compatibility functions take the paths they take under torch.export / torch.compile."""
    monkeypatch.setattr(tf_compat, "shape_generic", lambda: True)
    monkeypatch.setattr(ain_module, "shape_generic", lambda: True)


@pytest.mark.parametrize("size", [(16, 24), (17, 23), (8, 8), (1, 5)])
def test_generic_paths_equal_the_shortcuts_bit_for_bit(size, request):
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    weight = torch.randn(3, 2, 2, 2, dtype=torch.float64)
    small = torch.randn(2, 3, (size[0] + 1) // 2, (size[1] + 1) // 2, dtype=torch.float64)

    def outputs():
        return (
            tf_compat.avg_pool2d_same(x, 4),
            tf_compat.avg_pool2d_same(x, 2),
            tf_compat.resize_bilinear_legacy(x, ((size[0] + 1) // 2, (size[1] + 1) // 2)),
            tf_compat.resize_bilinear_legacy(x, size),
            tf_compat.conv_transpose2d_same(small, weight, size),
        )

    eager = outputs()
    request.getfixturevalue("traced_paths")
    for got, expected in zip(outputs(), eager):
        assert torch.equal(got, expected)


def test_aindnet_on_the_generic_paths_equals_eager(request):
    model = AINDNet().double().eval()
    x = torch.rand(1, 3, 32, 40, dtype=torch.float64)  # integer resize factors and no padding: every shortcut
    with torch.no_grad(), cycleisp_fast.use_backend("reference"):
        eager = model(x)
        request.getfixturevalue("traced_paths")
        generic = model(x)
    torch.testing.assert_close(generic, eager, rtol=0, atol=1e-12)
