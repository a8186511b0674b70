"""The fixed-variance isotropic mixture as a scikit-learn estimator."""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp
from sklearn.base import ClusterMixin, DensityMixin
from sklearn.exceptions import ConvergenceWarning

from .._rescale import Scale
from .._validation import exact_ldexp
from ._common import _IsotropicBase, _soft, bucket_rows, hard_pass, in_x64, rows_by_scale

_LOG_2PI = math.log(2.0 * math.pi)
_FALLBACK_VALUES = 1 << 22
"""The most values (rows x K x D) of one chunk of the float64 fallback's differences."""

__all__ = ["IsotropicGaussianMixture"]


class IsotropicGaussianMixture(ClusterMixin, DensityMixin, _IsotropicBase):
    """EM for the equal-prior Gaussian mixture with one fixed shared variance sigma2 * I.

    ``sigma2`` is a hyper-parameter (not estimated): sweeping it toward 0 turns the fit into
    K-means, the point of gmmlimit; ``GridSearchCV`` can choose it by held-out log-likelihood.

    Args:
        n_components: number of components K.
        sigma2: the shared variance, > 0.
        init: ``"k-means++"``, ``"random"`` or a (K, D) array of initial means.
        n_init: number of restarts; the highest log-likelihood wins.
        max_iter: maximum EM iterations per restart.
        tol: stop once the relative log-likelihood gain is <= tol.
        random_state: None, an int or a RandomState; turned into one ``jax.random.key``.

    Attributes:
        means_: (K, D).
        weights_: (K,) all 1/K.
        covariances_: (K,) all sigma2 (spherical, as in scikit-learn's GaussianMixture).
        labels_: (N,).
        n_iter_: iterations of the best restart.
        converged_: whether the best restart converged.
        lower_bound_: the mean log-likelihood per sample of the training data.
        n_features_in_: D.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        sigma2: float = 1.0,
        init: Any = "k-means++",
        n_init: int = 1,
        max_iter: int = 300,
        tol: float = 1e-8,
        random_state: Any = None,
    ) -> None:
        self.n_components = n_components
        self.sigma2 = sigma2
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _n_components(self) -> int:
        return self.n_components

    def _sigma2(self) -> float:
        s = self.sigma2
        if isinstance(s, bool) or not isinstance(s, (int, float, np.floating, np.integer)):
            raise ValueError(f"sigma2 must be a positive number; got {s!r}.")
        if not (0 < s < math.inf):
            raise ValueError(
                f"sigma2 must be a finite number > 0 (use KMeans for the limit 0); got {s!r}."
            )
        return float(s)

    def _means(self) -> np.ndarray:
        return self.means_

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> IsotropicGaussianMixture:
        """Run EM for the means at the fixed sigma2.

        Args:
            X: (N, D) data.
            y: ignored.
            sample_weight: optional (N,) non-negative weights.

        Returns:
            self.
        """
        sigma2 = self._sigma2()
        if not isinstance(self.init, str) and self.n_init != 1:  # as KMeans (scikit-learn) warns
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={self.n_init}.",
                RuntimeWarning,
                stacklevel=2,
            )
        means, res, total_weight, fitted_at = self._fit(X, sample_weight)
        k, d = means.shape
        # inference reads the sigma2 of the fit, not a later set_params (scikit-learn's rule)
        self._fitted_sigma2 = sigma2
        self.means_ = means
        self.weights_ = np.full(k, 1.0 / k, means.dtype)
        self.covariances_ = np.full(k, sigma2, means.dtype)
        self.n_iter_ = int(res.n_iter)
        self.converged_ = bool(res.converged)
        if not self.converged_:  # as GaussianMixture (scikit-learn) warns
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        # the fit ran on D' >= D zero-padded columns, at sigma2' = sigma2 / 4^e where the data
        # were rescaled: l / W = l' / W' + (D' / 2) ln(2 pi sigma2') - (D / 2) ln(2 pi sigma2)
        # (ln 2 pi + ln sigma2, not ln(2 pi sigma2): sigma2' / 4^e may be within 2 pi of the
        # largest float, where the product overflows)
        padded = res.means.shape[1]
        self.lower_bound_ = (
            float(res.objective) / total_weight
            + 0.5 * padded * (_LOG_2PI + math.log(fitted_at))
            - 0.5 * d * (_LOG_2PI + math.log(sigma2))
        )
        if not math.isfinite(self.lower_bound_):
            # the fit's objective, summed in the data's dtype, passed its largest number (unit
            # rows at sigma2 near the smallest normal float32 sum to -1e39): the mean of the
            # training rows' log densities at the fitted means, in float64
            self.lower_bound_ = self._mean_log_density(X, sample_weight)
        self.labels_ = self.predict(X)
        return self

    @in_x64
    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest mean (the most responsible component), ties to the lowest.

        Where every row lies within the scale window, the fit's own streamed hard pass (no
        (N, K) intermediates); otherwise the labels :meth:`predict_proba` computes, each row at
        its own scale (float32 rows near 1e20 would overflow their squared distances as given).

        Args:
            X: (N, D) data.

        Returns:
            (N,) int labels.
        """
        padded = self._padded(X)  # validated, and translated as the fit was (once)
        Xp, wp, means, n = padded
        if rows_by_scale(Xp, means) is None:  # the labels _soft's own in-window branch takes
            return np.asarray(hard_pass(Xp, wp, means)[1])[:n].astype(np.int64)
        return self._soft_padded(*padded)[2].astype(np.int64)

    @in_x64
    def _soft(self, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(resp (N, K), per-row log-likelihood (N,), labels (N,)), each row at its own scale."""
        return self._soft_padded(*self._padded(X))

    def _soft_padded(
        self,
        Xp: jax.Array,
        wp: jax.Array,
        means: jax.Array,
        n: int,
        log_dtype: Any = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_soft` of rows :meth:`_IsotropicBase._padded` gave (translated and padded).

        Args:
            Xp: (N', D') padded rows.
            wp: (N',) their weights (0 on padding rows).
            means: (K, D') the means, padded and translated as the rows.
            n: the number N of real rows.
            log_dtype: the dtype of the log densities returned: None for the rows' own, or
                float64 (:meth:`score`).

        Returns:
            ``(resp, log_lik, labels)`` of the N real rows. A row whose log density the rows'
            dtype gives as non-finite (its scaled variance flushed to 0, or its squared
            distances overflowed) has it from :meth:`_float64_log_densities`, in ``log_dtype``:
            -inf only where that dtype cannot hold it.
        """
        sigma2 = self._fitted_sigma2
        # Each row is computed at its own scale (rows_by_scale): rows whose magnitude (or the
        # means') lies outside the window run as x / 2^e, means / 2^e, sigma2 / 4^e (exact;
        # d / (2 sigma2) is scale-free), so a far row neither overflows nor sets the scale of
        # the others.
        s2 = jnp.asarray(sigma2, Xp.dtype)
        groups = rows_by_scale(Xp, means)
        if groups is None:  # every row within the window: one pass as given
            hard = hard_pass(Xp, wp, means)[1]
            r, s = _soft(Xp, means, s2, hard)
            resp, lse, labels = np.asarray(r), np.asarray(s), np.asarray(hard)
        else:
            resp = np.empty((Xp.shape[0], means.shape[0]), Xp.dtype)
            lse = np.empty(Xp.shape[0], Xp.dtype)
            labels = np.empty(Xp.shape[0], np.int32)
            host = np.asarray(Xp)
            for exponent, rows in groups:  # each group padded to its bucket (bucket_rows)
                taken = bucket_rows(rows, host.shape[1])
                x, m = exact_ldexp(host[taken], -exponent), exact_ldexp(means, -exponent)
                real = jnp.asarray(np.arange(taken.size) < rows.size, Xp.dtype)  # copies weigh 0
                hard = hard_pass(jnp.asarray(x), real, m)[1]
                r, s = _soft(x, m, Scale(exponent, 0).sigma2(s2), hard)
                m_rows = rows.size
                resp[rows] = np.asarray(r)[:m_rows]
                lse[rows] = np.asarray(s)[:m_rows]
                labels[rows] = np.asarray(hard)[:m_rows]
        log_lik = (lse[:n] - self._log_norm()).astype(log_dtype or Xp.dtype)
        past = ~np.isfinite(log_lik)
        if np.any(past):
            with np.errstate(over="ignore"):  # past log_dtype too: -inf
                log_lik[past] = self._float64_log_densities(np.asarray(Xp)[:n][past], means)
        return resp[:n], log_lik, labels[:n]

    def _float64_log_densities(self, rows: np.ndarray, means: Any) -> np.ndarray:
        """(M,) log densities of rows computed as given, in float64 (rows past their dtype).

        Float32 rows near 1e19 from every mean have a log density near -1e38, which float32
        holds but whose scaled computation does not (sigma2 / 4^e below float32's smallest
        normal number); a row past float64 as well (its squared distances overflow) gets -inf,
        as scikit-learn gives.

        Args:
            rows: (M, D') rows as :meth:`_IsotropicBase._padded` gave them (translated, exact).
            means: (K, D') the means, padded and translated as the rows.

        Returns:
            (M,) float64 log p(x_m) at the fitted sigma2.
        """
        rows, centres = np.asarray(rows, np.float64), np.asarray(means, np.float64)
        out = np.empty(rows.shape[0])
        chunk = max(1, _FALLBACK_VALUES // max(1, centres.size))  # bounds the (M, K, D) temporary
        for start in range(0, rows.shape[0], chunk):
            diff = rows[start : start + chunk, None, :] - centres[None]
            with np.errstate(over="ignore"):
                sq = np.einsum("nkd,nkd->nk", diff, diff)
            # logsumexp gives -inf, not NaN, for a row whose exponents are all -inf
            out[start : start + chunk] = logsumexp(-sq / (2.0 * self._fitted_sigma2), axis=1)
        return out - self._log_norm()

    def _log_norm(self) -> float:
        """The log normaliser ln K + (D / 2) ln(2 pi sigma2) at the fitted sigma2."""
        k, d = self.means_.shape
        return math.log(k) + 0.5 * d * (_LOG_2PI + math.log(self._fitted_sigma2))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Responsibilities r_nk (shifted log-domain softmax; never NaN).

        Args:
            X: (N, D) data.

        Returns:
            (N, K) rows summing to one.
        """
        return self._soft(X)[0]

    def score_samples(self, X: Any) -> np.ndarray:
        """Per-sample log-likelihood log p(x_n).

        Args:
            X: (N, D) data.

        Returns:
            (N,) log densities.
        """
        return self._soft(X)[1]

    @in_x64
    def score(self, X: Any, y: Any = None) -> float:
        """Mean per-sample log-likelihood of X.

        Args:
            X: (N, D) data.
            y: ignored.

        Returns:
            The mean of :meth:`score_samples`, a float64 Python float: a row whose log density
            is past its dtype (float32 rows near 1e30 from every mean: -inf in
            :meth:`score_samples`) counts with its float64 value.
        """
        return self._mean_log_density(X)

    @in_x64
    def _mean_log_density(self, X: Any, sample_weight: Any = None) -> float:
        """The (weighted) mean of the rows' log densities, in float64 (see :meth:`score`).

        A mean of values near -1e308 is formed as a convex combination (weights summing to
        one), which cannot overflow where their sum would.
        """
        values = self._soft_padded(*self._padded(X), log_dtype=np.float64)[1]
        if sample_weight is None:
            with np.errstate(over="ignore"):
                mean = np.mean(values)
            if np.isfinite(mean) or not np.all(np.isfinite(values)):
                return float(mean)
            weights = np.full(values.shape[0], 1.0 / values.shape[0])
        else:
            weights = np.asarray(sample_weight, np.float64)
            weights = weights / weights.sum()
        return float(np.sum(weights * values))
