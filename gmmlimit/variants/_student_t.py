"""Student-t mixture with spherical scales and learned degrees of freedom (gradient M-step).

p(x) = sum_k pi_k t_nu_k(x; mu_k, s_k I), the multivariate t with nu_k degrees of freedom:

    ln t = lnGamma((nu+D)/2) - lnGamma(nu/2) - (D/2) ln(nu pi s) - ((nu+D)/2) ln(1 + delta/(nu s)),

delta = ||x - mu||^2. EM treats t as a Gaussian scale mixture (McLachlan and Peel): the E-step
also gives the weights u_nk = (nu_k + D) / (nu_k + delta_nk / s_k), the M-step has closed forms
mu_k = sum r u x / sum r u and s_k = sum r u ||x - mu_k||^2 / (D sum r) (+ ``reg_covar``), but the
degrees of freedom maximise

    Q_k(nu) = n_k [(nu/2) ln(nu/2) - lnGamma(nu/2)] + (nu/2) [sum_n r_nk (ln u_nk - u_nk)
              + n_k (psi((nu_old + D)/2) - ln((nu_old + D)/2))]

with no closed form: they come from :func:`gmmlimit._gradient.gradient_m_step` (optax L-BFGS on
ln nu, concave in nu), clipped to [``DOF_MIN``, ``DOF_MAX``]. Responsibilities are tempered by beta
like every variant in :mod:`gmmlimit.variants._tempered`; beta = inf is classification EM with
d_nk = -ln t. Frozen labels are not a fixed point here (the scale weights u keep the scales and
degrees of freedom moving), so hard fits stop on the objective: their history holds -J.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, digamma, gammaln

from .._gradient import gradient_m_step
from .._variant import density_scaling
from ._gaussian import centred, check_common, check_variances, init_common, mean_update
from ._tempered import MixtureStats, tempered_variant, update_weights

__all__ = ["DOF_MAX", "DOF_MIN", "StudentTParams", "dof_objective", "student_t"]

DOF_MIN = 0.05
DOF_MAX = 1e4


class StudentTParams(NamedTuple):
    """Parameters of the Student-t mixture.

    Attributes:
        means: (K, D) component locations.
        scales: (K,) spherical scales s_k > 0 (the covariance is s_k nu/(nu - 2) I for nu > 2).
        dofs: (K,) degrees of freedom nu_k > 0 (learned).
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf the hard limit.
        reg_covar: () floor added to every updated scale.
    """

    means: jax.Array
    scales: jax.Array
    dofs: jax.Array
    weights: jax.Array
    beta: jax.Array
    reg_covar: jax.Array


class TMoments(NamedTuple):
    """Weighted moments of one block (``wr = w r``, u the scale-mixture weights).

    Attributes:
        wu: (K,) sum wr u.
        s1: (K, D) sum wr u (x - c).
        s2: (K,) sum wr u ||x - c||^2.
        log_u_minus_u: (K,) sum wr (ln u - u).
    """

    wu: jax.Array
    s1: jax.Array
    s2: jax.Array
    log_u_minus_u: jax.Array


def _delta(params: StudentTParams, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    diff = centred(x, params.means)
    return diff, jnp.sum(diff * diff, axis=2)


def _log_gamma_ratio(a: jax.Array, b: float) -> jax.Array:
    """The log ratio ln Gamma(a + b) - ln Gamma(a), as ln Gamma(b) - ln B(a, b) from a = 8 on.

    The difference of two ln Gamma values cancels at large a: at nu = 2a = 1e8 each is near
    8e8, whose float32 rounding (64) swamps the difference (about 17.7). ``betaln`` computes
    ln B(a, b) = ln Gamma(a) + ln Gamma(b) - ln Gamma(a + b) without forming the large terms
    (scipy's algorithm, an asymptotic series once the larger argument reaches 8).

    Args:
        a: (K,) nu / 2 > 0.
        b: D / 2.

    Returns:
        (K,) the log ratio, in a's dtype.
    """
    b = jnp.asarray(b, a.dtype)
    # below 8, ln Gamma(a) is small: the plain difference cancels nothing and is kept
    return jnp.where(a < 8, gammaln(a + b) - gammaln(a), gammaln(b) - betaln(a, b))


def _divergence(params: StudentTParams, x: jax.Array) -> jax.Array:
    d = x.shape[1]
    nu, s = params.dofs, params.scales
    _, delta = _delta(params, x)
    log_t = (
        _log_gamma_ratio(nu / 2, d / 2)
        # nu s is never formed: it flushes to 0 when a collapsed scale meets a small nu
        - 0.5 * d * (jnp.log(nu) + math.log(math.pi) + jnp.log(s))
        - 0.5 * (nu + d) * jnp.log1p(delta / s / nu)
    )
    return -log_t


def _moments(params: StudentTParams, x: jax.Array, wr: jax.Array) -> TMoments:
    d = x.shape[1]
    diff, delta = _delta(params, x)
    u = (params.dofs + d) / (params.dofs + delta / params.scales)
    wru = wr * u
    return TMoments(
        wu=jnp.sum(wru, axis=0),
        s1=jnp.einsum("bk,bkd->kd", wru, diff, precision=jax.lax.Precision.HIGHEST),
        s2=jnp.sum(wru * delta, axis=0),
        log_u_minus_u=jnp.sum(wr * (jnp.log(u) - u), axis=0),
    )


def dof_objective(
    nu: jax.Array, counts: jax.Array, log_u_minus_u: jax.Array, old_nu: jax.Array, d: int
) -> jax.Array:
    """Q_k(nu) summed over k (the part of the expected log-likelihood that depends on nu).

    Args:
        nu: (K,) candidate degrees of freedom.
        counts: (K,) n_k.
        log_u_minus_u: (K,) sum_n w_n r_nk (ln u_nk - u_nk) at the E-step.
        old_nu: (K,) the E-step's degrees of freedom.
        d: the dimension D.

    Returns:
        Scalar sum_k Q_k(nu_k).
    """
    half = nu / 2
    c_old = digamma((old_nu + d) / 2) - jnp.log((old_nu + d) / 2)
    q = counts * (half * jnp.log(half) - gammaln(half)) + half * (log_u_minus_u + counts * c_old)
    return jnp.sum(q)


def _m_step(params: StudentTParams, stats: MixtureStats) -> StudentTParams:
    # The M-step recomputes functions of the E-step's nu (ln Gamma(nu/2), ln nu, ...) that the
    # divergence computes too. Where both run in one program (the in-memory fit loop), XLA
    # would merge them and move the E-step's per-component constants into other fusions, where
    # the CPU backend contracts other multiply-adds into FMAs: the divergences came out an ulp
    # apart from an E-step compiled alone (the out-of-core pass), in about one float32 E-step
    # in nine. The barrier keeps the M-step's copy apart, so every E-step compiles alike.
    params = jax.lax.optimization_barrier(params)
    m: TMoments = stats.moments
    d = params.means.shape[1]
    means, delta, ok = mean_update(params.means, m.wu, m.s1)
    safe_n = jnp.where(ok, stats.counts, 1.0)
    within = m.s2 - m.wu * jnp.sum(delta * delta, axis=1)
    scale = jnp.maximum(within, 0.0) / (d * safe_n) + params.reg_covar
    scales = jnp.where(ok & jnp.isfinite(scale), scale, params.scales)

    total = stats.total_weight

    def loss(log_nu: jax.Array) -> jax.Array:
        nu = jnp.exp(log_nu)
        return -dof_objective(nu, stats.counts, m.log_u_minus_u, params.dofs, d) / total

    log_nu, _ = gradient_m_step(loss, jnp.log(params.dofs))
    nu = jnp.clip(jnp.exp(log_nu), DOF_MIN, DOF_MAX)
    # clipping may lower Q_k: keep, per component, the better of the old and the new value
    old_q = _per_component_q(params.dofs, stats, m, params.dofs, d)
    new_q = _per_component_q(nu, stats, m, params.dofs, d)
    dofs = jnp.where(ok & jnp.isfinite(new_q) & (new_q >= old_q), nu, params.dofs)
    return params._replace(
        means=means, scales=scales, dofs=dofs, weights=update_weights(params, stats)
    )


def _per_component_q(
    nu: jax.Array, stats: MixtureStats, m: TMoments, old_nu: jax.Array, d: int
) -> jax.Array:
    return jax.vmap(lambda a, b, c, e: dof_objective(a, b, c, e, d))(
        nu, stats.counts, m.log_u_minus_u, old_nu
    )


def _validate(X: jax.Array, params: StudentTParams) -> StudentTParams:
    fields = "means, scales, dofs, weights, beta, reg_covar"
    common = check_common(X, params, StudentTParams, fields)
    k = common["means"].shape[0]
    return StudentTParams(
        scales=check_variances(params.scales, (k,), X.dtype, "scales"),
        dofs=check_variances(params.dofs, (k,), X.dtype, "dofs"),
        **common,
    )


def _init(key: jax.Array, X: jax.Array, k: int) -> StudentTParams:
    """Random rows as means, the data's spread as every component's, equal weights, beta 1."""
    c = init_common(key, X, k)
    return StudentTParams(
        means=c["means"],
        scales=jnp.full((k,), c["variance"]),
        dofs=jnp.full((k,), 5.0, X.dtype),
        weights=c["weights"],
        beta=c["beta"],
        reg_covar=c["reg_covar"],
    )


student_t = tempered_variant(
    "student_t",
    divergence=_divergence,
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.means,
    validate=_validate,
    init=_init,
    hard_stop="objective",
    scaling=density_scaling(location="means", means=1, scales=2, reg_covar=2),
)
"""Student-t mixture, spherical scales, degrees of freedom by a gradient M-step (optax)."""
