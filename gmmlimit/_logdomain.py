"""Log-domain numerics shared by every variant with a temperature.

The one rule: shift by the nearest (smallest) divergence *before* scaling by the temperature, so
every exponent lies in [-inf, 0] and the nearest one is exactly 0 at any temperature. Then the
log-sum-exp lies in [0, ln K], nothing overflows, and the zero-temperature limit is the one-hot of
the argmin (ties: lowest index) with no 0/0 on the way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["pairwise_sq_dists_partial", "shifted_softmax"]


def pairwise_sq_dists_partial(x: jax.Array, means: jax.Array, means_sq: jax.Array) -> jax.Array:
    """Squared distances up to the per-row constant ||x||^2.

    Args:
        x: (B, D) rows.
        means: (K, D) component means.
        means_sq: (K,) squared norms of the means.

    Returns:
        (B, K) array ``||mu_k||^2 - 2 <x_n, mu_k>`` = d_nk - ||x_n||^2. Argmins and differences
        between columns are those of d_nk, without the rounding that adding ||x||^2 would bring.
    """
    cross = lax.dot_general(
        x,
        means,
        (((1,), (1,)), ((), ())),
        precision=lax.Precision.HIGHEST,
    )
    return means_sq[None, :] - 2.0 * cross


def shifted_softmax(
    divergence: jax.Array, temperature: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Responsibilities ``softmax_k(-(div_nk - min_k div_nk) / temperature)`` in the log domain.

    Args:
        divergence: (B, K) divergences (any per-row constant may be missing: only differences
            between columns are used).
        temperature: scalar >= 0 (2 sigma2 for the isotropic Gaussian). 0 gives the one-hot of
            the argmin, ties going to the lowest index.

    Returns:
        A tuple ``(resp, labels, gap, lse)``:
            resp: (B, K) responsibilities, rows sum to one, never NaN.
            labels: (B,) int32 argmin of the divergence (lowest index on ties).
            gap: (B, K) ``div_nk - min_k div_nk`` >= 0, exactly 0 at the argmin.
            lse: (B,) ``log sum_k exp(-gap_nk / temperature)``, in [0, ln K]; 0 at temperature 0.
    """
    labels = jnp.argmin(divergence, axis=1).astype(jnp.int32)
    nearest = jnp.take_along_axis(divergence, labels[:, None], axis=1)
    gap = jnp.maximum(divergence - nearest, 0.0)
    k = divergence.shape[1]
    onehot = jax.nn.one_hot(labels, k, dtype=divergence.dtype)
    positive = temperature > 0
    # 1/temperature may overflow to inf for a denormal temperature: gap * inf = inf for gap > 0,
    # and gap == 0 is kept at exactly 0 below, so no inf - inf or 0 * inf can appear.
    inv_temp = jnp.where(positive, 1.0 / jnp.where(positive, temperature, 1.0), jnp.inf)
    logits = jnp.where(gap > 0, -gap * inv_temp, 0.0)
    lse = jnp.log(jnp.sum(jnp.exp(logits), axis=1))
    soft = jnp.exp(logits - lse[:, None])
    resp = jnp.where(positive, soft, onehot)
    lse = jnp.where(positive, lse, 0.0)
    return resp, labels, gap, lse
