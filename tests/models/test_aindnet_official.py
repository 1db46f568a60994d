"""AINDNet against the official TF graph running (tests/official_aindnet_tf.py, TensorFlow's own ops under
``tf.compat.v1``), and the official TF checkpoint format written by real TensorFlow.

- Any size, float64: our model and the TF graph built in float64 with the same weights agree to float64
  rounding at sizes that are not multiples of 8, odd, prime and 1 x n (TF's 'SAME' pooling, legacy resizes and
  cropped transposed convs; there is no padding). float64 because at tiny sizes the instance norm of a 2-pixel
  plane amplifies float32 rounding to O(1) in both frameworks alike (TF float32 vs TF float64 differ as much).
- Checkpoint round trip, float32: a checkpoint saved by ``tf.train.Saver`` loads key for key and our outputs
  equal TF's within float32 rounding (relative to the output's scale), on every backend.
- TF layer semantics one by one against the TF ops: :mod:`cycleisp_fast.nn.tf_compat`.
- Bad checkpoints: missing / extra / mis-shaped variables, a truncated .data file, a folder without TF's
  ``checkpoint`` file, another network: a clear error, nothing loaded.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tensorflow", reason="needs tensorflow-cpu (requirements-dev.txt)")
tf_slim = pytest.importorskip("tf_slim", reason="needs tf-slim (requirements-dev.txt)")
import official_aindnet_tf as tf_graph  # noqa: E402
from conftest import fused_backends  # noqa: E402

from cycleisp_fast.models import AINDNet, DenoiseNet, load_official  # noqa: E402
from cycleisp_fast.models.tf_checkpoint import aindnet_variable_names, read_aindnet_tf_checkpoint  # noqa: E402
from cycleisp_fast.nn.tf_compat import avg_pool2d_same, conv_transpose2d_same, resize_bilinear_legacy  # noqa: E402

tf = tf_graph.tf
BACKENDS = ["reference"] + fused_backends("ain_forward")
ODD_SIZES = [(61, 47), (13, 1), (1, 9), (7, 3), (1, 1), (2, 2), (17, 30)]


def nchw(array):
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def graph64():
    graph = tf_graph.OfficialAINDNetGraph(np.float64)
    values = {k: v.astype(np.float32) for k, v in graph.randomize(seed=3).items()}  # float32 weights, as saved
    graph.assign(values)
    return graph, values


@pytest.fixture(scope="module")
def checkpoint32(tmp_path_factory):
    """A float32 official graph with random weights, saved by tf.train.Saver as model.ckpt-1000."""
    graph = tf_graph.OfficialAINDNetGraph(np.float32)
    graph.randomize(seed=5)
    folder = tmp_path_factory.mktemp("aindnet_tf")
    prefix = graph.save(str(folder / "model.ckpt"), global_step=1000)
    return graph, folder, prefix


def test_the_graph_has_the_official_variables():
    graph = tf_graph.OfficialAINDNetGraph()
    names = aindnet_variable_names()
    assert len(names) == 256 == len(AINDNet().state_dict())
    assert set(names.values()) == set(graph.variables)
    assert sum(int(np.prod(v.shape.as_list())) for v in graph.variables.values()) == 13_764_014


@pytest.mark.parametrize("size", ODD_SIZES + [(16, 24)])
def test_any_size_equals_the_official_graph_float64(graph64, size):
    graph, values = graph64
    model = AINDNet(backend="reference").double().eval()
    load_official(model, {k: v.double() for k, v in _state(values).items()})
    noisy = np.random.default_rng(size[0] * 100 + size[1]).random((2, *size, 3))
    expected_map, expected = graph.run(noisy)
    with torch.no_grad():
        denoised, noise_map, _ = model(nchw(noisy), return_noise_map=True)
    torch.testing.assert_close(noise_map, nchw(expected_map), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(denoised, nchw(expected), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in ("reference", "triton")])
def test_fused_backends_equal_the_official_graph_at_odd_sizes(graph64, backend):
    """Native here; Triton equals the reference at an odd size in test_aindnet.py (its interpreter needs minutes
    for a whole network), hence the official graph too."""
    graph, values = graph64
    model = AINDNet(backend=backend).double().eval()
    model.load_state_dict({k: v.double() for k, v in _state(values).items()})
    for size in [(61, 47), (7, 3), (1, 9)]:
        noisy = np.random.default_rng(1).random((1, *size, 3))
        with torch.no_grad():
            denoised = model(nchw(noisy))
        torch.testing.assert_close(denoised, nchw(graph.run(noisy)[1]), rtol=1e-8, atol=1e-8)


def _state(values):
    from cycleisp_fast.models.tf_checkpoint import convert_aindnet_variables

    return convert_aindnet_variables(values)


@pytest.mark.parametrize("form", ["folder", "prefix", "index file"])
def test_tf_checkpoint_loads_key_for_key_and_runs_as_tf(checkpoint32, form):
    graph, folder, prefix = checkpoint32
    path = {"folder": folder, "prefix": prefix, "index file": prefix + ".index"}[form]
    model = load_official(AINDNet(backend="reference"), path).eval()
    values = graph.values()
    for key, tf_name in aindnet_variable_names().items():
        expected = values[tf_name]
        expected = expected.transpose(3, 2, 0, 1) if expected.ndim == 4 else expected
        assert np.array_equal(model.state_dict()[key].numpy(), expected), key
    noisy = np.random.default_rng(0).random((1, 29, 45, 3), dtype=np.float32)
    expected_map, expected = graph.run(noisy)
    with torch.no_grad():
        denoised, noise_map, _ = model(nchw(noisy), return_noise_map=True)
    torch.testing.assert_close(noise_map, nchw(expected_map))
    assert (denoised - nchw(expected)).abs().max() <= 2e-5 * float(np.abs(expected).max())


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])  # Triton: float64 test above
@pytest.mark.parametrize("size", [(32, 32), (30, 23)])
def test_float32_backends_within_rounding_of_tf(checkpoint32, backend, size):
    graph, folder, _ = checkpoint32
    model = load_official(AINDNet(backend=backend), folder).eval()
    noisy = np.random.default_rng(2).random((2, *size, 3), dtype=np.float32)
    with torch.no_grad():
        denoised = model(nchw(noisy))
    expected = graph.run(noisy)[1]
    assert (denoised - nchw(expected)).abs().max() <= 2e-5 * float(np.abs(expected).max())


@pytest.fixture(scope="module")
def official_values(checkpoint32):
    return checkpoint32[0].values()


def test_optimizer_state_in_a_checkpoint_is_skipped(tmp_path, official_values):
    values = official_values
    extra = {
        "AINDNet/conv6/weights/Adam": values["AINDNet/conv6/weights"],
        "beta1_power": np.float32(0.9),
        "global_step": np.int64(7),
    }
    prefix = tf_graph.write_checkpoint(str(tmp_path / "model"), {**values, **extra})
    model = load_official(AINDNet(), prefix)
    assert np.array_equal(model.conv6.bias.detach().numpy(), values["AINDNet/conv6/biases"])


def _bad_checkpoint(tmp_path, values, change):
    values = dict(values)
    change(values)
    return tf_graph.write_checkpoint(str(tmp_path / "model"), values)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: v.pop("AINDNet/conv6/biases"), r"missing variables: AINDNet/conv6/biases"),
        (
            lambda v: v.update({"AINDNet/conv7/weights": np.zeros((1, 1, 64, 3), np.float32)}),
            r"unexpected variables: AINDNet/conv7/weights",
        ),
        (
            lambda v: v.update({"AINDNet/conv6/weights": np.zeros((1, 1, 64, 4), np.float32)}),
            r"wrong shapes: AINDNet/conv6/weights \(1, 1, 64, 4\) \(expected \(1, 1, 64, 3\)\)",
        ),
        (
            lambda v: v.update({"AINDNet/conv6/biases": np.zeros(3, np.float64)}),
            r"not float32: AINDNet/conv6/biases is float64",
        ),
    ],
)
def test_bad_tf_checkpoints_name_the_variables_and_load_nothing(tmp_path, official_values, change, message):
    prefix = _bad_checkpoint(tmp_path, official_values, change)
    model = AINDNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        load_official(model, prefix)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_truncated_data_file_and_missing_checkpoint_file_are_named(checkpoint32, tmp_path):
    _, folder, prefix = checkpoint32
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in folder.iterdir():
        data = path.read_bytes()
        (broken / path.name).write_bytes(data[: len(data) // 2] if ".data-" in path.name else data)
    with pytest.raises(ValueError, match=r"broken/model.ckpt-1000 .*could not be read"):
        read_aindnet_tf_checkpoint(broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty holds no TensorFlow 'checkpoint' file"):
        load_official(AINDNet(), empty)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_aindnet_tf_checkpoint(tmp_path / "nothing" / "model.ckpt-1")
    with pytest.raises(ValueError, match="is a TensorFlow checkpoint, the format of AINDNet's"):
        load_official(DenoiseNet(raw=False), prefix)


# -- the TF layer semantics, one by one, against TF's ops ----------------------------------------------------


def _tf_run(build, *arrays):
    with tf.Graph().as_default(), tf.Session() as session:
        return session.run(build(*(tf.constant(a) for a in arrays)))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 19), st.integers(1, 19), st.sampled_from([(2, 2), (4, 4), (3, 2), (2, 1)]))
def test_avg_pool2d_same_equals_tf(height, width, kernel_stride):
    kernel, stride = kernel_stride
    x = np.random.default_rng(height * 31 + width).random((2, height, width, 3))
    expected = _tf_run(lambda t: tf.nn.avg_pool2d(t, kernel, stride, "SAME"), x)
    torch.testing.assert_close(avg_pool2d_same(nchw(x), kernel, stride), nchw(expected))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 23), st.integers(1, 23), st.integers(1, 23), st.integers(1, 23))
def test_resize_bilinear_legacy_equals_tf(height, width, out_height, out_width):
    x = np.random.default_rng(height * 7 + width).random((1, height, width, 2)).astype(np.float32)
    expected = _tf_run(lambda t: tf.image.resize_bilinear(t, (out_height, out_width)), x)
    torch.testing.assert_close(resize_bilinear_legacy(nchw(x), (out_height, out_width)), nchw(expected), rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 17), st.integers(1, 17))
def test_conv_transpose2d_same_equals_tf(out_height, out_width):
    rng = np.random.default_rng(out_height * 19 + out_width)
    x = rng.random((1, -(-out_height // 2), -(-out_width // 2), 5))
    tf_filter = rng.random((2, 2, 3, 5))  # (kh, kw, out, in)
    expected = _tf_run(
        lambda t, f: tf.nn.conv2d_transpose(t, f, (1, out_height, out_width, 3), [1, 2, 2, 1], "SAME"), x, tf_filter
    )
    weight = torch.from_numpy(tf_filter.transpose(3, 2, 0, 1).copy())  # (in, out, kh, kw), no flip
    torch.testing.assert_close(conv_transpose2d_same(nchw(x), weight, (out_height, out_width)), nchw(expected))


def test_initialisers_match_the_official_ones():
    """slim.conv2d's default (xavier_initializer) and tf.contrib.layers.variance_scaling_initializer(0.02), as
    tf-slim (the contrib code, kept) draws them, against ours: the same std and range."""
    from cycleisp_fast.nn.tf_compat import conv2d_same

    shape = (3, 3, 128, 256)  # TF (kh, kw, in, out)
    with tf.Graph().as_default(), tf.Session() as session:
        glorot = session.run(tf_slim.xavier_initializer(seed=1)(shape, dtype=tf.float32))
        scaled = session.run(tf_slim.variance_scaling_initializer(factor=0.02, seed=1)(shape, dtype=tf.float32))
    ours_glorot = conv2d_same(128, 256, 3, init="glorot_uniform").weight.detach().numpy()
    ours_scaled = conv2d_same(128, 256, 3).weight.detach().numpy()
    for ours, theirs in ((ours_glorot, glorot), (ours_scaled, scaled)):
        assert abs(ours.std() / theirs.std() - 1) < 0.02
        assert abs(np.abs(ours).max() / np.abs(theirs).max() - 1) < 0.02
