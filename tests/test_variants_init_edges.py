"""A variant's starts drawn by ``init(key, X, k)``: from X / 2^e, in k components.

``gl.restarts`` draws its starts from the rescaled data X / 2^e (docs/design.md, "Data scale");
``study.anneal_variant`` drew its start from X as given, where the Gaussian variants' start
variances (the whole data's spread) overflow float32 near 2^63 ("variances must be finite and
> 0") and their default ``reg_covar`` sat in the data's units, not X / 2^e's. Both now draw
from X / 2^e, so the path from a key on X 2^e is the path on X mapped by the scaling, bit for
bit. A temperature with units (the isotropic model's sigma2) is given in the data's units and
mapped to X / 2^e with the rest. An ``init`` that returns another number of components than k
is refused by name before any fit runs (before, restarts(k=3) returned 4 components).
"""

import math

import jax
import numpy as np
import pytest
from trace_count import traces

import gmmlimit as gl
from gmmlimit import variants as gv
from gmmlimit._validation import SCALE_WINDOW
from gmmlimit.sklearn import VariantMixture

BLOCK = 64
N = 60


def _unit_data(dtype) -> np.ndarray:
    rng = np.random.default_rng(5)
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [1.0, 7.0]])
    return (centres[rng.integers(0, 3, N)] + rng.normal(0.0, 0.7, (N, 2))).astype(dtype)


def _at_the_edge(dtype, side: int) -> tuple[np.ndarray, int]:
    """The unit data times 2^shift, at the edge of the dtype's scale window (computed as given).

    Their largest magnitude has binary exponent W (side = +1) or -W (side = -1), so the same data
    times 2^e (e of the same sign) are fit as exactly these data: X 2^e / 2^e.
    """
    X = _unit_data(dtype)
    shift = side * SCALE_WINDOW[np.dtype(dtype)] - int(np.frexp(np.max(np.abs(X)))[1])
    return np.ldexp(X, shift), shift


def _mapped(variant, params, exponent):
    return jax.tree.map(np.asarray, variant.scaling.params(params, exponent))


def _assert_bitwise(got, want):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _assert_path_mapped(variant, far, near, exponent):
    """The path on X 2^e (``far``) is the path on X (``near``) mapped by 2^e, bit for bit."""
    _assert_bitwise(_mapped(variant, far.params, exponent), near.params)
    np.testing.assert_array_equal(np.asarray(far.means), np.ldexp(np.asarray(near.means), exponent))
    for field in ("labels", "n_iter", "n_distinct", "converged", "temperature"):
        got, want = np.asarray(getattr(far, field)), np.asarray(getattr(near, field))
        if field == "temperature" and variant.temperature.name == "sigma2":
            want = np.ldexp(want, 2 * exponent)
        np.testing.assert_array_equal(got, want, err_msg=field)
    assert float(far.scale) == math.ldexp(float(near.scale), exponent)
    assert np.all(np.isfinite(np.asarray(far.objective)))


def _anneal(variant, X, schedule, key):
    return gl.study.anneal_variant(
        variant, X, schedule, key=key, k=3, max_iter=20, block_size=BLOCK
    )


def _restarts(variant, X, key, temperature, n_init=2, max_iter=20):
    return gl.restarts(
        key,
        X,
        3,
        variant=variant,
        temperature=temperature,
        n_init=n_init,
        max_iter=max_iter,
        block_size=BLOCK,
    )


# float32 data near 2^67 (2^63 from the unit data): the start's variances (the whole data's
# spread, ~2^129) overflow as given, the fitted clusters' (~2^125) do not; float64 near 2^515.
# Below the window (2^-72, 2^-456) the start's reg_covar was 1e-6 in the data's units.
SCALES = [(np.float32, (35, -40)), (np.float64, (259, -200))]


@pytest.mark.parametrize(("dtype", "exponents"), SCALES, ids=["float32", "float64"])
def test_anneal_from_a_key_draws_its_start_from_the_rescaled_data(dtype, exponents):
    key = jax.random.key(3)
    for e in exponents:
        near, _ = _at_the_edge(dtype, 1 if e > 0 else -1)
        far = np.ldexp(near, e)
        far_path = _anneal(gv.diag, far, [1.0, 3.0], key)
        near_path = _anneal(gv.diag, near, [1.0, 3.0], key)
        _assert_path_mapped(gv.diag, far_path, near_path, e)
        if e > 0:  # the hard stage holds the three clusters
            assert int(far_path.n_distinct[-1]) == 3
        # as restarts does: its starts are drawn from X / 2^e, its fit mapped back the same way
        far_best = _restarts(gv.diag, far, jax.random.key(4), 1.0)
        near_best = _restarts(gv.diag, near, jax.random.key(4), 1.0)
        _assert_bitwise(_mapped(gv.diag, far_best.params, e), near_best.params)


@pytest.mark.parametrize(("dtype", "e"), [(np.float32, 32), (np.float32, -20)])
def test_a_temperature_in_the_data_units_is_mapped_to_the_rescaled_data(dtype, e):
    # the isotropic model's temperature sigma2 carries the data's units squared: set as given
    # on X / 2^e it was 4^e times too large (float32 2^32: the fitted sigma2 overflowed)
    near, shift = _at_the_edge(dtype, 1 if e > 0 else -1)
    far = np.ldexp(near, e)
    unit_sigma2 = math.ldexp(1.0, 2 * shift)  # sigma2 = 1 at the unit data's scale
    near_best = _restarts(gv.isotropic, near, jax.random.key(1), unit_sigma2)
    far_best = _restarts(gv.isotropic, far, jax.random.key(1), math.ldexp(unit_sigma2, 2 * e))
    _assert_bitwise(_mapped(gv.isotropic, far_best.params, e), near_best.params)
    np.testing.assert_array_equal(np.asarray(far_best.labels), np.asarray(near_best.labels))
    schedule = np.array([2.0, 1.0]) * unit_sigma2
    near_path = _anneal(gv.isotropic, near, schedule, jax.random.key(2))
    far_path = _anneal(gv.isotropic, far, np.ldexp(schedule, 2 * e), jax.random.key(2))
    _assert_path_mapped(gv.isotropic, far_path, near_path, e)
    # a sigma2 the dtype cannot hold at X / 2^e is refused by name, as a given start's is
    farther = np.ldexp(_at_the_edge(dtype, 1)[0], 60)
    with pytest.raises(ValueError, match=r"sigma2=.* cannot be held relative to the data's"):
        _restarts(gv.isotropic, farther, jax.random.key(1), 1e-30, n_init=1, max_iter=5)


def _no_fit(params, x):
    raise AssertionError("a fit was traced before the starts were checked")


def test_an_init_returning_another_number_of_components_is_refused_before_any_fit():
    X = _unit_data(np.float64)
    key = jax.random.key(0)
    wrong = gv.diag._replace(
        name="wrong_k", init=lambda kk, x, k: gv.diag.init(kk, x, k + 1), e_step=_no_fit
    )
    message = r"variant 'wrong_k': init\(key, X, k\) returned 4 components for k=3"
    with pytest.raises(ValueError, match=message):
        gl.restarts(key, X, 3, variant=wrong, n_init=2, block_size=BLOCK)
    with pytest.raises(ValueError, match=message):
        VariantMixture(wrong, 3, random_state=0, block_size=BLOCK).fit(X)
    with pytest.raises(ValueError, match=message):
        gl.study.anneal_variant(wrong, X, [1.0], key=key, k=3, block_size=BLOCK)

    def two_fewer(kk, x, k):
        return gv.diag.init(kk, x, k - 2)

    with pytest.raises(ValueError, match=r"two_fewer\(key, X, k\) returned 1 components for k=3"):
        gl.restarts(key, X, 3, variant=wrong, init=two_fewer, n_init=2, block_size=BLOCK)


def test_restarts_called_again_trace_nothing_and_still_refuse_a_wrong_init():
    # init_shapes traced the variant's init on every call (an eval_shape of a new closure)
    X = _unit_data(np.float64)
    key = jax.random.key(1)
    first = gl.restarts(key, X, 3, variant=gv.diag, n_init=2, block_size=BLOCK)
    with traces() as traced:
        again = gl.restarts(key, X, 3, variant=gv.diag, n_init=2, block_size=BLOCK)
    assert traced == [], traced
    np.testing.assert_array_equal(np.asarray(again.means), np.asarray(first.means))
    wrong = gv.diag._replace(name="wrong_k", init=lambda kk, x, k: gv.diag.init(kk, x, k + 1))
    for _ in range(2):  # an init refused once is refused again (nothing cached for it)
        with pytest.raises(ValueError, match=r"returned 4 components for k=3"):
            gl.restarts(key, X, 3, variant=wrong, n_init=2, block_size=BLOCK)
