"""The mixture-variant abstraction: an immutable bundle of pure functions.

A fit is a loop of E-step -> sufficient statistics -> M-step. A :class:`Variant` says how each of
those is done for one model, on one block of rows at a time; the driver in ``_driver.py`` streams
blocks through it, sums the statistics, and iterates. Soft and hard (small-variance limit) fits use
the same functions: a hard fit is a soft one whose responsibilities are one-hot.

Parameters are arbitrary pytrees (usually a NamedTuple). Continuous hyper-parameters that a study
sweeps, like the isotropic variance ``sigma2``, are leaves of that pytree, so changing them never
recompiles.

Two optional fields make every tool of the toolkit take a variant: ``init`` (parameters from
``(key, X, k)``: restarts, annealing, the scikit-learn wrapper) and ``temperature`` (where the
variant's temperature lives in its parameters and which value is the hard limit: annealing, the
limit diagnostics, sweeps under ``vmap``). A third, ``scaling``, says how the parameters move
when the data are divided by a power of two, so that data past the dtype's scale window are fit
rescaled, exactly, in every fit path.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._offset import translate
from ._validation import check_sigma2, dtype_scope, exact_ldexp, is_traced
from .checks import check_beta

Params = Any
Stats = Any

__all__ = [
    "EStepBlock",
    "Engine",
    "FarPoints",
    "Params",
    "Scaling",
    "Skipping",
    "Stats",
    "Temperature",
    "Variant",
    "at_hard_limit",
    "check_temperature",
    "check_variant",
    "density_scaling",
    "invariant_scaling",
    "log2_shift",
    "temperature_field",
    "translate_field",
    "validated_at",
    "with_engine",
    "with_temperature",
]


class Temperature(NamedTuple):
    """Where a variant's temperature lives in its parameters, and where its hard limit is.

    Attributes:
        name: the parameter's name as users spell it (``"sigma2"``, ``"beta"``).
        get: ``(params) -> scalar``, the current value.
        set: ``(params, value) -> params``, the parameters at another value (traceable: a sweep
            under ``vmap`` batches ``value``).
        hard: the value at the hard limit: ``0.0`` for a variance, ``math.inf`` for an inverse
            temperature. Values move toward it as the fit hardens (annealing schedules run
            toward it; it is their last stage).
    """

    name: str
    get: Callable[[Params], jax.Array]
    set: Callable[[Params, jax.Array], Params]
    hard: float

    def colder(self, a: Any, b: Any) -> Any:
        """Whether temperature ``b`` is strictly closer to the hard limit than ``a`` (NumPy)."""
        return np.asarray(b) < np.asarray(a) if self.hard == 0.0 else np.asarray(b) > np.asarray(a)


def temperature_field(name: str, hard: float) -> Temperature:
    """A :class:`Temperature` stored as the NamedTuple field ``name`` of the parameters.

    Args:
        name: the field, e.g. ``"beta"``.
        hard: its value at the hard limit (``0.0`` or ``math.inf``).

    Returns:
        The :class:`Temperature`.

    Raises:
        ValueError: if ``hard`` is neither 0 nor +inf.
    """
    if hard not in (0.0, math.inf):
        raise ValueError(f"the hard limit of a temperature is 0 or inf; got {hard!r}.")

    def get(params: Params) -> jax.Array:
        return getattr(params, name)

    def set_(params: Params, value: Any) -> Params:
        old = getattr(params, name)
        dtype = old.dtype if hasattr(old, "dtype") else None
        with dtype_scope(dtype):  # a float64 field stays float64 with JAX's x64 mode off
            return params._replace(**{name: jnp.asarray(value, dtype)})

    return Temperature(name=name, get=get, set=set_, hard=float(hard))


class Scaling(NamedTuple):
    """How a model's parameters and objectives move when the data are divided by 2^e.

    Data whose largest magnitude lies outside the dtype's scale window
    (``_validation.SCALE_WINDOW``) overflow or vanish in squared distances and second moments.
    A variant that declares its scaling is fit on X / 2^e instead, with its parameters mapped by
    :attr:`params` (exact powers of two: the same model, the same labels and responsibilities),
    and the results are mapped back. Build one with :func:`density_scaling`.

    Attributes:
        params: ``(params, e) -> params``, the parameters of the problem X / 2^e (``e`` may be
            negative: mapping back is ``params(p, -e)``); traceable, exact (``jnp.ldexp``).
            ``e`` is a Python int for concrete data and a traced () int32 for data under
            ``jit`` or ``vmap`` (every law takes it so).
        objective: ``(value, params, total_weight, d, e) -> value``, the objective (or -J at the
            hard limit) of the original problem from the one computed on X / 2^e; ``params``
            are the original problem's, ``total_weight`` the sum of the weights, ``d`` = D.
        distortion: ``(value, params, total_weight, d, e) -> value``, the same for the hard
            objective J.
        translate: None, or ``(params, offset) -> params``, the parameters of the problem
            X - offset (``offset`` a (D,) array) for a model whose density is a function of
            x - location: the objectives do not change. A variant that declares it fits data
            far from the origin relative to their spread (float32 GPS coordinates) on rows
            translated by an exact offset (``gmmlimit._offset``): squared distances formed as
            ``|x|^2 - 2 m.x + |m|^2`` would cancel. :func:`density_scaling`'s ``location``
            builds it.

    The locations ``Variant.means`` are in the data's units: they scale by 2^e (the tools map
    location gaps so).
    """

    params: Callable[[Params, int], Params]
    objective: Callable[[jax.Array, Params, jax.Array, int, int], jax.Array]
    distortion: Callable[[jax.Array, Params, jax.Array, int, int], jax.Array]
    translate: Callable[[Params, jax.Array], Params] | None = None


def scale_fields(params: Params, e: int, powers: dict[str, int]) -> Params:
    """``params`` with each named NamedTuple field multiplied by 2^(-power e) (exact).

    Args:
        params: a NamedTuple of arrays.
        e: the data's binary exponent (the data are divided by 2^e).
        powers: field name -> the power of the data's scale the field carries (1 for a
            location, 2 for a variance); fields not named are scale-free.
    """
    return params._replace(
        **{
            field: _scaled_field(getattr(params, field), -power * e)
            for field, power in powers.items()
        }
    )


def _scaled_field(value: Any, exponent: int | jax.Array) -> jax.Array:
    """A field times 2^exponent.

    An array of a floating dtype goes through ``exact_ldexp``: exact for subnormal entries and
    results, which XLA on the CPU flushes (float32 locations of data near 2^-135 mapped back
    from X / 2^e by ``jnp.ldexp`` came out 0). A Python number or a weakly typed array keeps
    ``jnp.ldexp`` (and its weak type).
    """
    weak = getattr(getattr(value, "aval", None), "weak_type", False)
    floating = isinstance(value, (np.ndarray, jax.Array)) and jnp.issubdtype(
        value.dtype, jnp.floating
    )
    if floating and not weak:
        return exact_ldexp(value, exponent)
    return jnp.ldexp(value, exponent)


def log2_shift(total_weight: Any, d: int, e: int | jax.Array, dtype: Any) -> jax.Array:
    """W D e ln 2 in ``dtype``: the shift of -ln p of a density on R^D under x -> x / 2^e.

    Computed in ``dtype`` from D e (exact) and ln 2, so a concrete and a traced exponent
    (data under ``jit`` or ``vmap``) give the same bits.
    """
    per_row = jnp.asarray(d * e, dtype) * jnp.asarray(math.log(2.0), dtype)
    return jnp.asarray(total_weight, dtype) * per_row


def density_scaling(location: str | None = None, **powers: int) -> Scaling:
    """The :class:`Scaling` of a density on R^D whose parameters carry the data's units.

    With x' = x / 2^e and each named field scaled by 2^(-power e), the density of x' is
    2^(e D) times that of x, so every per-row log-density, free energy and divergence
    -ln p shifts by the constant e D ln 2: the objective of the original problem is
    ``value' - W D e ln 2`` and its distortion ``value' + W D e ln 2`` (W the total weight).

    Args:
        location: for a density of x - location (a location-scale family: every Gaussian
            variant, Student-t), the name of the location field ((K, D) rows): data far from
            the origin are then fit translated (:attr:`Scaling.translate`). None (default)
            for any other density.
        powers: field name -> power, e.g. ``means=1, variances=2, reg_covar=2``.

    Returns:
        The :class:`Scaling`.

    Example:
        >>> import jax.numpy as jnp
        >>> import gmmlimit.variants as gv
        >>> scaling = gv.density_scaling(means=1, variances=2, reg_covar=2)
        >>> p = gv.DiagParams(jnp.ones((1, 2)), jnp.ones((1, 2)), jnp.ones(1), 1.0, 0.0)
        >>> scaling.params(p, 3).variances.tolist()  # the parameters of X / 2^3
        [[0.015625, 0.015625]]
    """

    def params(p: Params, e: int) -> Params:
        return scale_fields(p, e, powers)

    def objective(value: jax.Array, p: Params, total_weight: jax.Array, d: int, e: int) -> Any:
        return value - log2_shift(total_weight, d, e, value.dtype)

    def distortion(value: jax.Array, p: Params, total_weight: jax.Array, d: int, e: int) -> Any:
        return value + log2_shift(total_weight, d, e, value.dtype)

    if location is not None and not isinstance(location, str):
        raise ValueError(f"location must name the location field; got {location!r}.")
    if location is not None and location in powers and powers[location] != 1:
        raise ValueError(
            f"the location field {location!r} carries the data's units to the power 1; "
            f"got {location}={powers[location]!r}."
        )
    translate = None if location is None else partial(translate_field, field=location)
    return Scaling(params=params, objective=objective, distortion=distortion, translate=translate)


def invariant_scaling(**powers: int) -> Scaling:
    """The :class:`Scaling` of a model whose objective does not move with the data's scale.

    For a scale-invariant divergence (the Itakura-Saito divergence of the Gamma family: d(x / s,
    mu / s) = d(x, mu)), data divided by 2^e with each named field scaled by 2^(-power e) give
    the same divergences, responsibilities and objectives: only the parameters map back.

    Args:
        powers: field name -> power, e.g. ``means=1``.

    Returns:
        The :class:`Scaling` (no translation: such data are positive).
    """

    def params(p: Params, e: int) -> Params:
        return scale_fields(p, e, powers)

    def same(value: jax.Array, p: Params, total_weight: jax.Array, d: int, e: int) -> Any:
        return value

    return Scaling(params=params, objective=same, distortion=same)


def translate_field(params: Params, offset: jax.Array, *, field: str) -> Params:
    """``params`` with the (..., K, D) field ``field`` less the (D,) ``offset``.

    Through ``_offset.translate``: a concrete difference on the host and a feature without an
    offset left as it is, so subnormal locations are not flushed to 0 by XLA on the CPU.
    """
    rows = getattr(params, field)
    return params._replace(**{field: translate(rows, offset)})


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
        objective: ``(params, stats) -> scalar``, higher is better: the log-likelihood or
            tempered free energy. Read at soft temperatures only (at the hard limit the driver
            records -J).
        is_hard: ``(params) -> bool scalar``, whether the fit runs the hard iteration at these
            parameters: the partition stop rule (no label changed), empty-cluster relocation,
            and -J as the objective (``_driver.stop_rule``).
        means: ``(params) -> (K, D)``, the component locations (for the centre-shift criterion).
        relocate: optional ``(params, stats, far: FarPoints) -> stats``; called in hard fits when
            a component is empty, to move it (K-means moves it to the farthest point).
        validate: optional ``(X, params) -> params``, eager checks and dtype casts of the
            parameters against the data, run before any compiled code. It may read only
            ``X.shape`` and ``X.dtype`` (out-of-core fits pass a ``jax.ShapeDtypeStruct``); the
            data's values are ``check_data``'s.
        engine: optional :class:`Engine`, a faster way to compute the same E-step statistics.
            Not part of the model: attach one with :func:`with_engine`; None runs ``e_step``
            then ``sufficient_stats`` block by block.
        init: optional ``(key, X (N, D), k) -> params``, jit-able starting parameters (any
            temperature; tools set it through ``temperature``). Restarts ``vmap`` it over keys.
        temperature: optional :class:`Temperature`: annealing, diagnostics and temperature
            sweeps need it.
        check_data: optional ``(x (n, D) numpy array) -> None``, raising ValueError on data the
            model cannot take (negative counts, rows off the unit sphere, ...). Called on the
            whole data in memory and on every chunk of every pass out of core.
        log_odds_gap: optional ``(params, x (B, D)) -> (B,)``, the gap g_n >= 0 with
            ``|r_nk - onehot_nk| <= (K - 1) exp(-g_n)`` (the score gap to the runner-up scaled
            by the inverse temperature; +inf at the hard limit without ties): the
            responsibility bound of the limit diagnostics.
        scaling: optional :class:`Scaling`: how the parameters and objectives move when the
            data are divided by a power of two. With it, data past the dtype's scale window are
            fit rescaled (exactly) by every fit path; without it (counts, directions, rates:
            models with no such law) they are fit as given.

    The objective is always "higher is better" (log-likelihood or free energy); at the hard limit
    (``is_hard``) the driver records -J, minus the summed distortion ``stats.distortion``, so the
    variant's ``objective`` is only read at soft temperatures. Statistics must expose ``counts``
    (K,) and ``distortion`` () attributes.
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
    engine: Engine | None = None
    init: Callable[[jax.Array, jax.Array, int], Params] | None = None
    temperature: Temperature | None = None
    check_data: Callable[[np.ndarray], None] | None = None
    log_odds_gap: Callable[[Params, jax.Array], jax.Array] | None = None
    scaling: Scaling | None = None

    def __copy__(self) -> Variant:
        return self  # an immutable bundle of pure functions: a copy is the variant itself

    def __deepcopy__(self, memo: dict) -> Variant:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle a variant by reference to the module attribute that holds it.

        Its functions are closures (``tempered_variant``, ``with_engine``), which pickle cannot
        store; a variant held by a module (``gmmlimit.variants.spherical``, a user's
        ``my_module.my_variant``) is stored as that module and name, and unpickles to the same
        object where the module can be imported. Any other variant pickles field by field,
        as a named tuple does (it fails where a field is a closure).
        """
        reference = _module_reference(self)
        if reference is not None:
            return (_variant_at, reference)
        return (type(self), tuple(self))


def _module_reference(variant: Variant) -> tuple[str, str] | None:
    """``(module, name)`` of a module attribute that is ``variant``, or None.

    ``gmmlimit.variants`` is searched first, then every imported module.
    """
    first = sys.modules.get("gmmlimit.variants")
    modules = [("gmmlimit.variants", first), *list(sys.modules.items())]
    for module_name, module in modules:
        namespace = getattr(module, "__dict__", None) if module is not None else None
        for name, value in list((namespace or {}).items()):
            if value is variant:
                return module_name, name
    return None


def _variant_at(module_name: str, name: str) -> Variant:
    """The variant a pickle stored by reference (:meth:`Variant.__reduce__`)."""
    return getattr(importlib.import_module(module_name), name)


class Skipping(NamedTuple):
    """State carried from one pass to the next that lets an engine skip provably unchanged work.

    For example Hamerly's bounds: a row whose label cannot change at the new parameters is not
    compared with every component. The values are those of :attr:`Engine.pass_`, bit for bit;
    only the work differs. The in-memory fit loop carries the state (sharded and out-of-core
    passes do not use it).

    Attributes:
        init: ``(params, x_blocks (n, B, D)) -> state``: a state with which nothing is skipped.
        pass_: ``(params, x_blocks, weight_blocks (n, B), labels (n, B), state) -> (stats,
            labels (n, B), distortion (n, B), state)``: :attr:`Engine.pass_` at ``params``
            (``x_blocks`` in either of its forms),
            given the labels and state that the previous pass (at any parameters) returned
            (labels < 0 before the first pass).
    """

    init: Callable[[Params, jax.Array], Any]
    pass_: Callable[
        [Params, jax.Array, jax.Array, jax.Array, Any], tuple[Stats, jax.Array, jax.Array, Any]
    ]


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
            kernel call). ``x_blocks`` may also be the blocks' (M, D) first rows, read in place
            (the rest is padding: repeats of row 0 with weight 0; see
            :func:`gmmlimit._driver.engine_rows`); the same values either way.
        skipping: optional :class:`Skipping`: ``pass_`` with state that lets it skip work the
            previous pass proves unchanged (used by the in-memory fit loop).
    """

    block: Callable[[Params, jax.Array, jax.Array], tuple[Stats, jax.Array, jax.Array]]
    pass_: Callable[[Params, jax.Array, jax.Array], tuple[Stats, jax.Array, jax.Array]]
    skipping: Skipping | None = None


def with_engine(variant: Variant, engine: Engine) -> Variant:
    """The same variant, its E-step computed by ``engine``.

    Args:
        variant: the model (its semantic functions).
        engine: the fast E-step.

    Returns:
        A :class:`Variant` equal to ``variant`` but for its ``engine``.
    """
    return variant._replace(engine=engine)


def with_temperature(variant: Variant, params: Params, value: Any) -> Params:
    """``params`` at temperature ``value`` (traceable).

    The result must have the parameters' pytree and leaf shapes (:func:`check_same_form`; the
    dtypes are ``validate``'s to set), but for the temperature itself: a field given as None,
    or of another shape than ``value``'s, may come back as ``value``.

    Raises:
        ValueError: if the variant declares no temperature, or its ``temperature.set`` returns
            parameters of another form.
    """
    if variant.temperature is None:
        raise ValueError(
            f"variant {variant.name!r} declares no temperature (Variant.temperature); this tool "
            "needs one."
        )
    new = variant.temperature.set(params, value)
    check_same_form(variant, "temperature.set", params, new, dtypes=False, settled=jnp.shape(value))
    return new


def check_temperature(variant: Variant, temperature: Any, dtype: Any) -> None:
    """Refuse a given temperature before any compiled code: as the variant's parameters would.

    An inverse temperature (hard limit inf) must lie in (0, inf] and a variance (hard limit 0)
    in [0, inf), each a normal number of the data's dtype or its hard limit exactly: once cast
    to the dtype, a value past its range would become the hard limit silently.

    Raises:
        ValueError: if the variant declares no temperature, or the value is not one of its
            temperatures in ``dtype``.
    """
    if temperature is None or is_traced(temperature):
        return
    if variant.temperature is None:
        with_temperature(variant, None, temperature)  # raises, naming the variant
    name, hard = variant.temperature.name, variant.temperature.hard
    if hard == math.inf:
        check_beta(temperature, dtype, name=name)
    elif hard == 0.0:
        check_sigma2(temperature, dtype, name=name)


def at_hard_limit(variant: Variant, params: Params) -> jax.Array:
    """Whether ``params`` sit at the variant's hard limit (a traced bool scalar).

    Read from the temperature when the variant declares one, else from ``is_hard``.
    """
    if variant.temperature is None:
        return jnp.asarray(variant.is_hard(params))
    return variant.temperature.get(params) == variant.temperature.hard


def _weak(leaf: Any) -> bool:
    """Whether a leaf is weakly typed (a Python number, or an array made from one)."""
    if isinstance(leaf, bool | int | float | complex):
        return True
    return bool(getattr(getattr(leaf, "aval", None), "weak_type", False))


def _form(leaf: Any) -> tuple[tuple[int, ...], Any]:
    """A leaf's static form: its shape and dtype (a Python number's as JAX would hold it)."""
    return jnp.shape(leaf), jnp.result_type(leaf)


def _mismatch(
    before: Any, after: Any, *, dtypes: bool = True, settled: tuple[int, ...] | None = None
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]] | None:
    """The first leaf whose form differs between two pytrees of one structure, or None.

    Args:
        before: the reference pytree.
        after: a pytree of the same structure (with ``settled``: None leaves of ``before``
            count as leaves, and may hold anything in ``after``).
        dtypes: compare dtypes as well as shapes.
        settled: None, or a shape any leaf may take whatever it was (a value set into it).

    Returns:
        ``(path, was, got)``: the leaf's path (``jax.tree_util.keystr``) and its two forms
        (shape, and dtype when ``dtypes``), or None where every leaf has the same form.
    """
    is_leaf = None if settled is None else (lambda leaf: leaf is None)
    paths = jax.tree_util.tree_flatten_with_path(before, is_leaf=is_leaf)[0]
    for (path, old), new in zip(paths, jax.tree.leaves(after, is_leaf=is_leaf), strict=True):
        if settled is not None and (old is None or jnp.shape(new) == settled):
            continue
        was, got = _form(old)[: 1 + dtypes], _form(new)[: 1 + dtypes]
        if was != got:
            return jax.tree_util.keystr(path), was, got
    return None


def _words(form: tuple[Any, ...]) -> str:
    """A leaf's form as a message prints it: ``(2, 2) float64``."""
    return " ".join(str(part) for part in form)


def check_same_form(
    variant: Variant,
    function: str,
    before: Any,
    after: Any,
    *,
    kind: str = "parameters",
    root: str = "params",
    dtypes: bool = True,
    settled: tuple[int, ...] | None = None,
) -> None:
    """Refuse a function's result whose form (pytree, leaf shapes and dtypes) is not its input's.

    The fit loops carry parameters and statistics from one step to the next, so a function that
    maps them (``m_step``, ``relocate``, ``temperature.set``) must return them in the form it was
    given; otherwise JAX reports a carry or branch mismatch that names neither the variant nor
    the function, or a later function fails on a tuple where it expected the variant's
    NamedTuple. Static: only the forms are read.

    Args:
        variant: the mixture variant.
        function: the function's name as the message prints it (``"m_step"``).
        before: its input (parameters or statistics).
        after: what it returned.
        kind: what ``before`` is, in words.
        root: the name the message prints before a leaf's path.
        dtypes: compare dtypes as well as shapes.
        settled: None, or the shape of a value the function set (``temperature.set``): a leaf
            given as None, or of another shape, may come back in it.

    Raises:
        ValueError: naming the variant, the function, and the structure or first leaf that
            changed.
    """
    is_leaf = None if settled is None else (lambda leaf: leaf is None)
    expected = jax.tree.structure(before, is_leaf=is_leaf)
    got = jax.tree.structure(after, is_leaf=is_leaf)
    if expected != got:
        raise ValueError(
            f"the {function} of variant {variant.name!r} must return its {kind} in the form it "
            f"was given ({expected}); it returned {got}."
        )
    bad = _mismatch(before, after, dtypes=dtypes, settled=settled)
    if bad is not None:
        path, was, now = bad
        what = "shape and dtype" if dtypes else "shape"
        raise ValueError(
            f"the {function} of variant {variant.name!r} must keep every {kind[:-1]}'s {what}: "
            f"{root}{path} was {_words(was)}, it returned {_words(now)}."
        )


def checked_means(variant: Variant, params: Params, d: int, dtype: Any) -> jax.Array:
    """``variant.means(params)``, checked (statically) to be (K, D) locations of the data's dtype.

    The driver reads K from the locations (the E-step's and statistics' shapes are checked
    against it) and measures a hard fit's centre shift on them; locations of another width or
    dtype would otherwise fail inside a user's divergence with a broadcasting error, or be
    returned as ``FitResult.means`` without a word.

    Args:
        variant: the mixture variant.
        params: its parameters.
        d: the data's number of features D.
        dtype: the data's dtype.

    Returns:
        The (K, D) locations.

    Raises:
        ValueError: naming the variant, the shape and dtype expected and those returned.
    """
    means = variant.means(params)
    shape, got = _form(means)
    if len(shape) != 2 or shape[1] != d or got != jnp.dtype(dtype):
        raise ValueError(
            f"the means of variant {variant.name!r} must return (K, D) component locations with "
            f"D = {d} (the data's features) in the data's dtype {jnp.dtype(dtype)}; it returned "
            f"shape {shape} {got}."
        )
    return means


def checked_e_step(variant: Variant, params: Params, x: jax.Array) -> EStepBlock:
    """``variant.e_step(params, x)``, its shapes checked while it is traced.

    A user's E-step of the wrong shape would otherwise fail deep inside the driver with a
    broadcasting error that names neither the variant nor the function (or, where the shapes
    happen to broadcast, fit a wrong model without a word). The check reads static shapes only:
    the compiled program is unchanged. The locations (:func:`checked_means`) are checked first:
    K is read from them.

    Args:
        variant: the mixture variant.
        params: its parameters.
        x: (B, D) rows.

    Returns:
        The :class:`EStepBlock`.

    Raises:
        ValueError: naming the variant, the field and the shape it should have.
    """
    k = checked_means(variant, params, x.shape[1], x.dtype).shape[0]
    estep = variant.e_step(params, x)
    b = x.shape[0]
    expected = {"resp": (b, k), "labels": (b,), "log_lik": (b,), "distortion": (b,)}
    for field, shape in expected.items():
        got = jnp.shape(getattr(estep, field, None))
        if got != shape:
            raise ValueError(
                f"the e_step of variant {variant.name!r} must return {field} of shape {shape} "
                f"for a block of B = {b} rows and K = {k} components (the rows of its means); "
                f"it returned shape {got}."
            )
    return estep


def check_stats(variant: Variant, stats: Stats, k: int, dtype: Any) -> None:
    """Refuse a block's statistics without (K,) ``counts`` and () ``distortion`` in the dtype.

    The driver reads ``counts`` (empty components) and ``distortion`` (J, the hard objective)
    from every variant's statistics, and sums every leaf over blocks: a floating leaf in another
    dtype than the data's would compute the fit in that precision without a word.

    Args:
        variant: the mixture variant.
        stats: the statistics of one block (their static forms are read).
        k: the number of components.
        dtype: the data's dtype.

    Raises:
        ValueError: naming the variant, the statistic, its expected and returned form.
    """
    for field, shape in (("counts", (k,)), ("distortion", ())):
        if not hasattr(stats, field):
            raise ValueError(
                f"the sufficient_stats of variant {variant.name!r} must return statistics with "
                f"a {field} attribute of shape {shape}; it returned {type(stats).__name__}."
            )
        got = jnp.shape(getattr(stats, field))
        if got != shape:
            raise ValueError(
                f"the sufficient_stats of variant {variant.name!r} must return stats.{field} of "
                f"shape {shape} (K = {k} components); it returned shape {got}."
            )
    for path, leaf in jax.tree_util.tree_flatten_with_path(stats)[0]:
        got = jnp.result_type(leaf)
        if _weak(leaf):  # a Python number: JAX casts it to the data's dtype
            continue
        if jnp.issubdtype(got, jnp.floating) and got != jnp.dtype(dtype):
            raise ValueError(
                f"the sufficient statistics of variant {variant.name!r} (sufficient_stats; a "
                f"tempered variant's moments) must be in the data's dtype {jnp.dtype(dtype)}: "
                f"stats{jax.tree_util.keystr(path)} is {jnp.shape(leaf)} {got}."
            )


def checked_sufficient_stats(
    variant: Variant, params: Params, x: jax.Array, w: jax.Array, estep: EStepBlock
) -> Stats:
    """``variant.sufficient_stats(x, w, estep)``, its form checked while it is traced.

    Beside :func:`check_stats`, the statistics must be sums over the block's rows: the driver
    adds them block by block, so a statistic left per row ((B, D) moments that were never
    summed) would fail in the M-step with a broadcasting error, or, where B happens to equal K,
    fit a wrong model silently. Each leaf's shape is compared with the statistics of a block of
    B + 1 rows, traced abstractly (``jax.eval_shape``: nothing is added to the compiled program).

    Args:
        variant: the mixture variant.
        params: the E-step's parameters.
        x: (B, D) rows.
        w: (B,) their weights.
        estep: the E-step of the block.

    Returns:
        The statistics.

    Raises:
        ValueError: naming the variant and the statistic whose form is wrong.
    """
    stats = variant.sufficient_stats(x, w, estep)
    k = jnp.shape(estep.resp)[1]
    check_stats(variant, stats, k, x.dtype)
    b, d = x.shape

    def block(p: Params, rows: jax.Array, weights: jax.Array) -> Stats:
        return variant.sufficient_stats(rows, weights, variant.e_step(p, rows))

    wider = jax.eval_shape(
        block,
        params,
        jax.ShapeDtypeStruct((b + 1, d), x.dtype),
        jax.ShapeDtypeStruct((b + 1,), w.dtype),
    )
    bad = _mismatch(stats, wider, dtypes=False)
    if bad is not None:
        path, was, now = bad
        raise ValueError(
            f"the sufficient statistics of variant {variant.name!r} (sufficient_stats; a "
            "tempered variant's moments) must be sums over the block's rows, of one shape "
            f"whatever the block size: stats{path} has shape {was[0]} for a block of B = {b} "
            f"rows and {now[0]} for B = {b + 1}."
        )
    return stats


def abstract(a: Any) -> jax.ShapeDtypeStruct:
    """``a``'s shape, dtype and weak type (of an array or a tracer), as a hashable struct.

    What the shape caches (of a variant's init, of its block statistics) are keyed on.
    """
    aval = jax.typeof(a)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


def checked_scalar(variant: Variant, function: str, value: Any) -> Any:
    """``value``, refused unless it is a scalar (the ``objective``'s or ``is_hard``'s result).

    Raises:
        ValueError: naming the variant, the function and the shape it returned.
    """
    if jnp.shape(value) != ():
        raise ValueError(
            f"the {function} of variant {variant.name!r} must return a scalar (shape ()); it "
            f"returned shape {jnp.shape(value)}."
        )
    return value


def checked_is_hard(variant: Variant, params: Params) -> Any:
    """``variant.is_hard(params)``, checked to be a scalar (static)."""
    return checked_scalar(variant, "is_hard", variant.is_hard(params))


def checked_m_step(variant: Variant, params: Params, stats: Stats) -> Params:
    """``variant.m_step(params, stats)``, checked while traced to keep the parameters' form.

    The fit loops carry the parameters from one iteration to the next, so the M-step must return
    the same pytree (type, fields) with every leaf of the same shape and dtype
    (:func:`check_same_form`).

    Raises:
        ValueError: naming the variant and the first leaf whose form changed.
    """
    new = variant.m_step(params, stats)
    check_same_form(variant, "m_step", params, new)
    return new


def checked_validate(variant: Variant, X: Any, params: Params) -> Params:
    """``variant.validate(X, params)`` (eager), refused where it does not return parameters.

    A ``validate`` that only checks (and returns None), or returns a plain tuple of a
    NamedTuple's fields, would otherwise fail in a later function with "'NoneType' object has
    no attribute ...". Any other change of form is the validate's to make: filling a field given
    as None, or turning a plain tuple into the variant's NamedTuple. A variant without
    ``validate`` gets its parameters back as given.

    Args:
        variant: the mixture variant.
        X: the data, or a ``jax.ShapeDtypeStruct`` of them.
        params: the given parameters.

    Returns:
        The validated parameters.

    Raises:
        ValueError: naming the variant, the type given and the value returned.
    """
    if variant.validate is None:
        return params
    checked = variant.validate(X, params)
    named = hasattr(params, "_fields")  # a NamedTuple: its functions read the fields by name
    if checked is None or (named and not isinstance(checked, type(params))):
        raise ValueError(
            f"the validate of variant {variant.name!r} must return the checked parameters (a "
            f"{type(params).__name__}, as it was given); it returned {type(checked).__name__}."
        )
    return checked


def validated_at(variant: Variant, X: Any, params: Params, temperature: Any) -> Params:
    """``params`` at ``temperature``, validated for ``X``: a stage of a schedule, a sweep's point.

    :func:`with_temperature`, then :func:`checked_validate` (eager, before any compiled code).
    """
    return checked_validate(variant, X, with_temperature(variant, params, temperature))


def check_variant(variant: Any, *, needs: tuple[str, ...] = ()) -> Variant:
    """Validate a :class:`Variant` argument (eager, before any compiled code).

    Args:
        variant: the value passed as a variant.
        needs: optional fields the calling tool requires (``"init"``, ``"temperature"``, ...).

    Returns:
        The variant.

    Raises:
        ValueError: if ``variant`` is not a Variant (e.g. a name string) or lacks a required
            field.
    """
    if not isinstance(variant, Variant):
        hint = " (pass the Variant object, e.g. gmmlimit.variants.poisson)" * isinstance(
            variant, str
        )
        raise ValueError(f"variant must be a gmmlimit.Variant{hint}; got {variant!r}.")
    for field in needs:
        if getattr(variant, field) is None:
            raise ValueError(
                f"variant {variant.name!r} has no {field!r} (Variant.{field}); this tool needs "
                "one (docs/variants.md)."
            )
    return variant
