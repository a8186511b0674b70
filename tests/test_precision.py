"""Every matrix product that gmmlimit traces asks for full precision.

XLA:CPU computes a float32 product in float32 whatever the precision says, but on a GPU a
product left at JAX's default precision runs in TF32 (10 mantissa bits): on an H200 that gave
``critical_sigma2`` a relative error of 7e-5 (benchmarks/results/gpu_h200_s33/failures.log). A
CPU cannot show the error, so these tests read the programs instead: every ``dot_general`` on
floating-point operands that a tool traces (annealing, the rate and gradient studies, DP-means,
the critical variance, the plain fits) must carry ``Precision.HIGHEST``; each variant's fits and
starting parameters are checked so by the variant contract (``check_full_precision`` in
``tests/variant_contract.py``), which variants written outside the package inherit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from variant_contract import FULL_PRECISION, traced_products

import gmmlimit as gl
from gmmlimit import variants as gv


def _assert_full_precision(call) -> None:
    """``call()`` traces at least one product, and only full-precision ones."""
    products = traced_products(call)
    assert products, "nothing was traced: the check would pass vacuously"
    low = [p for p in products if p[0] != FULL_PRECISION]
    assert not low, f"{len(low)} of {len(products)} products below full precision: {low[:3]}"


def _blobs(seed: int = 0, n: int = 120, d: int = 3, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    return (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


X = _blobs()
M0 = X[:3].copy()


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
def test_the_tools_trace_only_full_precision_products(call):
    _assert_full_precision(call)


def test_the_check_sees_a_default_precision_product():
    # The recorder itself: a product at JAX's default precision is caught, and the primitive
    # binds as before afterwards.
    a = jnp.ones((4, 4), jnp.float32)
    products = traced_products(lambda: jax.jit(lambda m: m @ m)(a))
    assert [p[0] for p in products] == [None]
    assert "bind" not in vars(jax._src.lax.lax.dot_general_p)


def test_the_check_reads_products_in_branches_not_taken_and_in_host_loops():
    # Read from the jaxpr: a product in the branch that this input does not take counts too.
    a = jnp.ones((4, 4), jnp.float32)
    full = jax.lax.Precision.HIGHEST

    def branches(m):
        return jax.lax.cond(m[0, 0] > 0, lambda: jnp.matmul(m, m, precision=full), lambda: m @ m)

    assert sorted(p[0] is None for p in traced_products(lambda: jax.jit(branches)(a))) == [
        False,
        True,
    ]

    # A loop on the host that reads a value cannot be traced: it runs under the recorder.
    def host_loop():
        m = a
        while float(m[0, 0]) < 100.0:
            m = jax.jit(lambda m: m @ m)(m)
        return m

    products = traced_products(host_loop)
    assert products and all(p[0] is None for p in products)
    assert "bind" not in vars(jax._src.lax.lax.dot_general_p)
