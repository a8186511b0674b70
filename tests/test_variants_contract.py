"""Every variant passes the template of tests/variant_contract.py (sharded: one subprocess)."""

import pytest
from variant_cases import CASES
from variant_contract import CONTRACT, run_sharded


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(CASES))
def test_variant_contract(name, check):
    check(CASES[name])


def test_every_variant_sharded_over_forced_host_devices():
    out = run_sharded("variant_cases")
    assert all(f"sharded ok: {name}" in out for name in CASES), out
