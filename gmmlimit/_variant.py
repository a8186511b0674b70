"""The mixture-variant abstraction: an immutable bundle of pure functions.

A fit is a loop of E-step -> sufficient statistics -> M-step. A :class:`Variant` says how each of
those is done for one model, on one block of rows at a time; the driver in ``_driver.py`` streams
blocks through it, sums the statistics, and iterates. Soft and hard (small-variance limit) fits use
the same functions: a hard fit is a soft one whose responsibilities are one-hot.

Parameters are arbitrary pytrees (usually a NamedTuple). Continuous hyper-parameters that a study
sweeps, like the isotropic variance ``sigma2``, are leaves of that pytree, so changing them never
recompiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Params = Any
Stats = Any

__all__ = ["EStepBlock", "Engine", "FarPoints", "Params", "Stats", "Variant", "with_engine"]


class EStepBlock(NamedTuple):
    """What a variant's E-step returns for one block of B rows.

    Attributes:
        resp: (B, K) responsibilities; each row sums to one, one-hot in a hard limit.
        labels: (B,) int32 index of the most responsible component (ties: lowest index).
        log_lik: (B,) per-row log-likelihood (0 where it is not finite, i.e. in a hard limit).
        distortion: (B,) per-row hard cost: the divergence to the assigned component
            (squared Euclidean distance for Gaussian variants).
    """

    resp: jax.Array
    labels: jax.Array
    log_lik: jax.Array
    distortion: jax.Array


class FarPoints(NamedTuple):
    """The K rows farthest from their assigned components, for empty-cluster relocation.

    Attributes:
        x: (K, D) the rows, in decreasing order of distortion.
        weight: (K,) their sample weights.
        label: (K,) int32 their current labels.
        valid: (K,) bool, False for slots that do not hold a real row (N < K padding).
    """

    x: jax.Array
    weight: jax.Array
    label: jax.Array
    valid: jax.Array


class Variant(NamedTuple):
    """A mixture variant, written as pure functions (optax-style).

    All functions must be jit-able. ``B`` is a block of rows, ``K`` the number of components,
    ``D`` the dimension. Statistics are a pytree of arrays that the driver sums over blocks with
    ``+``; it must expose a ``counts`` (K,) leaf-attribute (the total responsibility of each
    component), used for empty-component handling.

    Attributes:
        name: a short identifier, e.g. ``"isotropic"``.
        e_step: ``(params, x_block (B, D)) -> EStepBlock``.
        sufficient_stats: ``(x_block (B, D), weight_block (B,), estep: EStepBlock) -> Stats``,
            weighted statistics of one block (rows with weight 0 must contribute nothing).
        m_step: ``(params, stats) -> params``, the new parameters from the summed statistics.
        objective: ``(params, stats) -> scalar``, the value recorded in the history: the
            log-likelihood for soft fits, the distortion for hard ones.
        is_hard: ``(params) -> bool scalar``, whether these parameters are at the hard limit.
            Hard fits stop when no label changes; soft fits when the objective gain is small.
        means: ``(params) -> (K, D)``, the component locations (for the centre-shift criterion).
        relocate: optional ``(params, stats, far: FarPoints) -> stats``; called in hard fits when
            a component is empty, to move it (K-means moves it to the farthest point).
        validate: optional ``(X, params) -> params``, eager checks and dtype casts of the
            parameters against the data, run before any compiled code.
        maximize: whether the objective is maximised (log-likelihood) when soft. Hard objectives
            (distortions) are always minimised.
        engine: optional :class:`Engine`, a faster way to compute the same E-step statistics.
            Not part of the model: attach one with :func:`with_engine`; None runs ``e_step``
            then ``sufficient_stats`` block by block.
    """

    name: str
    e_step: Callable[[Params, jax.Array], EStepBlock]
    sufficient_stats: Callable[[jax.Array, jax.Array, EStepBlock], Stats]
    m_step: Callable[[Params, Stats], Params]
    objective: Callable[[Params, Stats], jax.Array]
    is_hard: Callable[[Params], jax.Array]
    means: Callable[[Params], jax.Array]
    relocate: Callable[[Params, Stats, FarPoints], Stats] | None = None
    validate: Callable[[jax.Array, Params], Params] | None = None
    maximize: bool = True
    engine: Engine | None = None


class Engine(NamedTuple):
    """How a variant's streamed E-step is computed fast (attached with :func:`with_engine`).

    An engine computes what the variant's own functions define, up to rounding: the statistics
    ``sufficient_stats(x, w, e_step(params, x))`` with that E-step's labels and distortion,
    without materialising (B, K) responsibilities, and possibly through compiled kernels.

    Attributes:
        block: ``(params, x_block (B, D), weight_block (B,)) -> (stats, labels (B,), distortion
            (B,))``, one block.
        pass_: ``(params, x_blocks (n, B, D), weight_blocks (n, B)) -> (stats, labels (n, B),
            distortion (n, B))``, a whole streamed E-step: the blocks' statistics added in block
            order, equal to scanning ``block`` over the blocks (so all blocks can go to one
            kernel call).
    """

    block: Callable[[Params, jax.Array, jax.Array], tuple[Stats, jax.Array, jax.Array]]
    pass_: Callable[[Params, jax.Array, jax.Array], tuple[Stats, jax.Array, jax.Array]]


def with_engine(variant: Variant, engine: Engine) -> Variant:
    """The same variant, its E-step computed by ``engine``.

    Args:
        variant: the model (its semantic functions).
        engine: the fast E-step.

    Returns:
        A :class:`Variant` equal to ``variant`` but for its ``engine``.
    """
    return variant._replace(engine=engine)
