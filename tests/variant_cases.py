"""Data sets and starting parameters shared by the variant tests.

Every test of one variant uses the same data shape, dtype and ``MAX_ITER``, so the one fit
driver compiles once per variant and dtype for the whole test session (beta and tol are traced).
"""

import numpy as np
from sklearn.datasets import load_wine
from variant_contract import VariantCase

from gmmlimit import variants as gv
from gmmlimit.variants._gaussian import PER_COMPONENT_MIN_FEATURES

MAX_ITER = 30
REG = 1e-6
W3 = np.array([0.3, 0.3, 0.4])


def wine() -> np.ndarray:
    X = load_wine().data
    return (X - X.mean(0)) / X.std(0)


def counts(seed: int = 0, n: int = 300, d: int = 6, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 3.0, size=(k, d))
    return rng.poisson(rates[rng.integers(k, size=n)]).astype(np.float64)


def binary(seed: int = 0, n: int = 300, d: int = 12, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = rng.beta(0.7, 0.7, size=(k, d))
    return (rng.uniform(size=(n, d)) < probs[rng.integers(k, size=n)]).astype(np.float64)


def sphere(seed: int = 0, n: int = 300, d: int = 4, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 2.0
    X = centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def heavy_tailed(seed: int = 0, n: int = 300) -> np.ndarray:
    """Three 2-D Student-t clusters with 2, 5 and 30 degrees of freedom."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(3, size=n)
    nus = np.array([2.0, 5.0, 30.0])[labels]
    scale = np.sqrt(rng.chisquare(nus) / nus)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    return centres[labels] + rng.normal(size=(n, 2)) / scale[:, None]


def positive(seed: int = 0, n: int = 300, d: int = 4, k: int = 3, shape: float = 3.0) -> np.ndarray:
    """Gamma rows (shape ``shape``) around k mean vectors spread over two decades."""
    rng = np.random.default_rng(seed)
    means = 10.0 ** rng.uniform(-1.0, 1.0, size=(k, d))
    return rng.gamma(shape, means[rng.integers(k, size=n)] / shape)


T_MEANS = np.array([[0.5, 0.5], [7.5, 0.5], [0.5, 7.5]])


def correlated(seed: int = 0, n: int = 240, d: int = 16, k: int = 3) -> np.ndarray:
    """k overlapping clusters of correlated Gaussian rows, each with its own random covariance."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=0.5, size=(k, d))
    mixing = rng.normal(size=(k, d, d)) / np.sqrt(d)
    labels = rng.integers(k, size=n)
    return centres[labels] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), mixing[labels])


def rows(X: np.ndarray, seed: int, k: int = 3) -> np.ndarray:
    return X[np.random.default_rng(seed).choice(X.shape[0], k, replace=False)]


def _probs(d: int, seed: int = 2) -> np.ndarray:
    # random, tie-free starting probabilities (binary rows clipped to [0.2, 0.8] would tie)
    return np.random.default_rng(seed).uniform(0.2, 0.8, size=(3, d))


def _cases() -> dict[str, VariantCase]:
    w = wine()
    m = rows(w, 0)
    d = w.shape[1]
    c, b, s, t, g = counts(), binary(), sphere(), heavy_tailed(), positive()
    eye = np.stack([np.eye(d)] * 3)
    # Full and tied again at PER_COMPONENT_MIN_FEATURES features, where their E-step and moments
    # loop over the components instead of batching them (wine has 13).
    wide = correlated(d=PER_COMPONENT_MIN_FEATURES)
    dw = wide.shape[1]
    return {
        "spherical": VariantCase(gv.spherical, w, gv.SphericalParams(m, np.ones(3), W3, 1.0, REG)),
        "diag": VariantCase(gv.diag, w, gv.DiagParams(m, np.ones((3, d)), W3, 1.0, REG)),
        "full": VariantCase(gv.full, w, gv.FullParams(m, eye, W3, 1.0, REG)),
        "tied": VariantCase(gv.tied, w, gv.TiedParams(m, np.eye(d), W3, 1.0, REG)),
        "full_16_features": VariantCase(
            gv.full, wide, gv.FullParams(rows(wide, 5), np.stack([np.eye(dw)] * 3), W3, 1.0, REG)
        ),
        "tied_16_features": VariantCase(
            gv.tied, wide, gv.TiedParams(rows(wide, 5), np.eye(dw), W3, 1.0, REG)
        ),
        "shared_spherical": VariantCase(
            gv.shared_spherical,
            w,
            gv.SharedSphericalParams(m, 1.0, W3, 1.0, REG),
            rtol=1e-6,  # 30 soft iterations amplify summation-order rounding to ~1.3e-7
        ),
        "poisson": VariantCase(gv.poisson, c, gv.PoissonParams(rows(c, 1) + 0.5, W3, 1.0, 1e-3)),
        "bernoulli": VariantCase(
            gv.bernoulli, b, gv.BernoulliParams(_probs(b.shape[1]), W3, 1.0, 1e-3)
        ),
        "vmf": VariantCase(gv.vmf, s, gv.VMFParams(rows(s, 3), W3, 1.0), betas=(1.0, 5.0, 20.0)),
        "isotropic": VariantCase(
            gv.isotropic,
            w[:, :4],
            gv.IsotropicParams(m[:, :4], 2.0),
            betas=(2.0, 0.5, 0.1),
            large_beta=1e-4,
            free_energy=False,
        ),
        "gamma": VariantCase(gv.gamma, g, gv.GammaParams(rows(g, 4), 3.0, W3, 1.0)),
        "student_t": VariantCase(
            gv.student_t,
            t,
            gv.StudentTParams(T_MEANS, np.ones(3), np.full(3, 5.0), W3, 1.0, REG),
            tol=1e-4,  # relative gain: ECM for the degrees of freedom converges slowly
            means_rtol=1e-5,
            rtol=1e-6,  # the inner L-BFGS of the degrees of freedom amplifies summation order
        ),
    }


CASES = _cases()
