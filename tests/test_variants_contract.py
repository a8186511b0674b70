"""Every tempered variant passes the template of tests/variant_contract.py."""

import pytest
from variant_cases import CASES
from variant_contract import CONTRACT


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(CASES))
def test_variant_contract(name, check):
    check(CASES[name])
