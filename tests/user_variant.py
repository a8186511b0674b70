"""The sources of variants written outside the package, as a user would, from docs/variants.md.

A shared-variance Gaussian mixture whose divergence expands |x - m|^2 (``LOCATION_SOURCE``), and
an exponential mixture (rate per feature; beta = inf: Itakura-Saito hard clustering of the
means), both using only public names (``gmmlimit.variants``, ``gmmlimit.checks``). Tests write
one, with lines of their own appended, into a temporary folder and import it from there.
"""

import sys
from pathlib import Path

EXPONENTIAL_SOURCE = '''
"""An exponential mixture written outside the package (public names only)."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gmmlimit.checks import (
    check_array, check_beta, check_k, check_mixing_weights, check_positive_data,
)
from gmmlimit.variants import MixtureStats, distinct_rows, tempered_variant, update_weights


class ExpParams(NamedTuple):
    means: jax.Array
    weights: jax.Array
    beta: jax.Array


def divergence(params, x):
    ratio = jnp.matmul(x, (1.0 / params.means).T, precision=lax.Precision.HIGHEST)
    logs = jnp.sum(jnp.log(params.means), 1)[None, :] - jnp.sum(jnp.log(x), 1)[:, None]
    return jnp.maximum(ratio + logs - x.shape[1], 0.0)


def moments(params, x, wr):
    return lax.dot_general(wr, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


def m_step(params, stats: MixtureStats):
    means = stats.moments / jnp.maximum(stats.counts, 1e-300)[:, None]
    ok = (stats.counts > 0)[:, None] & jnp.isfinite(means) & (means > 0)
    means = jnp.where(ok, means, params.means)
    return params._replace(means=means, weights=update_weights(params, stats))


def validate(X, params):
    k = np.shape(params.means)[0]
    check_k(k, X.shape[0])
    return ExpParams(
        check_array(params.means, (k, X.shape[1]), X.dtype, "means", positive=True),
        check_mixing_weights(params.weights, k, X.dtype),
        check_beta(params.beta, X.dtype),
    )


def init(key, X, k):
    means = 0.5 * distinct_rows(key, X, k) + 0.5 * jnp.mean(X, 0)
    return ExpParams(means, jnp.full((k,), 1.0 / k, X.dtype), jnp.ones((), X.dtype))


exponential = tempered_variant(
    "exponential", divergence=divergence, moments=moments, m_step=m_step,
    means=lambda p: p.means, validate=validate, init=init, check_data=check_positive_data,
)

'''


LOCATION_SOURCE = '''
"""A shared-variance Gaussian mixture written outside the package (public names only).

Its divergence expands |x - m|^2 as |x|^2 - 2 m.x + |m|^2, as a user would write it, which
cancels for rows far from the origin; its scaling names the location field, so every tool fits
such rows translated by an exact offset.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gmmlimit.checks import (
    check_array, check_beta, check_k, check_mixing_weights, check_positive_scalar,
)
from gmmlimit.variants import (
    density_scaling, distinct_rows, tempered_variant, update_weights,
)


class SharedParams(NamedTuple):
    means: jax.Array
    weights: jax.Array
    variance: jax.Array
    beta: jax.Array


def divergence(params, x):
    cross = jnp.matmul(x, params.means.T, precision=lax.Precision.HIGHEST)
    square = jnp.sum(x * x, 1)[:, None] - 2.0 * cross + jnp.sum(params.means**2, 1)[None, :]
    log_norm = 0.5 * x.shape[1] * jnp.log(2.0 * jnp.pi * params.variance)
    return jnp.maximum(square, 0.0) / (2.0 * params.variance) + log_norm


def moments(params, x, wr):
    return lax.dot_general(wr, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


def m_step(params, stats):
    occupied = stats.counts > 0
    means = stats.moments / jnp.where(occupied, stats.counts, 1.0)[:, None]
    means = jnp.where(occupied[:, None], means, params.means)
    return params._replace(means=means, weights=update_weights(params, stats))


def validate(X, params):
    k = np.shape(params.means)[0]
    check_k(k, X.shape[0])
    return SharedParams(
        check_array(params.means, (k, X.shape[1]), X.dtype, "means"),
        check_mixing_weights(params.weights, k, X.dtype),
        check_positive_scalar(params.variance, X.dtype, "variance"),
        check_beta(params.beta, X.dtype),
    )


def init(key, X, k):
    variance = jnp.mean(jnp.var(X, axis=0)) / k
    return SharedParams(
        distinct_rows(key, X, k), jnp.full((k,), 1.0 / k, X.dtype), variance,
        jnp.ones((), X.dtype),
    )


shared_gaussian = tempered_variant(
    "shared_gaussian", divergence=divergence, moments=moments, m_step=m_step,
    means=lambda p: p.means, validate=validate, init=init,
    scaling=density_scaling(location="means", means=1, variance=2),
)
'''


def write_module(
    folder: Path, extra: str = "", name: str = "my_variants", source: str = EXPONENTIAL_SOURCE
) -> str:
    """Write a variant's module (``source`` plus ``extra`` lines) into ``folder``; returns its
    name."""
    (folder / f"{name}.py").write_text(source + extra)
    return name


def forget_module(name: str = "my_variants") -> None:
    """Drop the module from ``sys.modules`` so the next test imports its own copy."""
    sys.modules.pop(name, None)
