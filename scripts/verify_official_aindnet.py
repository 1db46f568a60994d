"""Runs the official AINDNet TF code (``terryoo/AINDNet`` ``code/model.py``, unchanged) beside our AINDNet and the
tests' TF graph, with the same random weights, and prints how far apart they are at several sizes.

The official file is read from the path you give (a clone of https://github.com/terryoo/AINDNet); nothing of it
is stored in this repository. It is TF 1.8 code: it runs under ``tf.compat.v1`` with ``tf.contrib`` supplied by
tf-slim and ``tf.layers`` by tf-keras (set ``TF_USE_LEGACY_KERAS=1``)::

    pip install tensorflow-cpu tf-slim tf-keras
    TF_USE_LEGACY_KERAS=1 python scripts/verify_official_aindnet.py /path/to/AINDNet/code/model.py

It also saves the official graph's checkpoint with ``tf.train.Saver`` and loads it with
``cycleisp_fast.models.load_official`` (the checkpoint converter, on a checkpoint of the official graph itself).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
SIZES = [(64, 64), (60, 60), (61, 47), (17, 130), (33, 8), (1, 1), (1, 9), (7, 3)]


def load_official_module(path: Path):
    """Executes the official model.py with ``tensorflow`` = ``tf.compat.v1`` and ``tensorflow.contrib`` from
    tf-slim, then restores ``sys.modules``; returns (module, tf.compat.v1)."""
    import tensorflow as real_tf
    import tf_slim

    tf1 = real_tf.compat.v1
    tf1.disable_v2_behavior()
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.slim = tf_slim
    contrib.layers = types.SimpleNamespace(variance_scaling_initializer=tf_slim.variance_scaling_initializer)
    shim = types.ModuleType("tensorflow")
    shim.__dict__.update({name: getattr(tf1, name) for name in dir(tf1) if not name.startswith("__")})
    shim.contrib = contrib
    saved = {name: sys.modules.get(name) for name in ("tensorflow", "tensorflow.contrib", "tensorflow.contrib.slim")}
    sys.modules.update({"tensorflow": shim, "tensorflow.contrib": contrib, "tensorflow.contrib.slim": tf_slim})
    try:
        module = types.ModuleType("official_aindnet_model")
        exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
    return module, tf1


def main() -> int:
    """Builds the official graph with random weights, loads its checkpoint into ours, prints the differences table.

    Returns the exit code, 0; a ``model_py`` that is not a file ends with ``parser.error``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_py", type=Path, help="the official code/model.py")
    parser.add_argument("--std", type=float, default=0.05, help="std of the random weights (0.05)")
    args = parser.parse_args()
    if not args.model_py.is_file():
        parser.error(f"{args.model_py} is not a file (expected AINDNet/code/model.py)")
    repo = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(repo / "tests")]
    official, tf1 = load_official_module(args.model_py)
    import official_aindnet_tf
    import torch

    from cycleisp_fast.models import AINDNet, load_official

    graph = tf1.Graph()
    with graph.as_default():
        image = tf1.placeholder(tf1.float32, [None, None, None, 3])
        noise_map, output = official.AINDNet(image)
        session = tf1.Session(graph=graph)
        session.run(tf1.global_variables_initializer())
        rng = np.random.default_rng(0)
        variables = {v.op.name: v for v in tf1.global_variables()}
        values = {
            name: (rng.standard_normal(v.shape.as_list()) * args.std).astype(np.float32)
            for name, v in sorted(variables.items())
        }
        for name, value in values.items():
            variables[name].load(value, session)
        folder = tempfile.mkdtemp(prefix="aindnet_official_")
        tf1.train.Saver().save(session, os.path.join(folder, "model"))
    print(
        f"official graph: {len(variables)} variables, "
        f"{sum(int(np.prod(v.shape.as_list())) for v in variables.values()):,} parameters; saved to {folder}"
    )
    ours = load_official(AINDNet(backend="reference"), folder).eval()
    ours64 = AINDNet(backend="reference").double().eval()
    ours64.load_state_dict(ours.state_dict())
    tests_graph = official_aindnet_tf.OfficialAINDNetGraph()
    tests_graph.assign(values)
    print(
        "| H x W | max abs output | ours - official | tests' graph - official | official - ours (float64) "
        "| ours - ours (float64) | noise map: ours - official |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|")
    for size in SIZES:
        noisy = rng.random((1, *size, 3), dtype=np.float32)
        official_map, official_out = session.run([noise_map, output], {image: noisy})
        tests_out = tests_graph.run(noisy)[1]
        with torch.no_grad():
            tensor = torch.from_numpy(noisy).permute(0, 3, 1, 2)
            out, our_map, _ = ours(tensor, return_noise_map=True)
            out64 = ours64(tensor.double()).permute(0, 2, 3, 1).numpy()
        out, our_map = out.permute(0, 2, 3, 1).numpy(), our_map.permute(0, 2, 3, 1).numpy()
        print(
            f"| {size[0]} x {size[1]} | {np.abs(official_out).max():.3g} | {np.abs(out - official_out).max():.2g} "
            f"| {np.abs(tests_out - official_out).max():.2g} | {np.abs(official_out - out64).max():.2g} "
            f"| {np.abs(out - out64).max():.2g} | {np.abs(our_map - official_map).max():.2g} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
