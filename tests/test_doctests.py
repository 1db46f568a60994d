"""The ``Example:`` sections of the package's docstrings run, and show what they return (doctest over every module
of the package the tests import: the installed one in CI)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import cycleisp_fast
from cycleisp_fast import models, nn, noise, ops


def _modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(cycleisp_fast.__path__, "cycleisp_fast.")
        if not info.name.endswith("__main__")
    )


def _examples(name: str) -> list[doctest.DocTest]:
    return [test for test in doctest.DocTestFinder().find(importlib.import_module(name)) if test.examples]


def test_the_public_api_has_examples():
    documented = [name for name in _modules() if _examples(name)]
    for room in ("cycleisp_fast.ops.registration", "cycleisp_fast.noise", "cycleisp_fast.data.crops"):
        assert room in documented, f"{room} lost its Example: section"


def _public(module) -> list[tuple[str, object]]:
    return [(f"{module.__name__}.{name}", getattr(module, name)) for name in module.__all__]


def _needs_shape(name: str, value: object) -> bool:
    """Ops, modules and losses take tensors of set shapes; factories, loaders and counters do not."""
    if name.startswith(("cycleisp_fast.ops.", "cycleisp_fast.nn.")):
        return name != "cycleisp_fast.nn.default_conv"
    return (isinstance(value, type) and issubclass(value, torch.nn.Module)) or name.endswith("_loss")


NOISE_API = ["cbdnet_log_uniform", "cbdnet_uniform", "cycleisp_dnd", "cycleisp_sidd", "unprocessing", "NoiseModel"]
NOISE_API += ["sample_noise_levels"]
PUBLIC = (
    _public(ops) + _public(nn) + _public(models) + [(f"{noise.__name__}.{n}", getattr(noise, n)) for n in NOISE_API]
)


@pytest.mark.parametrize("name, value", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_api_docstrings_have_examples_and_shapes(name, value):
    doc = value.__doc__ or ""
    assert "\n    Example:\n" in doc, f"{name}'s docstring has no Example: section"
    if _needs_shape(name, value):
        assert "\n    Shape:\n" in doc, f"{name}'s docstring has no Shape: section"


@pytest.mark.parametrize("name", [name for name in _modules() if _examples(name)])
def test_examples_run(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"
