"""Test set-up: Triton runs in its CPU interpreter unless the caller chose otherwise. This must happen
before triton is first imported, so it sits at the top of the first file pytest loads."""

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from cycleisp_fast import _extension  # noqa: E402
from cycleisp_fast import backend as backend_mod  # noqa: E402

# The Triton kernels' own tests import triton at the top; where it is not installed (the second torch of
# scripts/test_torch_range.sh) there is nothing of theirs to run.
collect_ignore_glob = [] if backend_mod.triton_importable() else ["ops/*_triton_kernel.py"]


def pytest_sessionstart(session):
    """With CYCLEISP_FAST_EXPECT_NATIVE=1 (scripts/test_torch_range.sh), a missing compiled extension stops the run
    instead of skipping every native test."""
    if os.environ.get("CYCLEISP_FAST_EXPECT_NATIVE") == "1" and not _extension.LOADED:
        raise pytest.UsageError(
            f"CYCLEISP_FAST_EXPECT_NATIVE=1 but cycleisp_fast._C did not load: {_extension.LOAD_ERROR}"
        )


def fused_backends(op_name: str, device_type: str = "cpu") -> list[str]:
    """The fused backends (native, triton) that can run ``cycleisp_fast::<op_name>`` on ``device_type`` here."""
    names = []
    for name in ("native", "triton"):
        try:
            if backend_mod.resolve(op_name, device_type, name) == name:
                names.append(name)
        except RuntimeError:
            pass
    return names


def run_with_grads(fn, inputs, grad_out=None):
    """``([fn(*inputs), grads of every input], grad_out)`` for fresh leaf copies of the inputs; grad_out is
    drawn (standard normal, in the output's dtype) when None."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    if grad_out is None:
        grad_out = torch.randn(out.shape, dtype=torch.float64).to(out.dtype)
    return [out, *torch.autograd.grad(out, leaves, grad_out)], grad_out


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Runs the test with one intra-op thread (tests that start worker processes, or time-sensitive ones)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_python(code: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python -c code args`` in a fresh interpreter, from an empty folder: so that it imports the
    installed package, not the source tree of the working directory (which has no _C, no triton_kernels)."""
    with tempfile.TemporaryDirectory() as folder:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            cwd=folder,
            env=os.environ if env is None else env,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three smooth random 48x40 sRGB images (smooth, so that noise is what a denoiser can remove): the training
    tests' data."""
    from cycleisp_fast.data.images import write_image

    folder = tmp_path_factory.mktemp("images")
    generator = torch.Generator().manual_seed(7)
    for index in range(3):
        coarse = torch.rand(1, 3, 6, 5, generator=generator)
        image = torch.nn.functional.interpolate(coarse, size=(48, 40), mode="bilinear", align_corners=False)[0]
        write_image(folder / f"image{index}.png", image)
    return folder
