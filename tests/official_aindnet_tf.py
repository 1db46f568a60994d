"""AINDNet's official TF graph (``terryoo/AINDNet`` ``code/model.py``) rebuilt with ``tf.compat.v1`` ops, with the
official variable names, for the tests: the operations whose semantics matter at odd sizes are TF's own
(``tf.nn.avg_pool2d(..., 'SAME')``, ``tf.compat.v1.image.resize_bilinear`` with its TF1 defaults,
``tf.nn.conv2d_transpose`` to the skip's dynamic shape, ``tf.nn.moments``), not ours.

Written from the spec (``specs/aindnet.md`` §1-2), not copied: the official file uses slim / ``tf.layers`` /
``tf.contrib`` wrappers, replaced here by ``tf.compat.v1.get_variable`` + ``tf.nn`` ops that create the same
variables under the same names (``Conv`` / ``Conv_1`` and ``deconv4_1`` are the names slim's and TF's
uniquifying gave them there). Built in float32 (as the official code) or float64 (to compare at sizes where the
instance norms of tiny planes make float32 rounding chaotic). ``scripts/verify_official_aindnet.py`` checks this
graph and our model against the official file itself, run unchanged.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf2  # noqa: E402

tf = tf2.compat.v1
LEVEL_BLOCKS = {1: 2, 2: 2, 3: 5, 4: 3, 5: 2}
LEVEL_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 128, 5: 64}


def leaky_relu(x, slope=0.02):
    """``tf.nn.leaky_relu(x, 0.02)``; spelled out because that op's ``alpha`` is a float32 attribute, which a
    float64 graph would see rounded."""
    return tf.where(x >= 0, x, x * tf.constant(slope, dtype=x.dtype))


class OfficialAINDNetGraph:
    """The official graph in its own ``tf.Graph`` and session; variables start at zero until set."""

    def __init__(self, dtype=np.float32):
        self.dtype = tf.as_dtype(dtype)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.input = tf.placeholder(self.dtype, [None, None, None, 3])
            self.noise_map, self.output = self._aindnet(self.input)
            self.variables = {v.op.name: v for v in tf.global_variables()}
            self._feeds = {name: tf.placeholder(self.dtype, v.shape) for name, v in self.variables.items()}
            self._assign = tf.group(*(v.assign(self._feeds[name]) for name, v in self.variables.items()))
            self.session = tf.Session(graph=self.graph)
            self.session.run(tf.variables_initializer(list(self.variables.values())))

    # -- the graph ------------------------------------------------------------------------------------------
    def _var(self, name, shape):
        return tf.get_variable(name, shape, self.dtype, initializer=tf.zeros_initializer())

    def _conv(self, x, scope, out_channels, kernel, names=("weights", "biases"), relu=False):
        with tf.variable_scope(scope):
            weight = self._var(names[0], [kernel, kernel, int(x.shape[-1]), out_channels])
            y = tf.nn.conv2d(x, weight, [1, 1, 1, 1], "SAME") + self._var(names[1], [out_channels])
        return tf.nn.relu(y) if relu else y

    def _layer(self, x, scope, out_channels, kernel):  # tf.layers.conv2d names
        return self._conv(x, scope, out_channels, kernel, names=("kernel", "bias"))

    def _resize(self, image, size):
        """TF1's ``resize_bilinear`` (no corners, no half-pixel centres). Its kernel always returns float32, so a
        float64 graph spells the same sampling out (float32 grid, float64 lerp), see :func:`legacy_resize`."""
        if self.dtype == tf.float32:
            return tf.image.resize_bilinear(image, size)
        return legacy_resize(image, size)

    def _ain(self, noise_map, x, channels, scope):
        down = self._resize(noise_map, tf.shape(x)[1:3])
        with tf.variable_scope(scope):
            mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
            normalised = (x - mean) / tf.sqrt(variance + 1e-5)
            hidden = tf.nn.relu(self._layer(down, "conv1", 64, 5))
            gamma = self._layer(hidden, "conv_gamma", channels, 3)
            beta = self._layer(hidden, "conv_beta", channels, 3)
        return normalised * (1 + gamma) + beta

    def _ain_resblock(self, noise_map, x_in, channels, scope):
        with tf.variable_scope(scope):
            x = leaky_relu(self._ain(noise_map, x_in, channels, "AIN_1"))
            x = self._layer(x, "conv1", channels, 3)
            x = leaky_relu(self._ain(noise_map, x, channels, "AIN_2"))
            x = self._layer(x, "conv2", channels, 3)
        return x + x_in

    def _up_and_add(self, x, skip, channels, scope):
        with tf.variable_scope(scope):
            hidden = tf.nn.relu(self._conv(skip, "Conv", channels, 3))
            skip = skip + self._conv(hidden, "Conv_1", channels, 3)
        filt = self._var(f"{scope}_1", [2, 2, channels, int(x.shape[-1])])
        return tf.nn.conv2d_transpose(x, filt, tf.shape(skip), [1, 2, 2, 1], padding="SAME") + skip

    def _estimator(self, image):
        with tf.variable_scope("fcn_avg"):
            x = self._conv(image, "conv1", 32, 3, relu=True)
            x = self._conv(x, "conv2", 32, 3, relu=True)
            x = tf.nn.avg_pool2d(x, 4, 4, "SAME")
            x = self._conv(x, "conv3", 32, 3, relu=True)
            x = self._conv(x, "conv4", 32, 3, relu=True)
            x = tf.nn.avg_pool2d(x, 2, 2, "SAME")
            coarse = self._conv(x, "conv5", 3, 3, relu=True)
            upsampled = self._resize(coarse, tf.shape(image)[1:3])
            y = self._conv(upsampled, "conv6", 3, 3, relu=True)
            y = self._conv(y, "conv7", 3, 3, relu=True)
        return 0.8 * upsampled + 0.2 * y

    def _aindnet(self, image):
        noise_map = self._estimator(image)
        with tf.variable_scope("AINDNet"):
            x = image
            skips = {}
            for level in (1, 2, 3):
                if level > 1:
                    x = tf.nn.avg_pool2d(x, 2, 2, "SAME")
                x = self._conv(x, f"conv{level}_1", LEVEL_CHANNELS[level], 3, relu=True)
                for block in range(LEVEL_BLOCKS[level]):
                    x = self._ain_resblock(noise_map, x, LEVEL_CHANNELS[level], f"AINRes{level}_{block + 1}")
                skips[level] = x
            for level, skip in ((4, skips[2]), (5, skips[1])):
                x = self._up_and_add(x, skip, LEVEL_CHANNELS[level], f"deconv{level}")
                for block in range(LEVEL_BLOCKS[level]):
                    x = self._ain_resblock(noise_map, x, LEVEL_CHANNELS[level], f"AINRes{level}_{block + 1}")
            out = self._conv(x, "conv6", 3, 1)
        return noise_map, out + image

    # -- values, running, saving ------------------------------------------------------------------------------
    def randomize(self, seed: int = 0, std: float = 0.05) -> dict[str, np.ndarray]:
        """Sets every variable to N(0, std^2) draws (AIN's gamma/beta far from 0: every path active)."""
        rng = np.random.default_rng(seed)
        values = {
            name: (rng.standard_normal(v.shape.as_list()) * std).astype(self.dtype.as_numpy_dtype)
            for name, v in sorted(self.variables.items())
        }
        self.assign(values)
        return values

    def assign(self, values: dict[str, np.ndarray]) -> None:
        """Sets every variable (``values`` must name them all)."""
        self.session.run(
            self._assign,
            {self._feeds[name]: np.asarray(value, dtype=self.dtype.as_numpy_dtype) for name, value in values.items()},
        )

    def values(self) -> dict[str, np.ndarray]:
        return {name: self.session.run(v) for name, v in self.variables.items()}

    def run(self, images_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H, W, 3)`` -> ``(noise map, denoised)``, both NHWC."""
        return tuple(
            self.session.run([self.noise_map, self.output], {self.input: images_nhwc.astype(self.dtype.as_numpy_dtype)})
        )

    def save(self, prefix: str, global_step: int | None = None) -> str:
        """A TF1 checkpoint of every variable (``tf.train.Saver``); returns its prefix."""
        with self.graph.as_default():
            return tf.train.Saver().save(self.session, prefix, global_step=global_step)


def legacy_resize(image, size):
    """TF1's legacy bilinear sampling in TF ops, for float64 graphs: ``src = dst * (in / out)`` in float32,
    neighbours ``floor(src)`` and ``min(ceil(src), in - 1)``, columns then rows, ``a + (b - a) * t``."""

    def axis(size_in, size_out):
        scale = tf.cast(size_in, tf.float32) / tf.cast(size_out, tf.float32)
        source = tf.cast(tf.range(size_out), tf.float32) * scale
        lower = tf.floor(source)
        upper = tf.minimum(tf.cast(tf.math.ceil(source), tf.int32), size_in - 1)
        return tf.cast(lower, tf.int32), upper, tf.cast(source - lower, image.dtype)

    shape = tf.shape(image)
    y0, y1, ty = axis(shape[1], size[0])
    x0, x1, tx = axis(shape[2], size[1])
    left, right = tf.gather(image, x0, axis=2), tf.gather(image, x1, axis=2)
    columns = left + (right - left) * tx[None, None, :, None]
    top, bottom = tf.gather(columns, y0, axis=1), tf.gather(columns, y1, axis=1)
    return top + (bottom - top) * ty[None, :, None, None]


def write_checkpoint(prefix: str, arrays: dict[str, np.ndarray]) -> str:
    """A TF1 checkpoint holding exactly ``arrays`` (name -> value), written by ``tf.train.Saver``; its prefix."""
    graph = tf.Graph()
    with graph.as_default():
        arrays = {name: np.asarray(value) for name, value in arrays.items()}
        feeds = {name: tf.placeholder(value.dtype, value.shape) for name, value in arrays.items()}
        variables = [tf.Variable(feeds[name], name=name) for name in arrays]
        with tf.Session(graph=graph) as session:
            session.run(tf.variables_initializer(variables), {feeds[name]: arrays[name] for name in arrays})
            return tf.train.Saver(variables).save(session, prefix)
