"""``GaussianMixture``: scikit-learn's GaussianMixture with EM run by gmmlimit's variants.

The class subclasses ``sklearn.mixture.GaussianMixture``, so parameter validation, the
initialisations (``init_params``, ``weights_init``, ``means_init``, ``precisions_init``),
``sample``, ``bic``/``aic`` and the precision attributes are scikit-learn's own. What runs the
EM iterations, and every E-step behind ``predict``, ``predict_proba``, ``score_samples`` and
``score``, is gmmlimit's compiled variant for the covariance type (``spherical``, ``diag``,
``full``, ``tied``) in the input's dtype, with one extra parameter: the inverse temperature
``beta`` of :mod:`gmmlimit.variants._tempered` (1 is EM; ``inf`` is the hard limit,
classification EM).
"""

from __future__ import annotations

import math
import warnings
from numbers import Real
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
from sklearn.utils import check_random_state
from sklearn.utils._array_api import get_namespace
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from .._driver import Blocks, em_iteration, power_of_two_bucket
from .._host import to_jax
from .._offset import offset_of
from .._validation import MAX_ITER_LIMIT, check_max_iter
from ..variants import (
    DiagParams,
    FullParams,
    SphericalParams,
    TiedParams,
    diag,
    full,
    spherical,
    tied,
)
from ._common import bucket_rows, in_x64, pad_blocks

__all__ = ["GaussianMixture"]

_VARIANTS = {"spherical": spherical, "diag": diag, "full": full, "tied": tied}


def _to_params(cov_type: str, w: Any, m: Any, c: Any, beta: float, reg: float) -> Any:
    cls = {"spherical": SphericalParams, "diag": DiagParams, "full": FullParams}.get(cov_type)
    if cls is None:
        return TiedParams(m, c, w, beta, reg)
    return cls(m, c, w, beta, reg)


def _covariances(cov_type: str, params: Any) -> np.ndarray:
    if cov_type == "tied":
        return np.asarray(params.covariance)
    if cov_type == "full":
        return np.asarray(params.covariances)
    return np.asarray(params.variances)


def _covariances_from_precision_cholesky(cov_type: str, pc: np.ndarray) -> np.ndarray:
    """Covariances from scikit-learn's precision Cholesky factors (precisions_init given)."""
    if cov_type in ("spherical", "diag"):
        return 1.0 / pc**2
    if cov_type == "tied":
        return np.linalg.inv(pc @ pc.T)
    return np.stack([np.linalg.inv(p @ p.T) for p in pc])


def _em(
    variant: Any,
    blocks: Blocks,
    params: Any,
    prev: jax.Array,
    tol: jax.Array,
    max_iter: jax.Array,
    history_len: int,
) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
    """scikit-learn's EM loop: stop once |lower bound change| < tol (per-sample mean)."""

    def cond(c: tuple) -> jax.Array:
        return (~c[3]) & (c[2] < max_iter)

    def body(c: tuple) -> tuple:
        p, lb_prev, it, _, hist = c
        new, stats, _ = em_iteration(variant, p, blocks)
        lb = stats.free_energy / stats.total_weight
        hist = hist.at[it].set(lb)
        return new, lb, it + 1, jnp.abs(lb - lb_prev) < tol, hist

    dtype = blocks.x.dtype
    start = (
        params,
        prev.astype(dtype),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), bool),
        jnp.zeros((history_len,), dtype),
    )
    p, lb, it, done, hist = lax.while_loop(cond, body, start)
    return p, lb, it, done, hist


_EM = jax.jit(_em, static_argnames=("variant", "history_len"))
_EM_FAST = jax.jit(
    _em,
    static_argnames=("variant", "history_len"),
    compiler_options={"xla_backend_optimization_level": 0},
)


def _one(variant: Any, blocks: Blocks, params: Any) -> tuple[Any, jax.Array]:
    new, stats, _ = em_iteration(variant, params, blocks)
    return new, stats.free_energy / stats.total_weight


_ONE = jax.jit(_one, static_argnames=("variant",))


def _estep(variant: Any, params: Any, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    e = variant.e_step(params, x)
    return e.resp, e.labels, e.log_lik


_ESTEP = jax.jit(_estep, static_argnames=("variant",))
_SMALL = 1 << 16


def _ill_defined_covariance() -> ValueError:
    """scikit-learn's own "ill-defined empirical covariance" error (its words, in any version)."""
    try:
        _compute_precision_cholesky(np.zeros(1), "spherical", xp=np)
    except ValueError as error:
        return error
    raise AssertionError("scikit-learn factorised a zero variance")  # pragma: no cover


class GaussianMixture(_SkGaussianMixture):
    """A drop-in for ``sklearn.mixture.GaussianMixture`` whose EM is gmmlimit's, plus ``beta``.

    Parameters and attributes are scikit-learn's (``n_components, covariance_type, tol,
    reg_covar, max_iter, n_init, init_params, weights_init, means_init, precisions_init,
    random_state, warm_start, verbose, verbose_interval``; ``weights_, means_, covariances_,
    precisions_, precisions_cholesky_, converged_, n_iter_, lower_bound_, lower_bounds_``).

    Args:
        beta: inverse temperature in (0, inf]. 1 (default) is EM for the mixture, identical to
            scikit-learn's iterates up to rounding; larger values sharpen the responsibilities,
            ``math.inf`` is the hard limit (each point to its most likely component). The lower
            bound is then the tempered free energy per sample, (1/beta) ln sum_k pi_k
            exp(beta ln N_k(x)), which is -min_k(-ln N_k(x)) at beta = inf.
    """

    _parameter_constraints: dict = {  # noqa: RUF012  (scikit-learn's convention)
        **_SkGaussianMixture._parameter_constraints,
        # numbers.Real takes NumPy scalars (np.float32(2), np.int64 from np.arange) and inf
        "beta": [Interval(Real, 0, None, closed="right")],  # (0, inf]
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        beta: float = 1.0,
    ) -> None:
        super().__init__(
            n_components=n_components,
            covariance_type=covariance_type,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            weights_init=weights_init,
            means_init=means_init,
            precisions_init=precisions_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.beta = beta

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.array_api_support = False
        return tags

    def _check_parameters(self, X: Any, xp: Any = None) -> None:
        b = self.beta
        if isinstance(b, bool) or not (isinstance(b, (int, float, np.number)) and b > 0):
            raise ValueError(f"beta must be a number in (0, inf] (inf: the hard limit); got {b!r}.")
        if self.max_iter > MAX_ITER_LIMIT:  # 0 is scikit-learn's (initialisation only)
            check_max_iter(self.max_iter)  # a history max_iter long: 2^30 allocated 8 GiB
        super()._check_parameters(X, xp=get_namespace(X)[0] if xp is None else xp)

    # ------------------------------------------------------------------------------- fitting

    def _params(self, X: np.ndarray) -> Any:
        """The variant's parameters from the current attributes (validated, in X's dtype)."""
        cov = getattr(self, "covariances_", None)
        if cov is None:
            cov = _covariances_from_precision_cholesky(
                self.covariance_type, np.asarray(self.precisions_cholesky_, np.float64)
            )
        cov = np.asarray(cov, np.float64)
        if self.covariance_type in ("full", "tied"):
            # scikit-learn's float32 initial covariances are symmetric only up to rounding.
            cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        p = _to_params(
            self.covariance_type,
            np.asarray(self.weights_, np.float64),
            np.asarray(self.means_, np.float64),
            cov,
            self._fitted_beta,
            1.0,
        )
        # scikit-learn allows reg_covar = 0 (no floor), the variants' validation wants > 0: check
        # the rest, then put the real value back (the M-step is well defined at 0). It reads X's
        # shape and dtype only, and asks for K <= N, a condition of fitting: inference takes
        # any number of rows, so it is shown rows enough.
        k = np.shape(self.weights_)[0]
        shape = jax.ShapeDtypeStruct((max(X.shape[0], k), X.shape[1]), X.dtype)
        p = _VARIANTS[self.covariance_type].validate(shape, p)
        return p._replace(reg_covar=jnp.asarray(float(self.reg_covar), X.dtype))

    def _set_from(self, params: Any, dtype: np.dtype) -> None:
        cov = _covariances(self.covariance_type, params).astype(dtype)
        self._set_parameters(
            (
                np.asarray(params.weights).astype(dtype),
                np.asarray(params.means).astype(dtype),
                cov,
                _compute_precision_cholesky(cov, self.covariance_type, xp=np),
            ),
            xp=get_namespace(cov)[0],
        )

    def _run(self, X: np.ndarray, blocks: Blocks, prev: float) -> tuple[float, int, bool, list]:
        """EM from the current attributes; returns (lower bound, n_iter, converged, history)."""
        variant = _VARIANTS[self.covariance_type]
        params = self._params(X)
        if self.verbose:
            lb, n_iter, converged, history = prev, 0, False, []
            for n_iter in range(1, self.max_iter + 1):
                params, lb_new = _ONE(variant, blocks, params)
                change = float(lb_new) - lb
                lb = float(lb_new)
                history.append(lb)
                self._print_verbose_msg_iter_end(n_iter, change)
                if abs(change) < self.tol:
                    converged = True
                    break
        else:
            em = _EM_FAST if blocks.x.size <= _SMALL else _EM
            params, lb, n_iter, done, hist = em(
                variant,
                blocks,
                params,
                jnp.asarray(prev),
                jnp.asarray(self.tol, blocks.x.dtype),
                jnp.asarray(self.max_iter, jnp.int32),
                history_len=power_of_two_bucket(self.max_iter, 16),
            )
            lb, n_iter, converged = float(lb), int(n_iter), bool(done)
            history = [float(v) for v in np.asarray(hist)[:n_iter]]
        if not np.all(np.isfinite(history)):
            # A variance that reached 0 on the way (reg_covar = 0, a component collapsed on
            # repeated rows) gave a NaN or infinite bound, where scikit-learn's factorisation
            # of that covariance raises; the fit must not go on from it as if converged.
            raise _ill_defined_covariance()
        self._set_from(params, X.dtype)
        return lb, n_iter, converged, history

    @in_x64
    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit the mixture n_init times, keep the best lower bound, return the labels of X.

        Args:
            X: (N, D) data.
            y: ignored.

        Returns:
            (N,) component labels.
        """
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {X.shape[0]}"
            )
        self._check_parameters(X)
        # inference reads the beta of the fit, not a later set_params (scikit-learn's rule)
        self._fitted_beta = float(self.beta)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        best, best_lb = None, -math.inf
        self.converged_ = False
        rng = check_random_state(self.random_state)
        # Rows far from the origin relative to their spread are fit less an exact offset
        # (gmmlimit._offset): scikit-learn's initial diag, spherical and tied covariances are
        # averages of x^2 less squared means, which cancel there. The EM runs on the same
        # translated rows (so a fit of X + c is that of X), means_ held translated meanwhile
        # and moved back once at the end. Data without an offset are fit as given (Xt is X).
        offset = offset_of(X)
        Xt = X if offset is None else X - offset
        blocks = pad_blocks(Xt, np.ones(X.shape[0], X.dtype), self.n_components, pad_columns=False)
        moved = False  # whether means_ are those of the translated rows (to move back)
        try:
            if not do_init and offset is not None:  # warm start from the last fit's means
                self.means_ = self.means_ - offset
                moved = True
            for init in range(n_init):
                self._print_verbose_msg_init_beg(init)
                if do_init:
                    moved = False
                    self._initialize_in_range(Xt, rng, offset)
                    moved = offset is not None
                prev = -math.inf if do_init else self.lower_bound_
                if self.max_iter == 0:
                    result = (prev, 0, False, [])
                else:
                    result = self._run(Xt, blocks, prev)
                    self._print_verbose_msg_init_end(result[0], result[2])
                if best is None or result[0] > best_lb or best_lb == -math.inf:
                    best_lb = result[0]
                    best = (self._get_parameters(), result)
                    self.converged_ = result[2]
            params, (_, n_iter, _, history) = best
            self._set_parameters(params, xp=get_namespace(X)[0])
        finally:
            if moved:  # one rounding per mean, also where the fit failed part way
                self.means_ = self.means_ + offset
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.n_iter_ = n_iter
        self.lower_bound_ = best_lb
        self.lower_bounds_ = history
        return self._estep(X)[1]

    def _initialize_in_range(
        self, X: np.ndarray, rng: np.random.RandomState, offset: np.ndarray | None = None
    ) -> None:
        """scikit-learn's initialisation; where float32's sums would overflow, in float64.

        scikit-learn's float32 initial variances sum squares (and X^T X) in float32, which
        overflow for data near 1e18 whose variances float32 holds; such data are initialised
        from a float64 copy (the same random draws). Variances past float32's range are
        refused.

        Args:
            X: (N, D) the rows as the fit computes them (less ``offset``).
            rng: scikit-learn's random state.
            offset: None, or the (D,) exact offset X was translated by: ``means_init``, given
                in the data's units, is then moved by it too (scikit-learn takes it as given).

        Raises:
            ValueError: if the data's initial variances are not finite in float32, or, for
                float64 data, if sums of squares of the data may pass float64's range.
        """
        if X.dtype == np.float64 and _squares_overflow(X, np.float64):
            raise ValueError(
                f"the data reach {float(np.max(np.abs(X))):.3g}: sums of N = {X.shape[0]} of "
                "their squares (the initial covariances) may pass float64's largest number "
                f"{np.finfo(np.float64).max:.3g}; rescale the data."
            )
        if X.dtype != np.float32 or not _squares_overflow(X, np.float32):
            self._initialize_parameters(X, rng, xp=get_namespace(X)[0])
        else:
            wide = X.astype(np.float64)
            self._initialize_parameters(wide, rng, xp=get_namespace(wide)[0])
            largest = float(np.max(np.abs(_covariances_of(self))))
            if not largest < float(np.finfo(np.float32).max):
                raise ValueError(
                    f"the data's initial variances reach {largest:.3g}, past float32's largest "
                    f"number {np.finfo(np.float32).max:.3g}: pass float64 data, or rescale them."
                )
        if offset is not None and self.means_init is not None:
            self.means_ = self.means_init - offset

    # ------------------------------------------------------------------------------ inference

    def _estep(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(resp (N, K), labels (N,), per-row log likelihood (N,)) by the variant's E-step."""
        n = X.shape[0]
        taken = bucket_rows(np.arange(n), X.shape[1])  # small data share power-of-two shapes
        Xp = X if taken.size == n else X[taken]
        params = self._params(X)
        resp, labels, ll = _ESTEP(_VARIANTS[self.covariance_type], params, to_jax(Xp))
        return np.asarray(resp)[:n], np.asarray(labels)[:n].astype(np.int64), np.asarray(ll)[:n]

    def _checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)

    @in_x64
    def predict(self, X: Any) -> np.ndarray:
        """The most likely component of each row (ties: the lowest index).

        Args:
            X: (N, D) data.

        Returns:
            (N,) labels.
        """
        return self._estep(self._checked(X))[1]

    @in_x64
    def predict_proba(self, X: Any) -> np.ndarray:
        """Responsibilities at the model's beta (log-domain softmax, rows sum to one).

        Args:
            X: (N, D) data.

        Returns:
            (N, K) responsibilities.
        """
        return self._estep(self._checked(X))[0]

    @in_x64
    def score_samples(self, X: Any) -> np.ndarray:
        """Per-row log-likelihood log p(x) (the tempered free energy when beta != 1).

        Args:
            X: (N, D) data.

        Returns:
            (N,) values.
        """
        return self._estep(self._checked(X))[2]

    def _estimate_log_prob_resp(self, X: Any, xp: Any = None) -> tuple[np.ndarray, np.ndarray]:
        with jax.enable_x64(True):
            resp, _, ll = self._estep(np.asarray(X))
        with np.errstate(divide="ignore"):
            return ll, np.log(resp)


def _covariances_of(model: Any) -> np.ndarray:
    """The model's current covariances (from its precisions' Cholesky factors if needed)."""
    cov = getattr(model, "covariances_", None)
    if cov is None:
        cov = _covariances_from_precision_cholesky(
            model.covariance_type, np.asarray(model.precisions_cholesky_, np.float64)
        )
    return np.asarray(cov, np.float64)


def _squares_overflow(X: np.ndarray, dtype: Any) -> bool:
    """Whether sums of N squares of X's entries may pass ``dtype``'s range (with margin 16)."""
    largest = float(np.max(np.abs(X))) if X.size else 0.0
    return largest * largest * X.shape[0] >= float(np.finfo(dtype).max) / 16
