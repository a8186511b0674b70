# %% [markdown]
# # See the limit in five minutes
#
# K-means is what EM for a Gaussian mixture becomes when the mixture's variance goes to zero.
# This tutorial watches it happen on three clusters in the plane: the soft responsibilities
# harden into K-means' assignments, inside the exact bound that predicts how fast, and EM at
# `sigma2 = 0` *is* Lloyd's algorithm, iterate for iterate. Everything runs in seconds on a CPU.
#
# The model: N points in R^D, K components with equal priors 1/K and one shared, fixed
# covariance `sigma2 * I`. gmmlimit fits it with `gl.em(X, means0, sigma2)` and fits K-means
# with `gl.kmeans(X, means0)`; both are the same compiled code.

# %%
import jax
import jax.numpy as jnp
import numpy as np

import gmmlimit as gl

# %% [markdown]
# ## Data and a start
#
# Three Gaussian clusters of 100 points each. All randomness comes from explicit `jax.random`
# keys, so every number below is the same on every run.

# %%
key_labels, key_noise, key_init = jax.random.split(jax.random.key(0), 3)
centres = jnp.array([[0.0, 0.0], [3.0, 0.0], [1.5, 2.5]])
labels = jax.random.randint(key_labels, (300,), 0, 3)
X = centres[labels] + 0.6 * jax.random.normal(key_noise, (300, 2))
m0 = gl.init.kmeans_plusplus(key_init, X, 3)

hard = gl.kmeans(X, m0)  # Lloyd's K-means from the k-means++ start
print(f"K-means: {int(hard.n_iter)} iterations, distortion J = {float(hard.distortion):.4f}")

# %% [markdown]
# ## Where the mixture starts to care
#
# Above `gl.critical_sigma2(X)`, the largest eigenvalue of the data covariance, EM pulls every
# mean onto the data mean: the mixture sees one blob. Below it, the means separate.

# %%
s2c = float(gl.critical_sigma2(X))
print(f"critical sigma2 = lambda_max(C) = {s2c:.4f}")

# %% [markdown]
# ## Responsibilities harden, inside bound 1
#
# For every point n with a gap `Delta_n` between its two smallest squared distances to the
# means, the responsibilities differ from K-means' one-hot assignment by at most
# `(K - 1) exp(-Delta_n / (2 sigma2))` (bound 1). `gl.study.responsibility_gap` measures the left
# side, `gl.study.responsibility_bound` the right side. Sweeping `sigma2` never recompiles: it is a
# traced value, not a static argument. In float32, `1 - r` of a near-one responsibility is
# only known to a few units of rounding (`eps`), so the check allows 4 of them.

# %%
eps = float(jnp.finfo(X.dtype).eps)
print(f"{'sigma2':>8}  {'max |r - onehot|':>17}  {'max bound 1':>12}  same partition")
for sigma2 in [2.0, 0.3, 0.03, 0.01, 0.003, 0.001, 0.0]:
    fit = gl.em(X, m0, sigma2)
    gap = gl.study.responsibility_gap(X, fit.means, sigma2)  # (N, K)
    bound = gl.study.responsibility_bound(X, fit.means, sigma2)  # (N,)
    assert bool(jnp.all(gap <= bound[:, None] + 4 * eps)), "bound 1 must hold"
    same = bool(jnp.all(fit.labels == hard.labels))
    print(f"{sigma2:>8}  {float(gap.max()):>17.3e}  {float(bound.max()):>12.3e}  {same}")

# %% [markdown]
# The gap falls exponentially in `1/sigma2`, and once `Delta_n / (2 sigma2)` passes
# `gl.study.onehot_threshold(dtype)` (about 87 in float32, 708 in float64) the responsibilities are
# exactly one-hot in floating point, with no NaN on the way: the E-step works in the log domain.

# %%
print(f"float32 one-hot threshold: {gl.study.onehot_threshold(jnp.float32):.2f}")

# %% [markdown]
# ## The log-likelihood becomes the K-means objective (bound 2)
#
# Scaled by `-2 sigma2` and shifted by its constants, the log-likelihood `L~` is squeezed
# between `J - 2 N sigma2 ln K` and `J`, where `J` is the K-means distortion at the same means.

# %%
n, k = X.shape[0], m0.shape[0]
for sigma2 in [0.5, 0.1, 0.02]:
    means = gl.em(X, m0, sigma2).means
    ltilde = float(gl.study.scaled_log_likelihood(X, means, sigma2))
    J = float(gl.kmeans_objective(X, means))
    lower = J - 2 * n * sigma2 * np.log(k)
    assert lower <= ltilde <= J * (1 + 1e-5), "bound 2 must hold"
    print(
        f"sigma2={sigma2:<5} J - 2N sigma2 ln K = {lower:9.3f} "
        f"<= L~ = {ltilde:9.3f} <= J = {J:9.3f}"
    )

# %% [markdown]
# ## At sigma2 = 0, EM is Lloyd's algorithm
#
# Not approximately: the same iterations, the same labels, the same means.

# %%
zero = gl.em(X, m0, 0.0)
assert int(zero.n_iter) == int(hard.n_iter)
assert bool(jnp.all(zero.labels == hard.labels))
assert bool(jnp.all(zero.means == hard.means))
print("EM at sigma2 = 0 reproduces K-means exactly:", int(zero.n_iter), "iterations")

# %% [markdown]
# ## Where next
#
# - `gmmlimit reproduce --quick` runs the experiments behind these statements on four data sets
#   and draws the paper figures; `gmmlimit paper` typesets them into a PDF.
# - `gl.anneal` follows the means down a decreasing `sigma2` schedule (deterministic
#   annealing), splitting first at the critical `sigma2` printed above.
# - [Write your own variant](own_variant.md): any exponential family has its own hard limit.
