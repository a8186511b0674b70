"""Whether two means lie within a distance, decided without squaring a number out of range.

Squared distances of means near 1e-160 (float64) or 1e-20 (float32) underflow to 0, those of
means near 1e200 or 1e30 overflow; and XLA on the CPU flushes subnormal inputs of floating-point
operations to 0. Here every number is split exactly into a mantissa and an integer exponent read
from its bits, and the comparison runs on mantissas at one common power of two.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["within_distance"]


_SHIFT_LIMIT = 100
"""Largest power-of-two shift applied to a mantissa in :func:`within_distance` (2^-100 keeps a
float32 mantissa's bits normal; a part 2^-100 below another is far below either dtype's
rounding)."""


_ZERO_EXPONENT = -(1 << 20)
"""The exponent :func:`_unit_exponent` gives 0: below every finite number's (about -1074)."""


def _unit_exponent(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The exact split x = f * 2^e, f in +-[0.5, 1) or 0, of every finite x (subnormals too).

    Read from the bits with integer operations only: XLA on the CPU flushes subnormal inputs of
    floating-point operations to 0, and ``jnp.frexp`` and ``jnp.ldexp`` return them unchanged.

    Args:
        x: (...) finite float32 or float64 values.

    Returns:
        ``(f, e)``: (...) mantissas in x's dtype and (...) int32 exponents (a large negative
        number where x is 0).
    """
    info = jnp.finfo(x.dtype)
    bits_dtype = jnp.uint64 if info.bits == 64 else jnp.uint32
    mant, bias = info.nmant, info.maxexp - 1
    exp_mask = (1 << info.nexp) - 1
    bits = lax.bitcast_convert_type(x, bits_dtype)
    negative = (bits >> (info.bits - 1)) == 1
    biased = ((bits >> mant) & exp_mask).astype(jnp.int32)
    fraction = bits & ((1 << mant) - 1)
    significand = jnp.where(biased > 0, fraction | (1 << mant), fraction)
    # the integer significand as a float is exact and normal (or 0): its own exponent field
    # places it in [0.5, 1)
    whole = lax.bitcast_convert_type(significand.astype(x.dtype), bits_dtype)
    whole_exponent = ((whole >> mant) & exp_mask).astype(jnp.int32) - (bias - 1)
    unit = lax.bitcast_convert_type(
        (whole & ((1 << mant) - 1)) | bits_dtype(bias - 1) << mant, x.dtype
    )
    zero = significand == 0
    f = jnp.where(zero, 0.0, jnp.where(negative, -unit, unit)).astype(x.dtype)
    e = whole_exponent + jnp.maximum(biased, 1) - bias - mant
    return f, jnp.where(zero, _ZERO_EXPONENT, e)


def _power_of_two(exponent: jax.Array, dtype: Any) -> jax.Array:
    """2^exponent in ``dtype`` for int32 exponents in [-_SHIFT_LIMIT, _SHIFT_LIMIT] (exact)."""
    info = jnp.finfo(dtype)
    bits_dtype = jnp.uint64 if info.bits == 64 else jnp.uint32
    biased = (exponent + (info.maxexp - 1)).astype(bits_dtype)
    return lax.bitcast_convert_type(biased << info.nmant, dtype)


def _scaled_by(f: jax.Array, shift: jax.Array) -> jax.Array:
    """The product f * 2^shift for mantissas |f| < 2 and shifts <= 0 (below -100: -100).

    Exact (the product stays a normal number); where the shift is clipped, f * 2^shift is
    below 2^-100 of the part it is compared or summed with, far below the rounding of either.
    """
    clipped = jnp.clip(shift, -_SHIFT_LIMIT, 0)
    return f * _power_of_two(clipped, f.dtype)


def within_distance(means: jax.Array, tol: jax.Array) -> jax.Array:
    """(K, K) bool: ||mu_i - mu_j|| <= tol, decided without overflow, underflow or subnormals.

    Every number is split exactly into a mantissa in [0.5, 1) and an integer exponent
    (:func:`_unit_exponent`), so the comparison never squares a number outside [2^-200, 4D]:
    each coordinate difference is formed at the pair's common power of two (exact where
    representable, rounded once otherwise), the distance's square is summed at the power of
    two of its largest coordinate, and tol is compared at that same power. Identical means are
    linked at every tol >= 0 and distinct means at no tol = 0; otherwise the relation is the
    exact one up to the rounding of a D-term sum of squares.
    """
    f, e = _unit_exponent(means)  # (K, D)
    fi, ei, fj, ej = f[:, None, :], e[:, None, :], f[None, :, :], e[None, :, :]
    top = jnp.maximum(ei, ej)
    diff = _scaled_by(fi, ei - top) - _scaled_by(fj, ej - top)  # |diff| <= 2, normal or 0
    fd, ed = _unit_exponent(diff)
    ed = jnp.where(fd == 0, _ZERO_EXPONENT, ed + top)
    largest = jnp.max(ed, axis=-1)  # (K, K) the largest coordinate difference's exponent
    parts = _scaled_by(fd, ed - largest[..., None])
    sq = jnp.sum(parts * parts, axis=-1)  # in [1/4, D) unless the means are identical
    ft, et = _unit_exponent(jnp.asarray(tol, means.dtype))
    # tol at the distance's power of two; past 2^60 it exceeds every sqrt(sq) (D < 2^118)
    shift = jnp.clip(et - largest, -_SHIFT_LIMIT, 60)
    scaled_tol = ft * _power_of_two(shift, means.dtype)
    identical = largest == _ZERO_EXPONENT
    # a tol clipped at 2^-100 of the largest coordinate difference stays below it
    return identical | (sq <= scaled_tol * scaled_tol)
