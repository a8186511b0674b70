"""Every matrix product that gmmlimit traces asks for full precision.

XLA:CPU computes a float32 product in float32 whatever the precision says, but on a GPU a
product left at JAX's default precision runs in TF32 (10 mantissa bits): on an H200 that gave
``critical_sigma2`` a relative error of 7e-5 (benchmarks/results/gpu_h200_s33/failures.log). A
CPU cannot show the error, so these tests read the programs instead: every ``dot_general`` on
floating-point operands that a public entry point traces (each variant's fit and starting
parameters, annealing, the rate and gradient studies, DP-means, the critical variance) must carry
``Precision.HIGHEST``.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.lax import lax as lax_internal
from variant_cases import CASES

import gmmlimit as gl
from gmmlimit import variants as gv

HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)


def _products(monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]) -> list[tuple]:
    """``(precision, operand dtypes)`` of every floating-point product traced by ``call()``.

    The compiled-program caches are cleared first, so every jitted function ``call`` reaches is
    traced again (a cached program would trace nothing).
    """
    seen: list[tuple] = []
    primitive = lax_internal.dot_general_p
    bind = primitive.bind

    def recording_bind(*args, **params):
        dtypes = tuple(jnp.result_type(a) for a in args)
        if all(jnp.issubdtype(dt, jnp.floating) for dt in dtypes):
            seen.append((params.get("precision"), dtypes))
        return bind(*args, **params)

    jax.clear_caches()
    monkeypatch.setattr(primitive, "bind", recording_bind)
    try:
        jax.block_until_ready(call())
    finally:
        monkeypatch.undo()
    return seen


def _assert_full_precision(
    monkeypatch: pytest.MonkeyPatch, call: Callable[[], object], *, some: bool = True
) -> None:
    """``call()`` traces only full-precision products (and, if ``some``, at least one)."""
    products = _products(monkeypatch, call)
    assert products or not some, "nothing was traced: the check would pass vacuously"
    low = [p for p in products if p[0] != HIGHEST]
    assert not low, f"{len(low)} of {len(products)} products below full precision: {low[:3]}"


def _blobs(seed: int = 0, n: int = 120, d: int = 3, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    return (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


X = _blobs()
M0 = X[:3].copy()


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_variant_fits_and_starts_at_full_precision(monkeypatch, name):
    case = CASES[name]
    _assert_full_precision(
        monkeypatch,
        lambda: gl.fit(case.variant, case.X, case.params, max_iter=2, block_size=64),
    )
    if case.variant.init is not None:
        _assert_full_precision(
            monkeypatch,
            lambda: case.variant.init(jax.random.key(0), jnp.asarray(case.X), 3),
            some=False,  # most draw rows and weights: no product at all
        )


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: gl.critical_sigma2(X), id="critical_sigma2"),
        pytest.param(lambda: gl.em(X, M0, 1.0, max_iter=3), id="em"),
        pytest.param(lambda: gl.kmeans(X, M0, max_iter=3), id="kmeans"),
        pytest.param(
            lambda: gl.anneal(X, [4.0, 1.0, 0.25], key=jax.random.key(1), k=3, max_iter=5),
            id="anneal",
        ),
        pytest.param(lambda: gl.study.linearized_rate(X, M0, 1.0), id="linearized_rate"),
        pytest.param(
            lambda: gl.study.convergence_rate(X, M0, 1.0, n_steps=5, fixed_point_iter=20).rate,
            id="convergence_rate",
        ),
        pytest.param(lambda: gl.study.gradient_fit(X, M0, 1.0, n_steps=3).means, id="gradient"),
        pytest.param(lambda: gv.dpmeans(X, 4.0, max_iter=5).means, id="dpmeans"),
    ],
)
def test_the_tools_trace_only_full_precision_products(monkeypatch, call):
    _assert_full_precision(monkeypatch, call)


def test_the_check_sees_a_default_precision_product(monkeypatch):
    # The recorder itself: a product at JAX's default precision is caught.
    a = jnp.ones((4, 4), jnp.float32)
    products = _products(monkeypatch, lambda: jax.jit(lambda m: m @ m)(a))
    assert [p[0] for p in products] == [None]
