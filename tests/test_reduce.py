"""The pairwise-tree reductions of the E-step against numpy, ties and odd sizes included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmmlimit._reduce import tree_min_first_index, tree_sum


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7, 8, 13, 64])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_tree_min_first_index_matches_argmin_with_ties(k, axis):
    rng = np.random.default_rng(k)
    # Few distinct integer values: most columns have ties, often at the minimum.
    shape = [3, 4, 50]
    shape[axis] = k
    values = rng.integers(0, 3, size=shape).astype(np.float32)
    best, index = jax.jit(tree_min_first_index, static_argnums=1)(jnp.asarray(values), axis)
    np.testing.assert_array_equal(np.asarray(index), np.argmin(values, axis=axis))
    np.testing.assert_array_equal(np.asarray(best), np.min(values, axis=axis))
    assert index.dtype == jnp.int32
    assert best.dtype == jnp.float32


def test_tree_min_first_index_keeps_float64_and_infinities():
    # conftest enables float64.
    values = jnp.asarray([[np.inf, 2.0, -np.inf], [np.inf, 1.0, -np.inf], [5.0, 1.0, 0.0]])
    best, index = tree_min_first_index(values, 0)
    assert best.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(best), [5.0, 1.0, -np.inf])
    np.testing.assert_array_equal(np.asarray(index), [2, 1, 0])


@pytest.mark.parametrize("k", [1, 2, 3, 6, 9, 64])
def test_tree_sum_matches_sum(k):
    values = np.random.default_rng(k).random((k, 33)).astype(np.float32)
    total = tree_sum(jnp.asarray(values), 0)
    np.testing.assert_allclose(np.asarray(total), values.sum(axis=0), rtol=1e-6)
    total_t = tree_sum(jnp.asarray(values.T), 1)
    np.testing.assert_allclose(np.asarray(total_t), values.sum(axis=0), rtol=1e-6)
