"""Export of the networks to ONNX and to ``torch.export`` programs (``.pt2``), and inference of exported files.

Every network of the two papers exports with a dynamic batch, height and width (:data:`NETWORKS`: the names of
``cycleisp-fast denoise`` and the three ISP networks). What runs in the exported graph:

- **ONNX** (``.onnx``): the reference computation (the official one, in standard ONNX operators), so that the
  file runs anywhere onnxruntime does, without this package. The fused ops are custom operators that ONNX
  runtimes do not know, so they are not exported.
- **torch.export** (``.pt2``): the reference computation too by default (a program that needs only torch), or
  with ``fused=True`` the fused ops as they are (``cycleisp_fast::*`` operators: faster, and ``import
  cycleisp_fast`` must come before ``torch.export.load``).

While a graph is traced the TF-compatibility functions take their size-generic paths
(:func:`~cycleisp_fast.nn.tf_compat.shape_generic`), so one AINDNet graph holds at every size. Each export is
checked before it is written: the exported graph runs at a second size and must give the model's output within
float32 rounding (``EXPORT_TOLERANCE``); the file is written atomically, with a metadata entry
(:data:`METADATA_KEY`: the network's name and input names) that :func:`load_exported` reads back.

Example:
    >>> from cycleisp_fast.models import DenoiseNet
    >>> model = DenoiseNet(raw=False, n_feats=8, num_rrg=1, num_dab=1, reduction=4)
    >>> export_model(model, "cycleisp-srgb", "denoiser.onnx")  # doctest: +SKIP
    ExportResult(path=PosixPath('denoiser.onnx'), network='cycleisp-srgb', format='onnx', max_error=2.4e-07)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from cycleisp_fast import backend as _backend
from cycleisp_fast.checks import check_choice, check_tensor
from cycleisp_fast.data.files import atomic_path
from cycleisp_fast.models import CCM, Raw2Rgb, Rgb2Raw, load_official
from cycleisp_fast.pipelines.denoisers import DENOISERS, load_denoiser

FORMATS = {".onnx": "onnx", ".pt2": "pt2"}
"""File suffix -> export format."""
METADATA_KEY = "cycleisp_fast"
"""The metadata entry of an exported file (ONNX ``metadata_props``, a ``.pt2`` extra file ``cycleisp_fast.json``)."""
EXPORT_TOLERANCE = 1e-4
"""The largest difference between an exported graph's output and the model's, at a size other than the traced one
(outputs are images in [0, 1] or features in (0, 1); float32 rounding gives ~1e-6)."""
ONNX_OPSET = 18


@dataclass(frozen=True)
class Network:
    """An exportable network: its inputs (name, channels), its output's name, the domain it works in, the
    multiple its height and width must be of, and the size it is traced at (odd at every scale, so that no
    size-specific shortcut is taken)."""

    inputs: tuple[tuple[str, int], ...]
    output: str
    domain: str
    multiple: int
    traced_size: tuple[int, int]


NETWORKS = {
    "cycleisp-srgb": Network((("noisy", 3),), "denoised", "srgb", 1, (37, 45)),
    "cycleisp-raw": Network((("noisy", 4), ("variance", 4)), "denoised", "raw", 1, (37, 45)),
    "aindnet": Network((("noisy", 3),), "denoised", "srgb", 1, (37, 45)),
    "rgb2raw": Network((("srgb", 3),), "raw", "isp", 2, (38, 46)),
    "ccm": Network((("srgb", 3),), "ccm_features", "isp", 2, (38, 46)),
    "raw2rgb": Network((("raw", 4), ("ccm_features", 96)), "srgb", "isp", 1, (19, 23)),
}
"""Name -> :class:`Network`: the denoisers of ``cycleisp-fast denoise`` and CycleISP's three ISP networks."""
ISP_NETWORKS = {"rgb2raw": Rgb2Raw, "ccm": CCM, "raw2rgb": Raw2Rgb}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote: the file, the network, the format and the check's largest difference."""

    path: Path
    network: str
    format: str
    max_error: float


def export_format(path: str | os.PathLike) -> str:
    """The format of an output file from its suffix (``.onnx`` or ``.pt2``); ``ValueError`` for another."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"the output must end in {' or '.join(FORMATS)} (the format), got {os.fspath(path)!r}")
    return FORMATS[suffix]


def load_network(name: str, weights: str | os.PathLike | None, *, allow_random: bool = False) -> nn.Module:
    """The network ``name`` of :data:`NETWORKS` with ``weights`` (what ``denoise`` takes for a denoiser; an official
    or trained checkpoint of that network for the ISP ones), on the CPU, in eval mode."""
    check_choice(name, "name", tuple(NETWORKS))
    if name in DENOISERS:
        return load_denoiser(name, weights, allow_random=allow_random)
    model = ISP_NETWORKS[name]()
    if weights is None:
        if not allow_random:
            raise ValueError(f"network {name!r} needs weights (its official checkpoint, e.g. {name}_joint.pth)")
        return model.eval()
    try:
        return load_official(model, weights).eval()
    except (ValueError, TypeError) as error:
        raise ValueError(f"weights {os.fspath(weights)} do not fit network {name!r}: {error}") from error


def _inputs(network: Network, batch: int, size: tuple[int, int], seed: int) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    tensors = [torch.rand(batch, channels, *size, generator=generator) for _, channels in network.inputs]
    if network.inputs[-1][0] == "variance":  # a plausible noise level: shot * x + read
        tensors[-1] = 0.01 * tensors[0] + 1e-4
    return tuple(tensors)


def _check_size(network: Network) -> tuple[int, int]:
    """The size the export is checked at: smaller than the traced one, of the other parity at the first scales,
    and of the network's multiple."""
    multiple = network.multiple
    return tuple((extent - 5 * multiple) // multiple * multiple for extent in network.traced_size)


def _export_program(model: nn.Module, network: Network, fused: bool) -> torch.export.ExportedProgram:
    inputs = _inputs(network, 2, network.traced_size, seed=0)
    dims = {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    backend = _backend.get_backend() if fused else "reference"
    with _backend.use_backend(backend), torch.no_grad():
        return torch.export.export(model, inputs, dynamic_shapes=tuple(dims for _ in inputs))


def _to_onnx(program: torch.export.ExportedProgram, network: Network, metadata: str, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (the exporter's translation needs it)
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the onnx and onnxscript packages: pip install 'cycleisp_fast[export]'"
        ) from error
    onnx_program = torch.onnx.export(
        program,
        input_names=[name for name, _ in network.inputs],
        output_names=[network.output],
        opset_version=ONNX_OPSET,
        dynamo=True,
        verbose=False,
    )
    onnx_program.model.metadata_props[METADATA_KEY] = metadata
    onnx_program.save(os.fspath(path))


def export_model(model: nn.Module, network: str, output: str | os.PathLike, *, fused: bool = False) -> ExportResult:
    """Exports ``model`` (the network ``network`` of :data:`NETWORKS`, any size of it) to ``output``.

    Args:
        model: the network with its weights (moved to the CPU, eval mode).
        network: its name in :data:`NETWORKS` (sets the inputs, and is stored in the file).
        output: ``.onnx`` or ``.pt2`` (the format).
        fused: ``.pt2`` only: keep the fused ops (``cycleisp_fast::*`` operators) instead of the reference.

    Returns:
        An :class:`ExportResult`; the file is written only after the exported graph matched the model at a
        second size (else ``RuntimeError``).
    """
    entry = NETWORKS[check_choice(network, "network", tuple(NETWORKS))]
    output = Path(output)
    kind = export_format(output)
    if fused and kind != "pt2":
        raise ValueError("fused=True keeps this package's custom operators, which ONNX cannot hold: use a .pt2 output")
    model = model.cpu().eval()
    program = _export_program(model, entry, fused)
    metadata = json.dumps({"network": network, "inputs": [name for name, _ in entry.inputs], "fused": fused})
    check_inputs = _inputs(entry, 1, _check_size(entry), seed=1)
    with torch.no_grad(), _backend.use_backend("reference"):
        expected = model(*check_inputs)
    with atomic_path(output) as temporary:  # removed again if the check fails
        if kind == "onnx":
            _to_onnx(program, entry, metadata, temporary)
        else:
            torch.export.save(program, temporary, extra_files={f"{METADATA_KEY}.json": metadata})
        with torch.no_grad():
            error = float((load_exported(temporary)(*check_inputs) - expected).abs().max())
        if not error <= EXPORT_TOLERANCE:
            raise RuntimeError(
                f"the exported {network} differs from the model by {error:.3g} at {tuple(check_inputs[0].shape)} "
                f"(more than {EXPORT_TOLERANCE}); nothing written"
            )
    return ExportResult(output, network, kind, error)


class ExportedNetwork(nn.Module):
    """An exported network (:func:`export_model`) as a module: ``forward(*inputs)`` as the network's, on the CPU.

    Attributes:
        network: the network's name in :data:`NETWORKS`.
        domain: ``"srgb"``, ``"raw"`` (the denoisers: what ``denoise`` feeds it) or ``"isp"``.
    """

    def __init__(self, path: Path, network: str, run):
        super().__init__()
        self.path, self.network = path, network
        self.__dict__["_run"] = run  # not a submodule: the program is not this module's to print or move
        self.domain = NETWORKS[network].domain

    def forward(self, *inputs: Tensor) -> Tensor:
        """The exported graph's output for ``inputs`` (the network's, e.g. ``noisy`` or ``(noisy, variance)``)."""
        entry = NETWORKS[self.network]
        inputs = tuple(value for value in inputs if value is not None)
        if len(inputs) != len(entry.inputs):
            raise ValueError(f"{self.network} takes {len(entry.inputs)} input(s), got {len(inputs)}")
        for value, (name, channels) in zip(inputs, entry.inputs):
            check_tensor(value, name, shape_doc=f"(N, {channels}, H, W)", channels=channels)
            if value.shape[-2] % entry.multiple or value.shape[-1] % entry.multiple:
                raise ValueError(f"{name} needs H and W multiples of {entry.multiple}, got {tuple(value.shape)}")
        device = inputs[0].device
        try:
            output = self._run(*(value.detach().cpu().float().contiguous() for value in inputs))
        except Exception as error:  # a guard of the program or onnxruntime refusing the shapes
            shapes = ", ".join(str(tuple(value.shape)) for value in inputs)
            reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
            message = f"the exported {self.network} ({self.path}) cannot run inputs of shape {shapes}: {reason}"
            raise ValueError(message) from error
        return output.to(device)

    def extra_repr(self) -> str:
        """The file and the network shown by ``repr``."""
        return f"{self.network}, {self.path}"


def _read_metadata(text: str, path: Path) -> str:
    try:
        network = json.loads(text)["network"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} has no readable {METADATA_KEY} metadata: {error}") from error
    if network not in NETWORKS:
        raise ValueError(f"{path} holds network {network!r}, which this version does not know")
    return network


def load_exported(path: str | os.PathLike) -> ExportedNetwork:
    """An exported ``.onnx`` (run by onnxruntime's CPU provider) or ``.pt2`` file as an :class:`ExportedNetwork`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a file written by :func:`export_model` (the message says why).
        ImportError: an ONNX file and no onnxruntime.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    if export_format(path) == "pt2":
        extra = {f"{METADATA_KEY}.json": ""}
        try:
            program = torch.export.load(path, extra_files=extra)
        except Exception as error:  # truncated, or not a torch.export archive
            raise ValueError(f"{path} could not be read as a torch.export program: {error}") from error
        network = _read_metadata(extra[f"{METADATA_KEY}.json"], path)
        module = program.module()
        return ExportedNetwork(path, network, module)
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("running an ONNX file needs onnxruntime: pip install 'cycleisp_fast[export]'") from error
    try:
        session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for broken files
        raise ValueError(f"{path} could not be read as an ONNX model: {error}") from error
    network = _read_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, ""), path)
    names = [node.name for node in session.get_inputs()]

    def run(*inputs: Tensor) -> Tensor:
        (result,) = session.run(None, {name: value.numpy() for name, value in zip(names, inputs)})
        return torch.from_numpy(result)

    return ExportedNetwork(path, network, run)
