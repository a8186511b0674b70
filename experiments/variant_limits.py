"""Hard limits of the exponential-family and vMF mixtures: beta -> inf, against the bound.

For the Poisson, Bernoulli and von Mises-Fisher mixtures (``gmmlimit.variants``) on data drawn
from each model (seeded from explicit ``jax.random`` keys), ``gmmlimit.variants.limit_sweep``
measures over a log grid of inverse temperatures beta, from the same starting parameters: the
largest gap |r_nk - onehot_nk| and the analogue of bound 1, (K - 1) exp(-beta gap_n), checked at
every point;
the gap between one tempered update and one hard update (Bregman hard clustering: generalised KL,
logistic loss, spherical K-means); and how far full fits at each beta end from the hard fit. One
compiled fit per variant serves the whole grid (beta is a traced leaf).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from gmmlimit import variants as gv

from ._common import dataset_key
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = ["EXPERIMENT", "VariantLimitsConfig", "VariantLimitsRecord", "make_problem", "run"]

VARIANTS = ("poisson", "bernoulli", "vmf")


@dataclasses.dataclass(frozen=True)
class VariantLimitsConfig:
    """Config of the variant-limit sweep (defaults: the full setting).

    Attributes:
        seed: the root of every ``jax.random`` key of the run.
        variants: which mixtures to sweep (``poisson, bernoulli, vmf``).
        n_samples: rows per data set.
        dim: dimension D.
        k: components K (of the data and of the fit).
        n_beta: grid size.
        beta_min: smallest beta (> 0).
        beta_max: largest beta (finite; the hard fit, beta = inf, is the reference).
        max_iter: iterations of every fit.
        dtype: ``"float64"`` or ``"float32"``.
    """

    seed: int = 0
    variants: tuple[str, ...] = VARIANTS
    n_samples: int = 2000
    dim: int = 16
    k: int = 4
    n_beta: int = 30
    beta_min: float = 0.3
    beta_max: float = 1e6
    max_iter: int = 200
    dtype: str = "float64"

    def validate(self) -> None:
        """Refuse bad values before any work (ValueError naming the problem)."""
        if not self.variants or any(v not in VARIANTS for v in self.variants):
            raise ValueError(
                f"variants must be a non-empty subset of {VARIANTS}; for any other variant "
                "(built in, or yours as package.module:attr) run "
                "`gmmlimit run variant_study --variant NAME`."
            )
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants has duplicates: {self.variants}.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}.")
        for name, value, low in (
            ("n_samples", self.n_samples, 2),
            ("dim", self.dim, 2),
            ("k", self.k, 2),
            ("n_beta", self.n_beta, 2),
            ("max_iter", self.max_iter, 1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}; got {value}.")
        if self.k > self.n_samples:
            raise ValueError(f"k={self.k} exceeds n_samples={self.n_samples}.")
        if not (0 < self.beta_min < self.beta_max < np.inf):
            raise ValueError("need 0 < beta_min < beta_max < inf.")


@dataclasses.dataclass(frozen=True)
class VariantLimitsRecord:
    """One variant's sweep (G inverse temperatures beta).

    Attributes:
        beta: (G,) the grid, ascending.
        resp_gap: (G,) max_nk |r_nk - onehot_nk|.
        bound: (G,) max_n (K - 1) exp(-beta gap_n).
        bound_holds: (G,) bool, every entry within its row's bound.
        update_gap: (G,) max |one tempered update - one hard update|.
        fit_means_gap: (G,) max |means of the fit at beta - of the hard fit|.
        fit_label_agreement: (G,) share of final labels equal to the hard fit's.
        n_iter: (G,) iterations of each fit.
        hard_objective: the hard fit's final distortion.
        onehot_threshold: -ln(smallest normal) of the dtype.
    """

    beta: np.ndarray
    resp_gap: np.ndarray
    bound: np.ndarray
    bound_holds: np.ndarray
    update_gap: np.ndarray
    fit_means_gap: np.ndarray
    fit_label_agreement: np.ndarray
    n_iter: np.ndarray
    hard_objective: float
    onehot_threshold: float


def make_problem(config: VariantLimitsConfig, name: str) -> tuple[np.ndarray, Any]:
    """Data drawn from the mixture ``name`` and starting parameters (beta = 1), from the seed.

    The draws come from a NumPy generator seeded with the data of an explicit ``jax.random`` key
    (``dataset_key(seed, ...)``): JAX's eager Poisson and gamma samplers take seconds to compile,
    NumPy's none, and the numbers are still a function of the config's seed alone.
    """
    key = dataset_key(config.seed, f"variant_limits-{name}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())
    n, d, k = config.n_samples, config.dim, config.k
    labels = rng.integers(k, size=n)
    weights = np.full(k, 1.0 / k)
    if name == "poisson":
        X = rng.poisson(3.0 * rng.gamma(2.0, size=(k, d))[labels]).astype(np.float64)
        start = gv.PoissonParams(_rows(rng, X, k) + 0.5, weights, 1.0, 1e-3)
    elif name == "bernoulli":
        probs = rng.beta(0.7, 0.7, size=(k, d))
        X = (rng.uniform(size=(n, d)) < probs[labels]).astype(np.float64)
        # random, tie-free starting probabilities (binary rows would tie exactly)
        start = gv.BernoulliParams(rng.uniform(0.2, 0.8, size=(k, d)), weights, 1.0, 1e-3)
    else:
        X = 2.0 * rng.normal(size=(k, d))[labels] + rng.normal(size=(n, d))
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        start = gv.VMFParams(_rows(rng, X, k), weights, 1.0)
    return X.astype(config.dtype), start


def _rows(rng: np.random.Generator, X: np.ndarray, k: int) -> np.ndarray:
    return X[rng.choice(X.shape[0], k, replace=False)]


def _point(config: VariantLimitsConfig, name: str) -> VariantLimitsRecord:
    X, start = make_problem(config, name)
    betas = np.geomspace(config.beta_min, config.beta_max, config.n_beta)
    variant = getattr(gv, name)
    out = gv.limit_sweep(variant, X, start, betas, max_iter=config.max_iter)
    return VariantLimitsRecord(
        beta=np.asarray(out["beta"]),
        resp_gap=np.asarray(out["resp_gap"]),
        bound=np.asarray(out["bound"]),
        bound_holds=np.asarray(out["bound_holds"]),
        update_gap=np.asarray(out["update_gap"]),
        fit_means_gap=np.asarray(out["fit_means_gap"]),
        fit_label_agreement=np.asarray(out["fit_label_agreement"]),
        n_iter=np.asarray(out["n_iter"]),
        hard_objective=float(out["hard_objective"]),
        onehot_threshold=float(-np.log(np.finfo(X.dtype).tiny)),
    )


def run(
    config: VariantLimitsConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, VariantLimitsRecord]:
    """Sweep every variant (one resumable point each); pure computation."""
    return sweep(
        resume,
        list(config.variants),
        lambda n: _point(config, n),
        progress,
        "variants",
        VariantLimitsRecord,
    )


def check(config: VariantLimitsConfig, records: dict[str, VariantLimitsRecord]) -> list[str]:
    """Verified: the bound everywhere; one-hot, equal updates and fits at the top of the grid."""
    # Tolerances in eps of the run's dtype (the dtype limit_sweep reports the gaps in). A
    # one-hot row's gap is an underflowed exp or a rounding of 1 - r: 64 eps. At
    # one-hot responsibilities the tempered and the hard update are the same weighted means of
    # the rows (entries <= 1 for bernoulli and vmf, Poisson counts of a few tens) summed along
    # different paths, so they differ by a few eps times the largest entry: 256 eps covers
    # entries up to ~50 (measured: at most 0.25 eps, quick and full settings, both dtypes).
    # In float64 both are stricter than the former fixed 1e-12 and 1e-10.
    eps = float(np.finfo(config.dtype).eps)
    failures = []
    for name, r in records.items():
        if not r.bound_holds.all():
            failures.append(f"{name}: bound violated at {int((~r.bound_holds).sum())} betas")
        if r.resp_gap[-1] > 64 * eps:
            failures.append(
                f"{name}: responsibilities not one-hot at the largest beta "
                f"(max |r - onehot| = {r.resp_gap[-1]:.3g} > 64 eps)"
            )
        if r.update_gap[-1] > 256 * eps:
            failures.append(
                f"{name}: tempered update differs from the hard one at the largest beta "
                f"({r.update_gap[-1]:.3g} > 256 eps = {256 * eps:.3g})"
            )
        if r.fit_label_agreement[-1] != 1.0:
            failures.append(f"{name}: the fit at the largest beta ends off the hard partition")
    return failures


def summarize(config: VariantLimitsConfig, records: dict[str, VariantLimitsRecord]) -> str:
    """One line: bound counts, and the gaps at the two ends of the grid."""
    held = sum(int(np.sum(r.bound_holds)) for r in records.values())
    total = sum(np.size(r.bound_holds) for r in records.values())
    parts = [
        f"{n} resp {r.resp_gap[0]:.2g}->{r.resp_gap[-1]:.2g}, "
        f"update {r.update_gap[0]:.2g}->{r.update_gap[-1]:.2g}"
        for n, r in records.items()
    ]
    return f"variant_limits: bound held at {held}/{total} (variant, beta) points; " + "; ".join(
        parts
    )


EXPERIMENT = ExperimentSpec(
    name="variant_limits",
    config_type=VariantLimitsConfig,
    record_type=VariantLimitsRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={"n_samples": 300, "dim": 6, "k": 3, "n_beta": 6, "max_iter": 30},
    description=(
        "Poisson, Bernoulli and vMF mixtures as beta -> inf: responsibilities against the bound "
        "(K - 1) exp(-beta gap), tempered against hard (Bregman) updates, fits against hard fits"
    ),
    order=60,
)
