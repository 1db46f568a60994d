"""Build of cycleisp_fast and its compiled extension cycleisp_fast._C.

The CPU kernels are always built. The CUDA kernels are built when a CUDA toolkit and a CUDA build of
torch are present (no GPU needed), and never when CYCLEISP_FAST_SKIP_CUDA=1. FORCE_CUDA=1 makes a
missing toolkit an error instead of a silent CPU-only build. TORCH_CUDA_ARCH_LIST picks the GPU
architectures; without it and without a visible GPU, the cuda_arch lines of csrc/build_flags.txt are used.
Every compiler flag lives in csrc/build_flags.txt, which CMakeLists.txt reads too.

The extension is built against the LibTorch stable ABI (csrc/ops/stable.h, TORCH_TARGET_VERSION in
csrc/build_flags.txt) and Python's limited API, so the one wheel (tagged abi3) loads in every torch from
MIN_TORCH on and every CPython from MIN_PYTHON on: install_requires asks for that range, never the torch it was
built with, and pip leaves a supported torch alone.
"""

import glob
import os
import sys

from setuptools import find_packages, setup

MIN_TORCH = "2.10"  # TORCH_TARGET_VERSION of csrc/build_flags.txt
MIN_PYTHON = (3, 10)  # requires-python of pyproject.toml
CUDA_MODULE = "cycleisp_fast._C_cuda"
LIMITED_API = [("Py_LIMITED_API", f"0x{MIN_PYTHON[0]:02X}{MIN_PYTHON[1]:02X}0000")]
BUILD_FLAGS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "build_flags.txt")


def build_flags(tool):
    """The flags of one tool ("cxx", "nvcc", "link", "cuda_arch") in csrc/build_flags.txt, in file order."""
    with open(BUILD_FLAGS_FILE) as lines:
        pairs = [line.split(None, 1) for line in lines if line.strip() and not line.startswith("#")]
    return [flag.strip() for name, flag in pairs if name == tool]


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


# torch guesses CUDA_HOME from nvcc's location, which is wrong where nvcc is a wrapper script: prefer
# the toolkit root when it exists and the user has not chosen one.
if "CUDA_HOME" not in os.environ and os.path.isdir("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402


def _want_cuda():
    if _flag("CYCLEISP_FAST_SKIP_CUDA"):
        return False
    have_toolkit = cpp_extension.CUDA_HOME is not None and torch.version.cuda is not None
    if _flag("FORCE_CUDA") and not have_toolkit:
        sys.exit(
            "FORCE_CUDA=1 but no CUDA build is possible: torch.version.cuda="
            f"{torch.version.cuda!r}, CUDA_HOME={cpp_extension.CUDA_HOME!r}. Install a CUDA build of torch "
            "and a CUDA toolkit, or set CUDA_HOME."
        )
    return have_toolkit


def _extensions():
    """The CPU module ``_C`` (every op's schema and CPU kernels) and, when CUDA is built, the CUDA module
    ``_C_cuda`` (the same host code and the CUDA kernels; linked to libtorch_cuda and cudart, so
    cycleisp_fast/_extension.py imports it only beside a CUDA build of torch)."""
    host = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/ops/*.cpp"))
    cxx_flags = build_flags("cxx")
    include_dirs = [os.path.abspath("csrc")]
    extensions = [
        cpp_extension.CppExtension(
            "cycleisp_fast._C",
            host + sorted(glob.glob("csrc/ops/cpu/*.cpp")),
            include_dirs=include_dirs,
            define_macros=LIMITED_API,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=build_flags("link"),
            py_limited_api=True,
        )
    ]
    if not _want_cuda():
        return extensions
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(build_flags("cuda_arch"))
    # Some headers that torch's CUDA headers include (cusparse.h, ...) ship only in the pip NVIDIA packages.
    for site in sys.path:
        pip_cuda = os.path.join(site, "nvidia", "cu13", "include")
        if os.path.isdir(pip_cuda):
            include_dirs = include_dirs + [pip_cuda]
            break
    extensions.append(
        cpp_extension.CUDAExtension(
            CUDA_MODULE,
            host + sorted(glob.glob("csrc/ops/cuda/*.cu")),
            include_dirs=include_dirs,
            define_macros=LIMITED_API + [("CYCLEISP_FAST_CUDA_MODULE", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": build_flags("nvcc")},
            extra_link_args=build_flags("link"),
            py_limited_api=True,
        )
    )
    return extensions


class _BuildExtension(cpp_extension.BuildExtension):
    """torch's BuildExtension, compiling the bitexact_cuda sources with the nvcc_bitexact flags too, and the CUDA
    module's objects in a folder of their own (it compiles the host sources again, with other macros)."""

    def build_extension(self, ext):
        if ext.name == CUDA_MODULE:
            build_temp = self.build_temp
            self.build_temp = os.path.join(build_temp, "cuda_module")
            try:
                return self._build_extension(ext)
            finally:
                self.build_temp = build_temp
        return self._build_extension(ext)

    def _build_extension(self, ext):
        exact = [source for source in ext.sources if source in build_flags("bitexact_cuda")]
        if exact:
            ext.sources = [source for source in ext.sources if source not in exact]
            args = dict(ext.extra_compile_args)
            args["nvcc"] = list(args["nvcc"]) + build_flags("nvcc_bitexact")
            macros = ext.define_macros + [(name,) for name in ext.undef_macros]
            ext.extra_objects = list(ext.extra_objects) + self.compiler.compile(
                exact,
                output_dir=self.build_temp,
                macros=macros,
                include_dirs=ext.include_dirs,
                debug=self.debug,
                extra_postargs=args,
                depends=ext.depends,
            )
        super().build_extension(ext)


setup(
    packages=find_packages(include=["cycleisp_fast", "cycleisp_fast.*"]) + ["cycleisp_fast.triton_kernels"],
    package_dir={"cycleisp_fast.triton_kernels": "triton_kernels"},
    package_data={"cycleisp_fast": ["configs/*.toml", "noise/profiles/*.json", "py.typed"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": _BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": f"cp{MIN_PYTHON[0]}{MIN_PYTHON[1]}"}},
    # The stable ABI: any torch from MIN_TORCH on (a newer one at build time is fine; the headers target MIN_TORCH).
    install_requires=[
        f"torch>={MIN_TORCH}",
        "numpy",
        "pillow",
        "tifffile",
        "pypng",
        "rawpy",
        "h5py",
        "scipy",
        "scikit-image",
        "tqdm",
        "tomli; python_version < '3.11'",
    ],
)
