"""The test template every tempered mixture variant inherits.

A new variant's test file builds one :class:`VariantCase` (data, starting parameters, a few
temperatures) and runs every check with::

    from variant_contract import CONTRACT, VariantCase

    CASE = VariantCase(variant=my_variant, X=X, params=MyParams(...))

    @pytest.mark.parametrize("check", CONTRACT)
    def test_my_variant_contract(check):
        check(CASE)

The checks: shapes and dtype kept (float64 run, float32 traced); the soft objective (free
energy) never decreases and the hard one (distortion) never increases; the hard limit is reached
(beta = inf converges with one-hot responsibilities, and a fit at a very large beta ends where
the hard fit ends); the bound |r - onehot| <= (K - 1) exp(-beta gap) at every point; and no
recompilation across the temperature. Parameters must be a NamedTuple with a ``beta`` field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gmmlimit as gl
from gmmlimit._driver import fit_compiled
from gmmlimit._variant import Variant
from gmmlimit.variants import limits

__all__ = ["CONTRACT", "VariantCase"]


@dataclass(frozen=True)
class VariantCase:
    """One variant on one data set.

    Attributes:
        variant: the variant under test.
        X: (N, D) float64 data.
        params: starting parameters (their beta is replaced by each temperature).
        betas: finite temperatures for the monotonicity and bound checks.
        large_beta: a beta large enough that the soft fit ends at the hard fit's partition.
        max_iter: iterations of every fit (the hard fit must converge within them).
        means_rtol: relative tolerance of the large-beta means against the hard means.
        tol: the stopping tolerance of every fit.
    """

    variant: Variant
    X: np.ndarray
    params: Any
    betas: tuple[float, ...] = (0.3, 1.0, 5.0)
    large_beta: float = 1e6
    max_iter: int = 30
    means_rtol: float = 1e-7
    tol: float = 0.0

    def at(self, beta: float) -> Any:
        """The starting parameters at inverse temperature ``beta``."""
        return self.params._replace(beta=beta)

    def fit(self, beta: float, dtype: Any = np.float64) -> gl.FitResult:
        """A fit from the starting parameters at ``beta`` in ``dtype``."""
        return gl.fit(
            self.variant, self.X.astype(dtype), self.at(beta), max_iter=self.max_iter, tol=self.tol
        )


def _check_result(case: VariantCase, result: Any, start: Any, dtype: Any) -> None:
    n, d = case.X.shape
    k = result.means.shape[0]
    assert result.means.shape == (k, d) and result.means.dtype == dtype
    assert result.labels.shape == (n,) and result.labels.dtype == jnp.int32
    assert result.history.shape == (case.max_iter,) and result.history.dtype == dtype
    assert result.objective.shape == () and result.objective.dtype == dtype
    got, want = jax.tree.leaves(result.params), jax.tree.leaves(start)
    assert [a.shape for a in got] == [b.shape for b in want]
    assert all(a.dtype == dtype for a in got if jnp.issubdtype(a.dtype, jnp.floating))


def check_shapes_and_dtype(case: VariantCase) -> None:
    """Result shapes; every floating leaf keeps X's dtype; nothing NaN, even at the hard limit.

    float64 fits run at beta = 1, a large beta and inf. float32 is checked abstractly
    (``jax.eval_shape``: the traced program keeps float32 end to end) so that the template does
    not compile a second program per variant; variant tests run float32 numerics where they
    compare against a reference.
    """
    for dtype in (np.float32, np.float64):
        X = jnp.asarray(case.X, dtype)
        start = case.variant.validate(X, case.at(1.0))
        if dtype == np.float32:
            traced = jax.eval_shape(lambda: case.fit(1.0, np.float32))
            _check_result(case, traced, start, dtype)
            continue
        for beta in (1.0, case.large_beta, np.inf):
            result = case.fit(beta, dtype)
            _check_result(case, result, start, dtype)
            assert np.isfinite(float(result.objective))
            assert np.all(np.isfinite(np.asarray(result.history)))
            no_beta = jax.tree.leaves(result.params._replace(beta=0.0))
            finite = [np.all(np.isfinite(np.asarray(a))) for a in no_beta]
            assert all(finite), f"non-finite parameters at beta={beta} in {dtype}"


def _steps(result: gl.FitResult) -> np.ndarray:
    n = int(result.n_iter)
    values = np.append(np.asarray(result.history)[:n], float(result.objective))
    return np.diff(values), np.abs(values).max()


def check_monotone_objective(case: VariantCase) -> None:
    """Free energy non-decreasing at every finite beta; hard distortion non-increasing."""
    for beta in case.betas:
        steps, scale = _steps(case.fit(beta))
        assert np.all(steps >= -1e-10 * scale), (beta, steps.min())
    hard = case.fit(np.inf)
    steps, scale = _steps(hard)
    # hard histories hold J (never increases), or -J for variants that stop on the objective
    sign = -1.0 if bool(case.variant.is_hard(hard.params)) else 1.0
    assert np.all(sign * steps >= -1e-10 * scale), steps


def check_hard_limit_reached(case: VariantCase) -> None:
    """beta = inf converges with exactly one-hot responsibilities; large beta ends at the same."""
    hard = case.fit(np.inf)
    assert bool(hard.converged) and int(hard.n_iter) < case.max_iter
    X = jnp.asarray(case.X)
    gap = limits.responsibility_gap(case.variant, X, hard.params)
    assert float(jnp.max(gap)) == 0.0
    soft = case.fit(case.large_beta)
    np.testing.assert_array_equal(np.asarray(soft.labels), np.asarray(hard.labels))
    np.testing.assert_allclose(
        np.asarray(soft.means), np.asarray(hard.means), rtol=case.means_rtol, atol=1e-12
    )
    # the free energy tends to -J (the free energy of one-hot rows is -d)
    minus_j = -float(hard.objective) if bool(case.variant.is_hard(hard.params)) else hard.objective
    scale = abs(float(minus_j)) + 1.0
    assert abs(float(soft.objective) - float(minus_j)) <= 1e-3 * scale


def check_bound(case: VariantCase) -> None:
    """|r_nk - onehot_nk| <= (K - 1) exp(-beta gap_n) at every point and temperature."""
    X = jnp.asarray(case.X)
    eps = np.finfo(np.float64).eps
    for beta in (*case.betas, case.large_beta):
        params = case.at(beta)
        gap = np.asarray(limits.responsibility_gap(case.variant, X, params))
        bound = np.asarray(limits.responsibility_bound(case.variant, X, params))
        assert np.all(gap <= bound[:, None] + 4 * eps), (beta, (gap - bound[:, None]).max())
    # the bound is not vacuous: at a moderate beta some points are far from one-hot
    moderate = case.at(min(case.betas))
    assert float(jnp.max(limits.responsibility_gap(case.variant, X, moderate))) > 1e-3


def check_no_recompilation(case: VariantCase) -> None:
    """Changing beta (finite or inf) reuses the one compiled fit."""
    case.fit(case.betas[0])
    size = fit_compiled._cache_size()
    for beta in (*case.betas[1:], case.large_beta, np.inf, 2.5):
        case.fit(beta)
    assert fit_compiled._cache_size() == size


CONTRACT = [
    check_shapes_and_dtype,
    check_monotone_objective,
    check_hard_limit_reached,
    check_bound,
    check_no_recompilation,
]
