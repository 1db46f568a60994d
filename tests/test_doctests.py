"""The ``Example:`` sections of the package's docstrings run, and show what they return (doctest over every module
of the package the tests import: the installed one in CI)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import cycleisp_fast


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(cycleisp_fast.__path__, "cycleisp_fast.")
                  if not info.name.endswith("__main__"))


def _examples(name: str) -> list[doctest.DocTest]:
    return [test for test in doctest.DocTestFinder().find(importlib.import_module(name)) if test.examples]


def test_the_public_api_has_examples():
    documented = [name for name in _modules() if _examples(name)]
    for room in ("cycleisp_fast.ops.registration", "cycleisp_fast.noise", "cycleisp_fast.data.crops"):
        assert room in documented, f"{room} lost its Example: section"


@pytest.mark.parametrize("name", [name for name in _modules() if _examples(name)])
def test_examples_run(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"
