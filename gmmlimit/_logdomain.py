"""Log-domain numerics shared by every variant with a temperature: the shifted-softmax rule.

The one rule, used by every E-step form (the model's reference E-step, the fused and the wide
E-step engines, and written out again in the compiled CPU kernel):

    gap_nk      = div_nk - div_n*  (>= 0),  with div_n* = min_k div_nk and label_n its argmin
    exponent_nk = 0                          if k == label_n or gap_nk <= 0
                  -(gap_nk / temperature)    otherwise
    e_nk = exp(exponent_nk),  total_n = sum_k e_nk,  r_nk = e_nk / total_n,  lse_n = ln total_n

The exponent of the nearest component is exactly 0 *by construction, from its label*, not because
two roundings of ``div - min(div)`` happen to agree (XLA may evaluate a fused expression
differently at its two uses, which at a tiny temperature turned whole rows into 0 / 0). Hence
``1 <= total_n <= K``, ``lse_n`` lies in [0, ln K], nothing overflows at any temperature, and the
zero-temperature limit is the one-hot of the argmin (ties: lowest index). The exponent is a
division, not a product with ``1 / temperature``: ``1 / temperature`` overflows for a tiny
temperature where the quotient is merely large, and ``0 * inf`` would be NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._reduce import tree_min_first_index, tree_sum

__all__ = ["distance_from_onehot", "pairwise_sq_dists_partial", "shifted_exp", "shifted_softmax"]


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


def shifted_exp(
    divergence: jax.Array,
    best: jax.Array,
    labels: jax.Array,
    temperature: jax.Array,
    axis: int,
) -> tuple[jax.Array, jax.Array]:
    """The unnormalised responsibilities of the shifted-softmax rule (module docstring).

    Every E-step form calls this one function, whatever its layout: (B, K) rows by components,
    (K, B) components by rows, (S, K, B) parameter sets by components by rows.

    Args:
        divergence: divergences with the component axis at ``axis`` (a per-row constant may be
            missing: only differences along ``axis`` are used).
        best: the minimum along ``axis`` (``axis`` removed).
        labels: int32 first index of that minimum (``axis`` removed).
        temperature: > 0, broadcastable against ``divergence``; for the isotropic Gaussian
            ``2 sigma2``. Callers route temperature 0 to the one-hot of ``labels``.
        axis: the component axis.

    Returns:
        ``(e, total)``: ``e`` shaped like ``divergence`` with values in [0, 1], exactly 1 at the
        label, and ``total`` = the sum of ``e`` along ``axis``, in [1, K].
    """
    axis = axis % divergence.ndim
    component = lax.broadcasted_iota(jnp.int32, divergence.shape, axis)
    gap = divergence - jnp.expand_dims(best, axis)
    scaled = jnp.where(
        (gap > 0) & (component != jnp.expand_dims(labels, axis)), -(gap / temperature), 0.0
    )
    e = jnp.exp(scaled)
    return e, tree_sum(e, axis=axis)


def shifted_softmax(
    divergence: jax.Array, temperature: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Responsibilities ``softmax_k(-(div_nk - min_k div_nk) / temperature)`` by the one rule.

    Args:
        divergence: (B, K) divergences (any per-row constant may be missing: only differences
            between columns are used).
        temperature: scalar >= 0 (2 sigma2 for the isotropic Gaussian). 0, or any value below
            the smallest normal number (which the CPU flushes to 0), gives the one-hot of the
            argmin, ties going to the lowest index.

    Returns:
        A tuple ``(resp, labels, gap, lse)``:
            resp: (B, K) responsibilities, rows sum to one, never NaN.
            labels: (B,) int32 argmin of the divergence (lowest index on ties).
            gap: (B, K) ``div_nk - min_k div_nk`` >= 0, exactly 0 at the label.
            lse: (B,) ``log sum_k exp(-gap_nk / temperature)``, in [0, ln K]; 0 at temperature 0.
    """
    best, labels = tree_min_first_index(divergence, axis=1)
    k = divergence.shape[1]
    onehot = jax.nn.one_hot(labels, k, dtype=divergence.dtype)
    positive = temperature >= jnp.finfo(divergence.dtype).tiny
    e, total = shifted_exp(divergence, best, labels, jnp.where(positive, temperature, 1.0), 1)
    resp = jnp.where(positive, e / total[:, None], onehot)
    lse = jnp.where(positive, jnp.log(total), 0.0)
    gap = jnp.where(onehot > 0, 0.0, jnp.maximum(divergence - best[:, None], 0.0))
    return resp, labels, gap, lse


def distance_from_onehot(resp: jax.Array, labels: jax.Array) -> jax.Array:
    """|r_nk - onehot_nk|, with the label's entry summed from the other columns.

    At the label, 1 - r_nk is the sum of the row's other responsibilities; formed as the
    difference of 1 and the rounded r_nk it cancels (float64 r = 1 - 1.1e-16 gives 1.1e-16 or
    2.2e-16 where the true value is 1e-20), and exceeds bound 1, (K - 1) exp(-g_n). Summed, it is
    accurate to the rounding of those few small terms.

    Args:
        resp: (B, K) responsibilities, rows summing to one.
        labels: (B,) int32 the column of each row's one-hot.

    Returns:
        (B, K) distances >= 0 in resp's dtype.
    """
    onehot = jax.nn.one_hot(labels, resp.shape[1], dtype=bool)
    others = jnp.where(onehot, 0.0, resp)
    return jnp.where(onehot, jnp.sum(others, axis=1, keepdims=True), others)
