"""A scikit-learn estimator wrapping any variant: fit / predict / predict_proba / score.

``VariantMixture(gmmlimit.variants.poisson, 3, temperature=np.inf)`` fits the variant with the one
driver (restarts from the variant's own ``init``, the best kept) and then behaves like any
scikit-learn clusterer and density model: pipelines, ``GridSearchCV`` over the temperature (it is
an ordinary hyper-parameter; ``score`` is the mean objective per unit weight, higher is better at
every temperature), ``clone``.

Randomness: ``random_state`` (None, an int or a ``numpy.random.RandomState``) becomes one integer
seed through ``sklearn.utils.check_random_state`` and then one explicit ``jax.random.key``.
Compilation: one program per data shape (rows are not padded: a padding row would have to be
data every variant accepts). ``predict``, ``predict_proba`` and ``score`` share one program and
materialise (N, K) responsibilities, as scikit-learn's mixtures do.

Validation: ``fit``, ``predict``, ``predict_proba`` and ``score`` first pass X through
scikit-learn's ``validate_data`` (as the project's ``KMeans`` and ``GaussianMixture`` do), so
sparse, complex, 1-D and empty input are refused with scikit-learn's messages, object arrays of
numbers are read as float64, and inference checks ``n_features_in_`` (and ``feature_names_in_``).
The dtype is kept (float32 stays float32, float64 stays float64 whatever JAX's x64 flag says;
integers and booleans become float64), and NaN or inf, the variant's ``check_data`` and the
weights are then refused by the project's own checks, with their own messages.

scikit-learn's estimator checks: all pass except
``check_sample_weight_equivalence_on_dense_data``, declared in :data:`EXPECTED_FAILED_CHECKS`
(pass it as ``check_estimator(..., expected_failed_checks=EXPECTED_FAILED_CHECKS)`` or to
``parametrize_with_checks``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._api import restarts
from ._driver import fit_objective
from ._validation import (
    as_data,
    check_positive_int,
    weights_or_ones,
    with_float64_scope,
)
from ._variant import Params, Variant, check_variant
from ._variant_scale import variant_fit_map, variant_objective, variant_params

__all__ = ["EXPECTED_FAILED_CHECKS", "VariantMixture"]

EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_sample_weight_equivalence_on_dense_data": (
        "a variant's init(key, X, k) sees rows, not weights: it draws its starting rows "
        "uniformly (zero-weight rows included) and its starting spread unweighted, so weighted "
        "and repeated rows start, and may end, elsewhere (from one start the EM is equivalent)"
    ),
}
"""The scikit-learn estimator checks ``VariantMixture`` is expected to fail, with the reason.

Pass it as the ``expected_failed_checks`` argument of ``check_estimator`` or (as a callable)
``parametrize_with_checks`` (``sklearn.utils.estimator_checks``, scikit-learn >= 1.6, where the
``_xfail_checks`` tag is gone; scikit-learn declares its own estimators' the same way)."""


class VariantMixture(ClusterMixin, DensityMixin, BaseEstimator):
    """Any :class:`~gmmlimit.Variant` as a scikit-learn estimator.

    Args:
        variant: the variant (it needs ``init``).
        n_components: the number of components K.
        temperature: the temperature in the variant's own units (``beta`` for the tempered
            variants, ``sigma2`` for the isotropic model); None keeps ``init``'s.
        n_init: restarts; the one with the highest objective is kept.
        max_iter: iterations per restart.
        tol: stopping tolerance (None: 0 at the hard limit, 1e-8 otherwise).
        random_state: None, an int or a ``numpy.random.RandomState``.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Attributes (after ``fit``):
        variant_: the variant fitted (prediction reads it, not a later ``set_params``).
        params_: the fitted parameter pytree.
        means_: (K, D) component locations.
        labels_: (N,) labels of the training rows.
        n_iter_: iterations of the kept restart.
        converged_: whether its stopping rule fired.
        objective_: its objective (higher is better).
        distortion_: its hard objective J.
        n_features_in_: D.
        feature_names_in_: the column names (only when X had string column names).
    """

    def __init__(
        self,
        variant: Variant,
        n_components: int = 2,
        *,
        temperature: Any = None,
        n_init: int = 1,
        max_iter: int = 100,
        tol: float | None = None,
        random_state: Any = None,
        block_size: int | None = None,
    ) -> None:
        self.variant = variant
        self.n_components = n_components
        self.temperature = temperature
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.block_size = block_size

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> VariantMixture:
        """Fit the variant (``n_init`` restarts, the best kept).

        Args:
            X: (N, D) data.
            y: ignored.
            sample_weight: optional (N,) non-negative weights.

        Returns:
            self.

        Raises:
            TypeError: on sparse X (scikit-learn's "dense data is required").
            ValueError: on invalid data, options, or a variant without ``init``.
        """
        X = self._validated(X, reset=True)
        variant = check_variant(self.variant, needs=("init",))
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        res = restarts(
            jax.random.key(seed),
            X,
            self.n_components,
            variant=variant,
            temperature=self.temperature,
            n_init=check_positive_int(self.n_init, "n_init"),
            max_iter=self.max_iter,
            tol=self.tol,
            weights=sample_weight,
            block_size=self.block_size,
        )
        self.variant_ = variant  # inference reads the fitted variant, not a later set_params
        self.params_ = res.params
        self.means_ = np.asarray(res.means)
        self.labels_ = np.asarray(res.labels)
        self.n_iter_ = int(res.n_iter)
        self.converged_ = bool(res.converged)
        self.objective_, self.distortion_ = float(res.objective), float(res.distortion)
        # fit as X / 2^e, the fit maps back in the data's dtype: J of float32 data near 1e20
        # is inf there, near 1e-30 it is 0; these Python floats are float64, as score's is
        wide = self._summed(X, sample_weight, only_if_scaled=True)
        if wide is not None:
            self.objective_, self.distortion_ = float(wide[2]), float(wide[3])
        return self

    def __getstate__(self) -> dict:
        """The estimator's state with the fitted parameters as NumPy arrays.

        A pickled JAX array is rebuilt in JAX's default dtype, so float64 parameters would come
        back as float32 with the x64 flag off; NumPy arrays keep their dtype.
        """
        state = super().__getstate__()
        if "params_" in state:
            state["params_"] = jax.tree.map(np.asarray, state["params_"])
        return state

    def _validated(self, X: Any, *, reset: bool) -> np.ndarray:
        """X through scikit-learn's ``validate_data``, then integers and booleans as float64.

        scikit-learn's refusals and messages come first: sparse input ("dense data is
        required"), complex ("Complex data not supported"), 1-D ("Reshape your data"), no rows
        or no columns ("0 feature(s) (shape=(12, 0)) while a minimum of 1 is required"), a
        feature count other than the fit's (inference). Object arrays of numbers become float64.
        Float dtypes are kept and NaN or inf left to the project's own check
        (:func:`~gmmlimit._validation.as_data`: "X contains 3 NaN or inf value(s)").

        Args:
            X: (N, D) data.
            reset: True in ``fit`` (sets ``n_features_in_``, ``feature_names_in_``); False in
                inference (checks them; call after ``check_is_fitted``).

        Returns:
            X as a NumPy array: float32 or float64 as given, float16 and bfloat16 as float32,
            integers and booleans as float64.
        """
        dtype = getattr(X, "dtype", None)
        if dtype is not None and _half_precision(dtype):
            # computed in float32 as the functional API does (scikit-learn reads bfloat16 as
            # "arrays of bytes/strings")
            X = np.asarray(X, np.float32)
        X = validate_data(self, X, reset=reset, dtype="numeric", ensure_all_finite=False)
        return _float64_if_integer(X)

    def _checked(self, X: Any) -> np.ndarray:
        """Inference's X: fitted first (``NotFittedError``), then :meth:`_validated`."""
        check_is_fitted(self, "params_")
        return self._validated(X, reset=False)

    def _data(self, X: np.ndarray) -> jax.Array:
        """Validated X (:meth:`_checked`) as the fit's data: finite, accepted by the variant."""
        X = as_data(X)
        if self.variant_.check_data is not None:
            self.variant_.check_data(np.asarray(X))
        return X

    def _params(self, X: jax.Array) -> Params:
        """The fitted parameters in X's dtype."""
        return jax.tree.map(
            lambda a: a.astype(X.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
            self.params_,
        )

    @with_float64_scope  # float64 data stay float64 with JAX's x64 flag off, as in fit
    def _summed(
        self, X: Any, sample_weight: Any = None, *, only_if_scaled: bool = False
    ) -> tuple[Any, ...] | None:
        """Responsibilities (N, K), labels (N,), the summed objective and J, the total weight.

        With ``only_if_scaled``, None (and no evaluation) where the data are within the window.

        As in ``fit``, data past the dtype's scale window are evaluated as X / 2^e through the
        variant's scaling (exact: the same responsibilities and labels), and the objective and
        J are mapped back, in float64 (J of float32 data near 1e19 overflows float32).
        """
        X = self._data(X)
        w = weights_or_ones(sample_weight, X.shape[0], X.dtype)
        variant, params = self.variant_, self._params(X)
        data_map = variant_fit_map(variant, X, variant.means(params))
        exponent = data_map.exponent
        if only_if_scaled and not exponent:
            return None
        if data_map.identity:
            resp, labels, objective, distortion = _evaluate(variant, params, X, w)
            return resp, labels, objective, distortion, jnp.sum(w)
        scaled = variant_params(variant, params, data_map)
        resp, labels, objective, distortion = _evaluate(variant, scaled, data_map.data(X), w)
        if not exponent:  # a translation alone changes no objective
            return resp, labels, objective, distortion, jnp.sum(w)
        with jax.enable_x64(True):
            wide = jax.tree.map(_float64, params)
            total = jnp.sum(_float64(w))
            objective = variant_objective(variant, _float64(objective), wide, total, exponent)
            distortion = variant_objective(
                variant, _float64(distortion), wide, total, exponent, law="distortion"
            )
            return resp, labels, objective, distortion, total

    def _evaluate(self, X: Any, sample_weight: Any = None) -> tuple[Any, ...]:
        """Responsibilities (N, K), labels (N,) and the objective per unit weight."""
        resp, labels, objective, _, total = self._summed(X, sample_weight)
        with jax.enable_x64(True):  # float64 sums stay float64 (x64 keeps float32 float32)
            return resp, labels, objective / total

    def predict(self, X: Any) -> np.ndarray:
        """(N,) int labels: each row's most responsible component (ties: lowest index)."""
        return np.asarray(self._evaluate(self._checked(X))[1])

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, K) responsibilities in X's dtype at the fitted temperature (one-hot when hard)."""
        return np.asarray(self._evaluate(self._checked(X))[0])

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """The objective per unit weight at the fitted parameters (higher is better).

        The mean log-likelihood or tempered free energy per row at a soft temperature, -J / N
        at the hard limit.
        """
        return float(self._evaluate(self._checked(X), sample_weight)[2])

    def score_samples(self, X: Any) -> np.ndarray:
        """(N,) each row's term of the objective at the fitted parameters.

        At a soft temperature the row's log-likelihood, or its tempered free energy
        (1/beta) ln sum_k pi_k exp(-beta d_nk); at the hard limit -d_n, minus its divergence
        to its component. Computed as the derivative of the objective with respect to the
        row's weight: for every shipped variant the objective is the weighted sum of these
        terms, so :meth:`score` is their weighted mean (a variant whose objective is not linear
        in the weights gets each row's marginal contribution). Data past the scale window are
        evaluated as X / 2^e and each term mapped back by the variant's law for a row of
        weight 1, in float64 (the terms of float32 rows near 1e20 pass float32).

        Args:
            X: (N, D) data.

        Returns:
            (N,) terms: X's dtype (float64 for integers), float64 where the data were
            rescaled.
        """
        return self._terms(self._checked(X))

    @with_float64_scope  # float64 data (integers too, after _checked) stay float64, as in fit
    def _terms(self, X: np.ndarray) -> np.ndarray:
        """:meth:`score_samples` of validated X."""
        X = self._data(X)
        variant, params = self.variant_, self._params(X)
        data_map = variant_fit_map(variant, X, variant.means(params))
        if data_map.identity:
            return np.asarray(_row_terms(variant, params, X))
        scaled = variant_params(variant, params, data_map)
        terms = _row_terms(variant, scaled, data_map.data(X))
        if not data_map.exponent:  # a translation alone changes no term
            return np.asarray(terms)
        with jax.enable_x64(True):
            one = jnp.ones((), jnp.float64)
            wide = jax.tree.map(_float64, params)
            return np.asarray(
                variant_objective(variant, _float64(terms), wide, one, data_map.exponent)
            )


def _float64(a: Any) -> Any:
    """A floating array as a float64 JAX array (call under ``jax.enable_x64``); others as given."""
    return jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a


def _half_precision(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating type narrower than float32 (float16, bfloat16)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # e.g. a pandas extension dtype
        return False
    return bool(jnp.issubdtype(dtype, jnp.floating)) and dtype.itemsize < 4


def _float64_if_integer(X: Any) -> Any:
    """scikit-learn's rule for estimators: integer and boolean data are computed in float64.

    (The functional API computes them in JAX's default float dtype; counts, the natural input of
    the Poisson and Bernoulli variants, are exact in float64 up to 2^53.)
    """
    dtype = getattr(X, "dtype", None)
    if dtype is None:
        X = np.asarray(X)
        dtype = X.dtype
    if np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_):
        return np.asarray(X, np.float64)
    return X


@partial(jax.jit, static_argnames=("variant",))
def _row_terms(variant: Variant, params: Params, X: jax.Array) -> jax.Array:
    """(N,) each row's term of the objective: its derivative with respect to the row's weight.

    The statistics are weighted sums over the rows and the objectives of the shipped variants
    linear in them (a tempered variant's free energy sum_n w_n log_lik_n, the isotropic
    log-likelihood's normaliser and core, -J at the hard limit), so the derivative at unit
    weights is the row's term exactly: its log_lik (with the isotropic normaliser), or -d_n.
    """
    estep = variant.e_step(params, X)

    def objective(weights: jax.Array) -> jax.Array:
        return fit_objective(variant, params, variant.sufficient_stats(X, weights, estep))

    return jax.grad(objective)(jnp.ones(X.shape[0], X.dtype))


@partial(jax.jit, static_argnames=("variant",))
def _evaluate(
    variant: Variant, params: Params, X: jax.Array, w: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Responsibilities (N, K), labels (N,), the summed objective and J, in one program."""
    estep = variant.e_step(params, X)
    stats = variant.sufficient_stats(X, w, estep)
    return estep.resp, estep.labels, fit_objective(variant, params, stats), stats.distortion
