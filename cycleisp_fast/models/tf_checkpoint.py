"""The official AINDNet TensorFlow 1 checkpoint (``terryoo/AINDNet``, e.g. ``checkpoint/SIDD_transfer/``), read
into :class:`~cycleisp_fast.models.AINDNet` key for key.

The official graph's 256 variables map one to one onto our 256 state-dict tensors (names as the official
``code/model.py`` creates them, checked by running it under ``tf.compat.v1``):

===============================================  =========================================================
TF variable                                      ours
===============================================  =========================================================
``fcn_avg/conv{1..5}/weights|biases``            ``fcn_avg.features.{0,1,3,4,6}.0.weight|bias``
``fcn_avg/conv{6,7}/weights|biases``             ``fcn_avg.refine.{0,1}.0.weight|bias``
``AINDNet/conv{1,2,3}_1/weights|biases``         ``conv{1,2,3}_1.0.weight|bias``
``AINDNet/AINRes{L}_{i}/AIN_{1,2}/conv1|conv_gamma|conv_beta/kernel|bias``
                                                 ``level{L}.blocks.{i-1}.ain_{1,2}.conv1|conv_gamma|conv_beta.*``
``AINDNet/AINRes{L}_{i}/conv{1,2}/kernel|bias``  ``level{L}.blocks.{i-1}.conv{1,2}.weight|bias``
``AINDNet/deconv{4,5}/Conv{,_1}/weights|biases`` ``skip{4,5}.conv{1,2}.weight|bias``
``AINDNet/deconv{4,5}_1``                        ``up{4,5}.weight`` (the ``deconv_filter``; TF names it ``_1``
                                                 because the ResBlock's scope took the plain name)
``AINDNet/conv6/weights|biases``                 ``conv6.weight|bias``
===============================================  =========================================================

Layouts: conv kernels ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``; the transposed-conv filters ``(kh, kw,
out, in)`` -> ``(in, out, kh, kw)`` (both ``permute(3, 2, 0, 1)``, no flip). Optimiser state saved beside the
weights (``.../Adam``, ``.../Adam_1``, ``beta1_power``, ``global_step``, ...) is skipped; any other extra or
missing variable, or a wrong shape, is an error that lists them, and nothing is loaded.

Reading the TF format needs TensorFlow (``pip install cycleisp_fast[tf]``, i.e. ``tensorflow-cpu``); converting
once (``cycleisp-fast convert``) gives a PyTorch file that loads without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cycleisp_fast.data.files import describe_read_error
from cycleisp_fast.models.aindnet import AINDNet

TF_INSTALL_HINT = "pip install 'cycleisp_fast[tf]' (or: pip install tensorflow-cpu)"
_OPTIMIZER_STATE = re.compile(
    r"(.*/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|Adagrad)"
    r"|(beta1_power|beta2_power|global_step)(_\d+)?)"
)
_LEVEL_BLOCKS = {1: 2, 2: 2, 3: 5, 4: 3, 5: 2}
"""AIN-ResBlocks per U-Net level (``AINRes{L}_{i}``)."""
_LISTED = 8


def _conv(tf_scope: str, ours: str, kernel: str = "weights", bias: str = "biases") -> dict[str, str]:
    return {f"{ours}.weight": f"{tf_scope}/{kernel}", f"{ours}.bias": f"{tf_scope}/{bias}"}


def aindnet_variable_names() -> dict[str, str]:
    """Our state-dict key -> the official TF variable name, for all 256 tensors of :class:`AINDNet`."""
    names: dict[str, str] = {}
    for number, index in zip(range(1, 6), (0, 1, 3, 4, 6)):
        names |= _conv(f"fcn_avg/conv{number}", f"fcn_avg.features.{index}.0")
    for number, index in ((6, 0), (7, 1)):
        names |= _conv(f"fcn_avg/conv{number}", f"fcn_avg.refine.{index}.0")
    for level in (1, 2, 3):
        names |= _conv(f"AINDNet/conv{level}_1", f"conv{level}_1.0")
    for level, blocks in _LEVEL_BLOCKS.items():
        for block in range(blocks):
            scope, ours = f"AINDNet/AINRes{level}_{block + 1}", f"level{level}.blocks.{block}"
            for ain in ("ain_1", "ain_2"):
                for conv in ("conv1", "conv_gamma", "conv_beta"):
                    names |= _conv(f"{scope}/AIN_{ain[-1]}/{conv}", f"{ours}.{ain}.{conv}", "kernel", "bias")
            for conv in ("conv1", "conv2"):
                names |= _conv(f"{scope}/{conv}", f"{ours}.{conv}", "kernel", "bias")
    for up in (4, 5):
        names |= _conv(f"AINDNet/deconv{up}/Conv", f"skip{up}.conv1")
        names |= _conv(f"AINDNet/deconv{up}/Conv_1", f"skip{up}.conv2")
        names[f"up{up}.weight"] = f"AINDNet/deconv{up}_1"
    names |= _conv("AINDNet/conv6", "conv6")
    return names


def _listing(what: str, items: list[str]) -> str:
    items = sorted(items)
    shown = ", ".join(items[:_LISTED]) + (f", ... ({len(items)} in all)" if len(items) > _LISTED else "")
    return f"{what}: {shown}"


def aindnet_variable_shapes() -> dict[str, tuple[int, ...]]:
    """The official TF variable name -> its shape in the TF layout (kernels ``(kh, kw, in, out)``, transposed-conv
    filters ``(kh, kw, out, in)``), for the default :class:`AINDNet`."""
    with torch.device("meta"):
        state = AINDNet().state_dict()
    return {
        tf_name: tuple(state[key].permute(2, 3, 1, 0).shape) if state[key].dim() == 4 else tuple(state[key].shape)
        for key, tf_name in aindnet_variable_names().items()
    }


def _check_variables(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str], source: str) -> None:
    """Raises ValueError listing missing, unexpected, mis-shaped and non-float32 variables (optimiser state is
    skipped)."""
    expected = aindnet_variable_shapes()
    missing = [name for name in expected if name not in shapes]
    unexpected = [name for name in shapes if name not in expected and not _OPTIMIZER_STATE.fullmatch(name)]
    misshaped = [
        f"{name} {tuple(shapes[name])} (expected {shape})"
        for name, shape in expected.items()
        if name in shapes and tuple(shapes[name]) != shape
    ]
    wrong_dtype = [f"{name} is {dtypes[name]}" for name in expected if name in dtypes and dtypes[name] != "float32"]
    problems = [
        _listing(what, items)
        for what, items in (
            ("missing variables", missing),
            ("unexpected variables", unexpected),
            ("wrong shapes", misshaped),
            ("not float32", wrong_dtype),
        )
        if items
    ]
    if problems:
        raise ValueError(f"{source} is not an official AINDNet checkpoint: " + "; ".join(problems))


def _to_torch(array: np.ndarray) -> Tensor:
    array = np.asarray(array)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(3, 2, 0, 1) if array.ndim == 4 else array))


def convert_aindnet_variables(variables: Mapping[str, np.ndarray], *, source: str = "checkpoint") -> dict[str, Tensor]:
    """The official TF variables (name -> array, as a checkpoint holds them) -> :class:`AINDNet`'s state dict.

    Raises:
        ValueError: missing, unexpected, mis-shaped or non-float32 variables (listed, ``source`` named);
            optimiser state is skipped.
    """
    arrays = {name: np.asarray(value) for name, value in variables.items()}
    _check_variables({n: a.shape for n, a in arrays.items()}, {n: str(a.dtype) for n, a in arrays.items()}, source)
    return {key: _to_torch(arrays[tf_name]) for key, tf_name in aindnet_variable_names().items()}


def tf_checkpoint_prefix(path: str | os.PathLike) -> str | None:
    """The TF checkpoint prefix ``path`` names, or None when it is no TF checkpoint: a folder with TF's
    ``checkpoint`` file (its newest entry), or a prefix ``.../model.ckpt-NNNN`` beside its ``.index`` file (the
    ``.index`` or a ``.data-*`` file itself also works)."""
    path = Path(path)
    if path.is_dir():
        return str(path) if (path / "checkpoint").is_file() else None
    stripped = re.sub(r"\.(index|data-\d+-of-\d+|meta)$", "", str(path))
    return stripped if Path(stripped + ".index").is_file() else None


def _import_tensorflow():
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(f"reading a TensorFlow checkpoint needs TensorFlow: {TF_INSTALL_HINT}") from error
    return tf


def _newest_in_folder(tf, folder: Path) -> str:
    """The newest checkpoint that ``folder/checkpoint`` names. TF writes absolute paths there by default; when
    the folder was moved or copied, the file of that name inside ``folder`` is the one meant."""
    state_file = folder / "checkpoint"
    try:
        state = tf.train.get_checkpoint_state(str(folder))
    except Exception as error:  # a garbled text proto
        raise ValueError(f"{state_file} could not be read as TensorFlow's checkpoint state: {error}") from error
    if state is None or not state.model_checkpoint_path:
        raise ValueError(f"{state_file} names no checkpoint (no model_checkpoint_path)")
    named = Path(state.model_checkpoint_path)
    for candidate in (folder / named.name, named) if named.is_absolute() else (folder / named,):
        if Path(f"{candidate}.index").is_file():
            return str(candidate)
    raise ValueError(
        f"{state_file} names checkpoint {state.model_checkpoint_path!r}, whose .index file is not in {folder}"
    )


def _broken(prefix: str, error: Exception) -> ValueError:
    return ValueError(
        f"TensorFlow checkpoint {prefix} (its .index / .data-* files) could not be read: {describe_read_error(error)}"
    )


def read_aindnet_tf_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """The official AINDNet TF checkpoint at ``path`` as :class:`AINDNet`'s state dict (see the module's
    docstring), read with TensorFlow's ``tf.train.load_checkpoint``: ``path`` is a folder holding TF's
    ``checkpoint`` file (its newest entry is read), or a prefix ``.../model.ckpt-NNNN`` (or its ``.index``
    file). The variables' names, shapes and dtypes are checked from the index before any data is read.

    Raises:
        FileNotFoundError: ``path`` does not exist, or a folder has no ``checkpoint`` file.
        ValueError: no TF checkpoint, unreadable (truncated or corrupt ``.index`` / ``.data`` files), or not
            AINDNet's variables; the message names the file and what does not fit.
        ImportError: TensorFlow is not installed (the message says how to install it).
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "checkpoint").is_file():
            raise FileNotFoundError(
                f"{path} holds no TensorFlow 'checkpoint' file (expected a checkpoint folder, or "
                f"a prefix such as {path}/model.ckpt-1000 beside its .index and .data files)"
            )
        tf = _import_tensorflow()
        prefix = _newest_in_folder(tf, path)
    else:
        prefix = tf_checkpoint_prefix(path)
        if prefix is None:
            if not path.exists():
                raise FileNotFoundError(f"checkpoint not found: {path}")
            raise ValueError(
                f"{path} is not a TensorFlow checkpoint (expected a folder with a 'checkpoint' file or "
                f"a prefix beside its .index file)"
            )
        tf = _import_tensorflow()
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = {name: dtype.name for name, dtype in reader.get_variable_to_dtype_map().items()}
    except Exception as error:  # DataLossError, NotFoundError ... from a broken index
        raise _broken(prefix, error) from error
    _check_variables(shapes, dtypes, f"TensorFlow checkpoint {prefix}")
    state = {}
    for key, tf_name in aindnet_variable_names().items():
        try:
            state[key] = _to_torch(reader.get_tensor(tf_name))
        except Exception as error:  # a truncated or corrupt .data file
            raise _broken(prefix, error) from error
    return state
