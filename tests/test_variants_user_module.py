"""A variant written in a user's own module, outside the package, following docs/variants.md.

The module is written to a temporary folder and imported from there; it uses only public names
(``gmmlimit.variants``, ``gmmlimit.checks``). It then runs the whole contract: padded, out of
core, vmapped over its temperature, restarted, annealed, through the scikit-learn wrapper, and
sharded over forced host devices (one subprocess).
"""

import importlib
import sys

import pytest
from user_variant import forget_module, write_module
from variant_contract import CONTRACT, fitted_wrapper, run_sharded

CASES_SOURCE = """
# the contract's cases, as tests/variant_cases.py writes them
from variant_contract import VariantCase

_rng = np.random.default_rng(0)
_centres = 10.0 ** _rng.uniform(-1, 1, size=(3, 3))
X = _rng.exponential(_centres[_rng.integers(3, size=300)])
CASES = {
    "exponential": VariantCase(
        exponential, X, ExpParams(X[[0, 1, 2]] + 0.1, np.full(3, 1 / 3), 1.0)
    )
}
"""


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_variant")
    write_module(folder, CASES_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("my_variants"), str(folder)
    finally:
        sys.path.remove(str(folder))
        forget_module()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_user_variant_passes_the_contract(user_module, check):
    module, _ = user_module
    assert "gmmlimit" not in module.__file__
    check(module.CASES["exponential"])


def test_user_variant_sharded(user_module):
    _, folder = user_module
    assert "sharded ok: exponential" in run_sharded("my_variants", paths=(folder,))


def test_user_variant_scores_its_rows(user_module):
    # a tempered_variant written outside the package: score_samples are the rows' terms of its
    # objective, so score is their (weighted) mean
    import numpy as np

    case = user_module[0].CASES["exponential"]
    est = fitted_wrapper(case)  # check_sklearn_wrapper's fit
    terms = est.score_samples(case.X)
    weights = np.linspace(0.5, 2.0, len(terms))
    assert terms.shape == (case.X.shape[0],) and np.all(np.isfinite(terms))
    np.testing.assert_allclose(np.mean(terms), est.score(case.X), rtol=1e-12)
    np.testing.assert_allclose(
        np.average(terms, weights=weights), est.score(case.X, sample_weight=weights), rtol=1e-12
    )
