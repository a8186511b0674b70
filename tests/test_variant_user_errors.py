"""A user's variant whose functions return the wrong form: a ValueError naming the function.

Every mistake here is refused while the fit is traced (or eagerly before it), so no test
compiles a fit program: each ``pytest.raises`` costs one trace. Before these checks the same
mistakes gave JAX's own messages, naming neither the variant nor the function ("div got
incompatible shapes for broadcasting", "Cannot broadcast to shape with fewer dimensions", "cond
branch outputs must have the same pytree structure", "'NoneType' object has no attribute
'means'"), or fit a wrong model without a word (per-row moments where B = K, float32 moments
of float64 data, float32 locations returned as the fit's means).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit import variants as gv
from gmmlimit.sklearn import VariantMixture

X = np.random.default_rng(0).normal(size=(20, 2))
X[10:] += 5.0


class _Params(NamedTuple):
    means: jax.Array
    weights: jax.Array
    beta: jax.Array


START = _Params(X[[0, 15]], np.full(2, 0.5), 1.0)


def _divergence(params: _Params, x: jax.Array) -> jax.Array:
    return jnp.sum((x[:, None, :] - params.means[None]) ** 2, axis=2)


def _moments(params: _Params, x: jax.Array, wr: jax.Array) -> jax.Array:
    return jnp.matmul(wr.T, x, precision=jax.lax.Precision.HIGHEST)


def _m_step(params: _Params, stats: gv.MixtureStats) -> _Params:
    means = stats.moments / jnp.maximum(stats.counts, 1e-30)[:, None]
    return params._replace(means=means, weights=gv.update_weights(params, stats))


def _validate(X: Any, params: _Params) -> _Params:
    return _Params(*(jnp.asarray(a, X.dtype) for a in params))


def _init(key: jax.Array, X: jax.Array, k: int) -> _Params:
    weights = jnp.full((k,), 1.0 / k, X.dtype)
    return _Params(gv.distinct_rows(key, X, k), weights, jnp.ones((), X.dtype))


def _mine(**pieces: Callable) -> gl.Variant:
    """The user's variant (squared distances, learned weights), with some pieces replaced."""
    functions = {
        "divergence": _divergence,
        "moments": _moments,
        "m_step": _m_step,
        "means": lambda p: p.means,
        "validate": _validate,
        "init": _init,
    }
    return gv.tempered_variant("mine", **{**functions, **pieces})


GOOD = _mine()


def _stats_with(**fields: Callable) -> gl.Variant:
    """A variant whose sufficient statistics have some fields replaced (``(stats, e) -> value``)."""

    def stats(x: jax.Array, w: jax.Array, estep: Any) -> Any:
        good = GOOD.sufficient_stats(x, w, estep)
        return good._replace(**{name: f(good, estep) for name, f in fields.items()})

    return GOOD._replace(sufficient_stats=stats)


def _setting(set_: Callable) -> gl.Variant:
    return GOOD._replace(temperature=GOOD.temperature._replace(set=set_))


# (variant, a fragment of the message); each is traced by gl.fit, out of core and under vmap
TRACED = {
    "moments left per row": (
        _mine(moments=lambda p, x, wr: x * wr[:, :1]),
        r"sufficient statistics of variant 'mine'.*sums over the block's rows.*stats\.moments "
        r"has shape \(20, 2\) for a block of B = 20 rows and \(21, 2\) for B = 21",
    ),
    "a per-row moment in a tuple": (
        _mine(moments=lambda p, x, wr: (_moments(p, x, wr), x[:, 0])),
        r"stats\.moments\[1\] has shape \(20,\) for a block of B = 20",
    ),
    "float32 moments of float64 data": (
        _mine(moments=lambda p, x, wr: _moments(p, x, wr).astype(jnp.float32)),
        r"moments\) must be in the data's dtype float64: stats\.moments is \(2, 2\) float32",
    ),
    "means of another width": (
        _mine(means=lambda p: jnp.concatenate([p.means, p.means[:, :1]], axis=1)),
        r"the means of variant 'mine' must return \(K, D\) .*D = 2.*returned shape \(2, 3\)",
    ),
    "means in float32": (
        _mine(means=lambda p: p.means.astype(jnp.float32)),
        r"the means of variant 'mine' .*dtype float64; it returned shape \(2, 2\) float32",
    ),
    "counts left per row": (
        _stats_with(counts=lambda s, e: e.resp),
        r"sufficient_stats of variant 'mine' must return stats\.counts of shape \(2,\)",
    ),
    "distortion left per row": (
        _stats_with(distortion=lambda s, e: e.distortion),
        r"sufficient_stats of variant 'mine' must return stats\.distortion of shape \(\)",
    ),
    "statistics as a plain tuple": (
        GOOD._replace(sufficient_stats=lambda x, w, e: tuple(GOOD.sufficient_stats(x, w, e))),
        r"sufficient_stats of variant 'mine' must return statistics with a counts attribute",
    ),
    "objective per component": (
        GOOD._replace(objective=lambda p, s: s.counts),
        r"the objective of variant 'mine' must return a scalar \(shape \(\)\); it returned "
        r"shape \(2,\)",
    ),
    "is_hard per component": (
        GOOD._replace(is_hard=lambda p: jnp.isinf(p.weights)),
        r"the is_hard of variant 'mine' must return a scalar",
    ),
    "relocate returns the counts": (
        GOOD._replace(relocate=lambda p, s, far: s.counts),
        r"the relocate of variant 'mine' must return its statistics in the form it was given",
    ),
}


def _fit(variant: gl.Variant) -> Any:
    return gl.fit(variant, X, START, max_iter=5)


def _out_of_core(variant: gl.Variant) -> Any:
    return gl.scale.fit_out_of_core(variant, [X[:12], X[12:]], START, max_iter=5, block_size=20)


def _vmapped(variant: gl.Variant) -> Any:
    def at(beta: jax.Array) -> Any:
        return gl.fit(variant, X, GOOD.temperature.set(START, beta), max_iter=5)

    return jax.vmap(at)(jnp.array([1.0, jnp.inf]))


# out of core, a relocation compiles a chunk program of its own (the farthest rows tracked):
# its check is relocate_if_empty's, which the in-memory paths reach
CASES = [
    (mistake, path)
    for mistake in TRACED
    for path in (_fit, _out_of_core, _vmapped)
    if (mistake, path) != ("relocate returns the counts", _out_of_core)
]


@pytest.mark.parametrize(
    ("mistake", "path"), CASES, ids=[f"{m}-{p.__name__.lstrip('_')}" for m, p in CASES]
)
def test_a_function_of_the_wrong_form_is_named_while_traced(mistake, path):
    variant, message = TRACED[mistake]
    with pytest.raises(ValueError, match=message):
        path(variant)


def test_per_row_moments_are_refused_where_the_block_holds_k_rows():
    # B = K = 2: the (B, D) moments have the (K, D) moments' shape, the M-step broadcasts, and
    # the fit ran to a wrong model without a word
    variant, _ = TRACED["moments left per row"]
    with pytest.raises(ValueError, match=r"stats\.moments has shape \(2, 2\) for a block of B = 2"):
        gl.fit(variant, X, START, max_iter=5, block_size=2)


def test_float64_moments_of_float32_data_are_named():
    # a NumPy float64 constant in a float32 fit (JAX's x64 flag on, as in the conftest)
    variant = _mine(moments=lambda p, x, wr: _moments(p, x, wr) * np.ones((), np.float64))
    with pytest.raises(ValueError, match=r"dtype float32: stats\.moments is \(2, 2\) float64"):
        gl.fit(variant, X.astype(np.float32), START, max_iter=5)


TEMPERATURE_SETS = {
    "drops a field": (
        lambda p, t: (p.means, p.weights),
        r"temperature\.set of variant 'mine' must return its parameters in the form it was given",
    ),
    "of another shape": (
        lambda p, t: p._replace(beta=jnp.reshape(jnp.asarray(t, jnp.result_type(p.beta)), (1,))),
        r"temperature\.set of variant 'mine' must keep every parameter's shape: params\.beta was "
        r"\(\), it returned \(1,\)",
    ),
}


SETTERS = {
    "anneal": lambda v: gl.study.anneal_variant(v, X, [1.0, 2.0], init_params=START),
    "restarts": lambda v: gl.restarts(jax.random.key(0), X, 2, variant=v, temperature=2.0),
    "estimator": lambda v: VariantMixture(v, 2, temperature=2.0).fit(X),
}


@pytest.mark.parametrize("path", list(SETTERS))
@pytest.mark.parametrize("mistake", list(TEMPERATURE_SETS))
def test_a_temperature_set_of_the_wrong_form_is_named(mistake, path):
    # restarts and the estimator set it inside the traced draw of the starts: nothing compiled
    set_, message = TEMPERATURE_SETS[mistake]
    with pytest.raises(ValueError, match=message):
        SETTERS[path](_setting(set_))


VALIDATES = {"returns None": lambda X, p: None, "returns a tuple": lambda X, p: tuple(p)}

# every tool that validates the parameters (eagerly, before anything is traced)
VALIDATING = {
    "fit": lambda v: gl.fit(v, X, START, max_iter=5),
    "out_of_core": _out_of_core,
    "sharded": lambda v: gl.scale.fit_sharded(v, X, START, max_iter=5),
    "anneal": lambda v: gl.study.anneal_variant(v, X, [1.0], init_params=START),
    "restarts": lambda v: gl.restarts(jax.random.key(0), X, 2, variant=v, n_init=2, max_iter=5),
    "estimator": lambda v: VariantMixture(v, 2, max_iter=5).fit(X),
    "diagnose": lambda v: gl.study.diagnose(v, X, START),
    "limit_sweep": lambda v: gl.study.limit_sweep(v, X, START, [1.0, 2.0]),
}


@pytest.mark.parametrize("path", list(VALIDATING))
@pytest.mark.parametrize("mistake", list(VALIDATES))
def test_a_validate_that_does_not_return_the_parameters_is_named(mistake, path):
    # before: "'NoneType' object has no attribute 'means'" (or 'tuple'), from the first
    # function that read them
    message = r"the validate of variant .mine. must return the checked parameters \(a _Params"
    with pytest.raises(ValueError, match=message):
        VALIDATING[path](_mine(validate=VALIDATES[mistake]))


@pytest.mark.parametrize("path", ["fit", "out_of_core", "sharded"])
def test_means_of_one_dimension_are_named(path):
    # before: an IndexError where gl.fit read K from them; out of core, the weights were taken
    # for the means (restarts and the estimator name an init of such means already)
    flat = _mine(means=lambda p: p.means[:, 0])
    message = r"the means of variant 'mine' must return \(K, D\) .*returned shape \(2,\)"
    with pytest.raises(ValueError, match=message):
        VALIDATING[path](flat)


def test_an_init_of_the_wrong_width_is_named_by_restarts_and_the_estimator():
    # before: the user's divergence failed ("sub got incompatible shapes for broadcasting")
    wide = _mine(init=lambda key, X, k: _init(key, X, k)._replace(means=jnp.zeros((k, 3))))
    message = r"the means of variant 'mine' must return \(K, D\) .*returned shape \(2, 3\)"
    with pytest.raises(ValueError, match=message):
        gl.restarts(jax.random.key(0), X, 2, variant=wide, n_init=2, max_iter=5)
    with pytest.raises(ValueError, match=message):
        VariantMixture(wide, 2, max_iter=5).fit(X)


@pytest.mark.parametrize("path", ["restarts", "estimator", "anneal"])
def test_an_init_that_returns_a_tuple_is_named(path):
    # before: "'tuple' object has no attribute 'means'" from the variant's means
    as_tuple = _mine(init=lambda key, X, k: tuple(_init(key, X, k)))
    message = r"variant 'mine': init\(key, X, k\) returned a tuple whose means the variant cannot"
    run = {
        "restarts": lambda: gl.restarts(jax.random.key(0), X, 2, variant=as_tuple, n_init=2),
        "estimator": lambda: VariantMixture(as_tuple, 2, max_iter=5).fit(X),
        "anneal": lambda: gl.study.anneal_variant(as_tuple, X, [1.0], key=jax.random.key(0), k=2),
    }
    with pytest.raises(ValueError, match=message):
        run[path]()


# What the checks must not refuse (a review found each refused after 03b1b0b): read directly,
# so that nothing compiles.


class _Optional(NamedTuple):
    means: jax.Array
    weights: Any = None  # filled by validate
    beta: Any = 1.0


def test_a_validate_may_fill_a_field_or_name_a_tuple():
    from gmmlimit._variant import checked_validate

    def fill(X: Any, p: Any) -> _Optional:
        weights = jnp.full(2, 0.5) if p.weights is None else p.weights
        return _Optional(jnp.asarray(p.means), weights, jnp.asarray(p.beta, X.dtype))

    variant = _mine(validate=fill)
    filled = checked_validate(variant, X, _Optional(X[[0, 15]]))
    assert filled.weights.shape == (2,)
    as_tuple = _mine(validate=lambda X, p: _Optional(*p))  # a plain tuple made a NamedTuple
    assert isinstance(checked_validate(as_tuple, X, (X[[0, 15]], None, 1.0)), _Optional)
    bare = GOOD._replace(validate=None)
    assert checked_validate(bare, X, START) is START  # no validate: the parameters as given


@pytest.mark.parametrize("given", [None, np.ones(1)])
def test_a_temperature_given_as_none_or_of_another_shape_is_set(given):
    # anneal_variant sets each stage's temperature into the given parameters before validate
    from gmmlimit._variant import with_temperature

    start = gv.DiagParams(X[[0, 15]], np.ones((2, 2)), np.full(2, 0.5), given, 1e-6)
    assert jnp.shape(with_temperature(gv.diag, start, 2.0).beta) == ()


def test_statistics_may_hold_python_numbers():
    # a Python float in the statistics of float32 data is cast by JAX (x64 on, as in conftest)
    from gmmlimit._variant import check_stats

    X32 = X.astype(np.float32)
    estep = GOOD.e_step(_validate(X32, START), X32)
    stats = GOOD.sufficient_stats(X32, np.ones(20, np.float32), estep)._replace(distortion=0.0)
    check_stats(GOOD, stats, 2, np.float32)


LAW = gv.density_scaling(location="means", means=1)

NOT_TRACEABLE = {
    "a Python if on e": lambda p, e: p if e == 0 else LAW.params(p, e),
    "np.ldexp of e": lambda p, e: p._replace(means=np.ldexp(p.means, -e)),
}


@pytest.mark.parametrize("law", list(NOT_TRACEABLE))
def test_a_scaling_law_that_cannot_take_a_traced_exponent_is_named(law):
    # data under vmap are rescaled on the device: the laws get e as a traced int32
    variant = _mine(scaling=LAW._replace(params=NOT_TRACEABLE[law]))
    message = r"mine's scaling\.params cannot take a traced exponent.*jnp\.ldexp"
    with pytest.raises(ValueError, match=message):
        jax.vmap(lambda x: gl.fit(variant, x, START, max_iter=2))(np.stack([X, X]))


def test_a_scaling_law_of_python_powers_keeps_the_parameters_dtype():
    # p.means * 2.0 ** -e promotes float32 to float64 for a traced int32 e (x64 on): the
    # mapped parameters are cast back (exact), so the lanes are float32 fits (before: refused,
    # "the means of variant 'mine' must return ... in the data's dtype float32")
    variant = _mine(scaling=LAW._replace(params=lambda p, e: p._replace(means=p.means * 2.0**-e)))
    X32 = X.astype(np.float32)
    start = _validate(X32, START)
    lanes = jax.eval_shape(  # traced, not compiled
        jax.vmap(lambda x: gl.fit(variant, x, start, max_iter=2)), np.stack([X32, X32])
    )
    assert lanes.means.dtype == np.float32


def test_a_translation_law_takes_an_offset_as_a_sequence():
    # _offset.translate read offset.astype: a tuple offset raised AttributeError
    moved = LAW.translate(START, (1.0, 0.5))
    np.testing.assert_array_equal(np.asarray(moved.means), START.means - [1.0, 0.5])
