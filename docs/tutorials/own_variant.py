# %% [markdown]
# # Write your own variant
#
# Every mixture in gmmlimit is a `Variant` that the one compiled fit driver runs. A *tempered*
# variant needs only four pieces: its parameters, a divergence `d_nk`, the weighted moments its
# M-step reads, and the M-step. `gmmlimit.variants.tempered_variant` assembles them into a
# `Variant` with responsibilities `r_nk ∝ pi_k exp(-beta d_nk)`: `beta = 1` is ordinary EM,
# `beta = inf` its hard limit, and the limit comes with the same bound as for K-means. A fifth,
# `init`, draws starting parameters from a random key: the tools that start on their own
# (restarts, the scikit-learn estimator, annealing, the limit study) need it.
#
# This tutorial builds, by hand, a mixture of **exponential distributions** (each feature of
# component k is exponential with mean `mu_kd`), following the pattern of
# `gmmlimit/variants/_poisson.py`. Its hard limit is clustering in the Itakura-Saito
# divergence. gmmlimit ships the same model as the Gamma mixture `gv.gamma` at shape 1, which
# gives the hand-built variant an independent check.

# %%
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import gmmlimit as gl
from gmmlimit import variants as gv
from gmmlimit.checks import (
    check_array,
    check_beta,
    check_k,
    check_mixing_weights,
    check_positive_scalar,
    is_traced,
)
from gmmlimit.variants import MixtureStats, update_weights

# %% [markdown]
# ## 1. Parameters
#
# A NamedTuple with `weights` (K,) and `beta` () plus the model's own leaves. Every continuous
# quantity is a leaf (never a static field), so changing `beta` never recompiles.


# %%
class ExponentialParams(NamedTuple):
    """Parameters of the exponential mixture: means (K, D) > 0, weights (K,), beta (), floor ()."""

    means: jax.Array
    weights: jax.Array
    beta: jax.Array
    floor: jax.Array


# %% [markdown]
# ## 2. The divergence
#
# The exponential density is `p(x | mu) = exp(-x / mu) / mu`, so `-ln p(x | mu)` equals the
# Itakura-Saito divergence `d(x, mu) = sum_d [x_d / mu_d - ln(x_d / mu_d) - 1]` up to a term
# free of the parameters. On a block of rows (B, D) it is (B, K); the cross term is a matrix
# product, and it is clipped at 0 against rounding.


# %%
def itakura_saito(x: jax.Array, means: jax.Array) -> jax.Array:
    """(B, K) Itakura-Saito divergences of rows x (B, D) > 0 from means (K, D) > 0."""
    cross = lax.dot_general(
        x, 1.0 / means, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST
    )
    const = -jnp.sum(jnp.log(x), axis=1) - x.shape[1]
    return jnp.maximum(cross + const[:, None] + jnp.sum(jnp.log(means), axis=1)[None, :], 0.0)


# %% [markdown]
# ## 3. Moments and 4. the M-step
#
# The driver sums the moments of every block; `wr = w_n r_nk` is zero on padding rows. For an
# exponential family the M-step is the weighted mean, as in Lloyd's algorithm. An empty
# component keeps its old mean, and means never fall below `floor`: no NaN at any `beta`.


# %%
def moments(params: ExponentialParams, x: jax.Array, wr: jax.Array) -> jax.Array:
    """(K, D) weighted sums of the rows of one block."""
    return lax.dot_general(wr, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


def m_step(params: ExponentialParams, stats: MixtureStats) -> ExponentialParams:
    """The weighted means and mixing weights."""
    occupied = stats.counts > 0
    means = stats.moments / jnp.where(occupied, stats.counts, 1.0)[:, None]
    ok = occupied[:, None] & jnp.isfinite(means)
    means = jnp.where(ok, jnp.maximum(means, params.floor), params.means)
    return params._replace(means=means, weights=update_weights(params, stats))


# %% [markdown]
# ## 5. Validation
#
# Eager, before any compiled code: a clear `ValueError` for bad input, and every leaf cast to
# the data's dtype. Two hooks: `validate(X, params)` reads only `X.shape` and `X.dtype` (out of
# core it gets a `jax.ShapeDtypeStruct`, never the rows), and `check_data(x)` sees the rows
# themselves as NumPy, all at once in memory or chunk by chunk out of core.


# %%
def check_data(x: np.ndarray) -> None:
    """Raise ValueError unless every entry of the rows x (n, D) is > 0."""
    if np.any(x <= 0):
        raise ValueError("exponential data must be > 0; X has entries <= 0.")


def validate(X: jax.Array, params: ExponentialParams) -> ExponentialParams:
    """Check the parameters of the exponential mixture against X's shape; cast them to its dtype."""
    if not isinstance(params, ExponentialParams):
        raise ValueError(f"exponential takes ExponentialParams; got {type(params).__name__}.")
    k = np.shape(params.means)[0] if np.ndim(params.means) == 2 else -1
    means = check_array(params.means, (k, X.shape[1]), X.dtype, "means")
    check_k(k, X.shape[0])
    if not is_traced(params.means) and np.any(np.asarray(params.means) <= 0):
        raise ValueError("means must be > 0.")
    return ExponentialParams(
        means=means,
        weights=check_mixing_weights(params.weights, k, X.dtype),
        beta=check_beta(params.beta, X.dtype),
        floor=check_positive_scalar(params.floor, X.dtype, "floor"),
    )


# %% [markdown]
# ## 6. Starting parameters
#
# `init(key, X, k)` draws them with `jax.random` (it must be jit-able: restarts `vmap` it over
# keys): k distinct random rows as means (the data are > 0, so the means are), equal weights,
# `beta = 1`. The tools set the temperature they need themselves.


# %%
def init(key: jax.Array, X: jax.Array, k: int) -> ExponentialParams:
    """Starting parameters: k distinct random rows of X as means, equal weights, beta = 1."""
    rows = jax.random.choice(key, X.shape[0], (k,), replace=False)
    return ExponentialParams(
        means=X[rows],
        weights=jnp.full((k,), 1.0 / k, X.dtype),
        beta=jnp.ones((), X.dtype),
        floor=jnp.asarray(1e-6, X.dtype),
    )


# %% [markdown]
# ## 7. The variant
#
# A module-level constant: the variant is a static argument of the compiled driver.

# %%
exponential = gv.tempered_variant(
    "exponential",
    divergence=lambda p, x: itakura_saito(x, p.means),
    moments=moments,
    m_step=m_step,
    means=lambda p: p.means,
    validate=validate,
    init=init,
    check_data=check_data,
)

# %% [markdown]
# ## Fit it
#
# Two components in three dimensions whose feature means differ by a factor of four. `gl.fit`
# runs the variant at any `beta`; `beta = inf` is hard Itakura-Saito clustering.

# %%
key_labels, key_x, key_init = jax.random.split(jax.random.key(0), 3)
true_means = jnp.array([[1.0, 4.0, 1.0], [4.0, 1.0, 4.0]])
z = jax.random.randint(key_labels, (400,), 0, 2)
X = true_means[z] * jax.random.exponential(key_x, (400, 3))
start = X[jax.random.choice(key_init, X.shape[0], (2,), replace=False)]


def params_at(beta: float) -> ExponentialParams:
    """The starting parameters at inverse temperature beta."""
    return ExponentialParams(start, jnp.full(2, 0.5), beta, 1e-6)


soft = gl.fit(exponential, X, params_at(1.0))
hard = gl.fit(exponential, X, params_at(np.inf))
print("EM (beta = 1) means:\n", np.round(np.asarray(soft.params.means), 2))
print("hard limit (beta = inf) means:\n", np.round(np.asarray(hard.params.means), 2))
agree = max(float(jnp.mean(soft.labels == z)), float(jnp.mean(soft.labels != z)))
print(f"EM labels agree with the true components on {agree:.0%} of the points")
assert bool(jnp.all(jnp.isfinite(soft.params.means)))
# EM never decreases its objective (the free energy at beta = 1: the log-likelihood up to a
# constant); the hard fit never increases the distortion J.
steps = np.diff(np.asarray(soft.history)[: int(soft.n_iter) + 1])
assert np.all(steps >= -1e-5 * np.abs(np.asarray(soft.history)[1:][: steps.size]))

# %% [markdown]
# With `init`, the tools that draw their own starts take the variant too: `gl.restarts` fits it
# from several keys and keeps the best fit (here at its `init`'s `beta = 1`, EM).

# %%
best = gl.restarts(jax.random.key(1), X, 2, variant=exponential, n_init=4, max_iter=100)
print(f"best of 4 restarts: objective {float(best.objective):.2f}, {int(best.n_iter)} iterations")
assert best.params.means.shape == (2, 3) and bool(jnp.all(best.params.means > 0))

# %% [markdown]
# The variant gets the toolkit's other paths with nothing added: out of core (the rows read
# chunk by chunk, here blocks of 64 rows, so the last of the 400 holds 16) and with the rows
# sharded over the devices, each the same fit. Bad rows get `check_data`'s error on every path.

# %%
blocks = dict(block_size=64, max_iter=20, tol=0.0)
in_memory = gl.fit(exponential, X, params_at(1.0), **blocks)
out_of_core = gl.scale.fit_out_of_core(
    exponential, np.asarray(X), params_at(1.0), chunk_blocks=2, **blocks
)
sharded = gl.scale.fit_sharded(exponential, X, params_at(1.0), **blocks)
assert np.array_equal(np.asarray(out_of_core.params.means), np.asarray(in_memory.params.means))
np.testing.assert_allclose(
    np.asarray(sharded.params.means), np.asarray(in_memory.params.means), rtol=1e-5
)
bad = np.asarray(X).copy()
bad[399, 0] = 0.0  # in the last, partial block
for run in (gl.fit, gl.scale.fit_out_of_core, gl.scale.fit_sharded):
    try:
        run(exponential, bad, params_at(1.0), block_size=64)
    except ValueError as error:
        assert "must be > 0" in str(error)
    else:
        raise AssertionError(f"{run.__name__} took data with a zero")
print("out of core and sharded == in memory; a zero in the last block refused on every path")

# %% [markdown]
# The shipped Gamma mixture at shape 1 is the same model, written separately: from the same
# start, after the same eight EM iterations, it must hold the same means.

# %%
mine = gl.fit(exponential, X, params_at(1.0), max_iter=8, tol=0.0)
shipped = gl.fit(
    gv.gamma, X, gv.GammaParams(start, 1.0, jnp.full(2, 0.5), 1.0), max_iter=8, tol=0.0
)
assert int(mine.n_iter) == int(shipped.n_iter) == 8
np.testing.assert_allclose(
    np.asarray(mine.params.means), np.asarray(shipped.params.means), rtol=1e-5
)
print("hand-built exponential mixture == gv.gamma at shape 1")

# %% [markdown]
# ## Check the hard limit against a reference that does not share the code
#
# At `beta = inf` the fit must be Itakura-Saito hard clustering: assign each row to the mean
# with the smallest divergence, replace each mean by its cluster's mean, repeat. Ten lines of
# NumPy, run from the same start, must end at the same partition and means.

# %%
Xn, mu = np.asarray(X, np.float64), np.asarray(start, np.float64)
for _ in range(100):
    d = (Xn[:, None, :] / mu[None] - np.log(Xn[:, None, :] / mu[None]) - 1).sum(-1)
    assign = d.argmin(1)
    new = np.stack([Xn[assign == j].mean(0) for j in range(2)])
    if np.allclose(new, mu, rtol=0, atol=0):
        break
    mu = new
assert np.array_equal(assign, np.asarray(hard.labels))
np.testing.assert_allclose(np.asarray(hard.params.means), mu, rtol=1e-5)
print("beta = inf fit == NumPy Itakura-Saito hard clustering")

# %% [markdown]
# ## Watch the limit: the bound holds, the gaps vanish
#
# `gv.limit_sweep` measures, over a grid of `beta`, the largest responsibility gap
# `max |r - onehot|` against its bound `(K - 1) exp(-beta gap_n)`, the gap between one tempered
# and one hard update, and how far full fits end from the hard fit. The grid is swept without
# recompiling: `beta` is a traced leaf.

# %%
betas = np.geomspace(0.5, 5e4, 6)
sweep = gv.limit_sweep(exponential, X, params_at(1.0), betas, max_iter=50)
for i, b in enumerate(sweep["beta"]):
    print(
        f"beta={b:8.2f}  max|r-onehot|={sweep['resp_gap'][i]:.2e}  "
        f"bound={sweep['bound'][i]:.2e}  update gap={sweep['update_gap'][i]:.2e}"
    )
assert sweep["bound_holds"].all()
assert sweep["resp_gap"][-1] < sweep["resp_gap"][0]

# %% [markdown]
# ## Next
#
# - Keep the variant in a module of your own (no change to the package): every tool takes it
#   (those that start on their own, such as `gl.restarts`, `gmmlimit.sklearn.VariantMixture`
#   and `gl.study.anneal_variant`, through its `init`), and
#   `gmmlimit run variant_study --variant my_module:my_variant` runs its limit study.
# - Test it with the inherited contract (`tests/variant_contract.py` of the repository: shapes
#   and dtypes, monotone objective, the hard limit reached, the bound, no recompilation) plus
#   one comparison with an independent reference, as above. See the
#   [variants guide](../variants.md).
