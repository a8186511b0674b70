"""A variant written in a user's own module, outside the package, following docs/variants.md.

The module is written to a temporary folder and imported from there; it uses only public names
(``gmmlimit.variants``, ``gmmlimit.checks``). It then runs the whole contract: padded, out of
core, vmapped over its temperature, restarted, annealed, through the scikit-learn wrapper, and
sharded over forced host devices (one subprocess).
"""

import importlib
import sys
import textwrap

import pytest
from variant_contract import CONTRACT, run_sharded

SOURCE = textwrap.dedent(
    '''
    """An exponential mixture (rate per feature); beta = inf: IS hard clustering of the means."""
    from typing import NamedTuple

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from gmmlimit.checks import (
        check_array, check_beta, check_k, check_mixing_weights, check_positive_data,
    )
    from gmmlimit.variants import MixtureStats, distinct_rows, tempered_variant, update_weights


    class ExpParams(NamedTuple):
        means: jax.Array
        weights: jax.Array
        beta: jax.Array


    def divergence(params, x):
        ratio = x @ (1.0 / params.means).T
        logs = jnp.sum(jnp.log(params.means), 1)[None, :] - jnp.sum(jnp.log(x), 1)[:, None]
        return jnp.maximum(ratio + logs - x.shape[1], 0.0)


    def moments(params, x, wr):
        return lax.dot_general(wr, x, (((0,), (0,)), ((), ())))


    def m_step(params, stats: MixtureStats):
        means = stats.moments / jnp.maximum(stats.counts, 1e-300)[:, None]
        ok = (stats.counts > 0)[:, None] & jnp.isfinite(means) & (means > 0)
        means = jnp.where(ok, means, params.means)
        return params._replace(means=means, weights=update_weights(params, stats))


    def validate(X, params):
        k = np.shape(params.means)[0]
        check_k(k, X.shape[0])
        return ExpParams(
            check_array(params.means, (k, X.shape[1]), X.dtype, "means", positive=True),
            check_mixing_weights(params.weights, k, X.dtype),
            check_beta(params.beta, X.dtype),
        )


    def init(key, X, k):
        means = 0.5 * distinct_rows(key, X, k) + 0.5 * jnp.mean(X, 0)
        return ExpParams(means, jnp.full((k,), 1.0 / k, X.dtype), jnp.ones((), X.dtype))


    exponential = tempered_variant(
        "exponential", divergence=divergence, moments=moments, m_step=m_step,
        means=lambda p: p.means, validate=validate, init=init, check_data=check_positive_data,
    )

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
    '''
)


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_variant")
    (folder / "my_variants.py").write_text(SOURCE)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("my_variants"), str(folder)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("my_variants", None)


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_user_variant_passes_the_contract(user_module, check):
    module, _ = user_module
    assert "gmmlimit" not in module.__file__
    check(module.CASES["exponential"])


def test_user_variant_sharded(user_module):
    _, folder = user_module
    assert "sharded ok: exponential" in run_sharded("my_variants", paths=(folder,))
