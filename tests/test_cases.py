"""The case registry (:mod:`cycleisp_fast.cases`) that the benchmarks, the selftest and the op tests share: every
family's cases are registered once, and every size a case lists is one it takes."""

from __future__ import annotations

import pytest

from cycleisp_fast import cases


def test_every_family_registers_its_cases_once():
    registered = cases.all_cases()
    by_family = [case.name for family in cases.OP_MODULES for case in cases.family_cases(family)]
    assert list(registered) == by_family


@pytest.mark.parametrize("case", list(cases.all_cases().values()), ids=lambda case: case.name)
def test_every_listed_size_fits_its_case(case):
    sizes = case.default_sizes + case.quick_sizes + case.selftest_sizes + case.test_sizes
    assert [size for size in sizes if not case.fits(size)] == []
    assert case.variants, "a case needs at least one variant (the benchmarks time the first)"


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="no case module 'foo'"):
        cases.family_cases("foo")
