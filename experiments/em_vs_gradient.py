"""EM against gradient ascent (optax Adam and L-BFGS) on the same log-likelihood of the means.

For each data set and each sigma2 of a grid (relative to lambda_max), EM, Adam (the best of a few
step sizes) and L-BFGS start from the same k-means++ means and run ``n_steps`` iterations
(:func:`gmmlimit.study.compare_em_gradient`). The target is the best log-likelihood any of them
reached less ``rel_gap`` times the best improvement over the start; the iterations and the
compiled wall time each needs to reach it are stored. EM's step is a gradient step preconditioned by
sigma2 / N_k, so it needs no step size and becomes Newton-like as sigma2 -> 0 (its rate goes to
0), while a fixed-step method faces a curvature N_k / sigma2 that grows without bound; near and
above sigma2_c EM slows down (rate lambda_max / sigma2 -> 1) and a quasi-Newton method does not.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

import gmmlimit as gl

from ._anneal_common import AnnealDataConfig
from ._common import dataset_key, load_data
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = ["EXPERIMENT", "EmVsGradientConfig", "EmVsGradientRecord", "run"]

METHODS = ("em", "adam", "lbfgs")


@dataclasses.dataclass(frozen=True)
class EmVsGradientConfig(AnnealDataConfig):
    """Config of the EM-vs-gradient experiment (defaults: the paper setting).

    Attributes:
        sigma2_rel: the sigma2 values, relative to lambda_max.
        n_steps: iterations of every method.
        rel_gap: fraction of the best improvement over the start left at the target.
        adam_rates: Adam step sizes tried, relative to the data scale sqrt(trace C).
        repeats: timed runs per method and sigma2.
    """

    sigma2_rel: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 1.2, 2.0)
    n_steps: int = 500
    rel_gap: float = 1e-6
    adam_rates: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
    repeats: int = 3

    def validate(self) -> None:
        """Refuse bad values before any work."""
        super().validate()
        if not self.sigma2_rel or any(not (s > 0 and np.isfinite(s)) for s in self.sigma2_rel):
            raise ValueError(f"sigma2_rel must be positive and finite; got {self.sigma2_rel}.")
        if not self.adam_rates or any(not r > 0 for r in self.adam_rates):
            raise ValueError(f"adam_rates must be positive; got {self.adam_rates}.")
        if self.n_steps < 2 or self.repeats < 1:
            raise ValueError("n_steps must be >= 2 and repeats >= 1.")
        if not self.rel_gap > 0:
            raise ValueError(f"rel_gap must be > 0; got {self.rel_gap}.")


@dataclasses.dataclass(frozen=True)
class EmVsGradientRecord:
    """One data set (S sigma2 values, M methods, T = n_steps iterations).

    Attributes:
        sigma2: (S,) the sigma2 values (squared data units).
        sigma2_rel: (S,) the same, relative to lambda_max.
        methods: the M method names (``em, adam, lbfgs``), the order of the M axes.
        iterations: (S, M) iterations to the target (-1: never reached).
        seconds: (S, M) compiled wall time to the target (NaN: never reached).
        seconds_per_iter: (S, M) wall time per iteration.
        final: (S, M) final log-likelihood.
        history: (S, M, T + 1) log-likelihood at every iteration.
        adam_rate_rel: (S,) Adam's best step size, relative to the data scale.
        lambda_max: the critical sigma2 of the data.
        n: rows N.
        d: features D.
        k: components K.
    """

    sigma2: np.ndarray
    sigma2_rel: np.ndarray
    methods: tuple[str, ...]
    iterations: np.ndarray
    seconds: np.ndarray
    seconds_per_iter: np.ndarray
    final: np.ndarray
    history: np.ndarray
    adam_rate_rel: np.ndarray
    lambda_max: float
    n: int
    d: int
    k: int


def _point(config: EmVsGradientConfig, name: str) -> EmVsGradientRecord:
    X, _, info = load_data(config, name)
    k = info["k"]
    lam = float(gl.critical_sigma2(X))
    centred = X - X.mean(0)
    scale = float(np.sqrt(np.mean(np.sum(centred * centred, axis=1))))
    start = gl.init.kmeans_plusplus(jax.random.fold_in(dataset_key(config.seed, name), 9), X, k)
    grid = lam * np.asarray(config.sigma2_rel, dtype=np.float64)
    shape = (grid.size, len(METHODS))
    iterations = np.empty(shape, dtype=np.int64)
    seconds = np.empty(shape)
    per_iter = np.empty(shape)
    final = np.empty(shape)
    histories = np.empty((*shape, config.n_steps + 1))
    adam_lr = np.empty(grid.size)
    for i, s2 in enumerate(grid):
        costs = gl.study.compare_em_gradient(
            X,
            start,
            s2,
            methods=METHODS,
            n_steps=config.n_steps,
            rel_gap=config.rel_gap,
            learning_rate=[r * scale for r in config.adam_rates],
            repeats=config.repeats,
        )
        for j, m in enumerate(METHODS):
            c = costs[m]
            iterations[i, j] = c.iterations
            seconds[i, j] = c.seconds
            per_iter[i, j] = c.seconds_per_iter
            final[i, j] = c.final
            histories[i, j] = c.history
        adam_lr[i] = costs["adam"].learning_rate / scale
    out: dict[str, Any] = {
        "sigma2": grid,
        "sigma2_rel": np.asarray(config.sigma2_rel, dtype=np.float64),
        "methods": METHODS,
        "iterations": iterations,
        "seconds": seconds,
        "seconds_per_iter": per_iter,
        "final": final,
        "history": histories,
        "adam_rate_rel": adam_lr,
        "lambda_max": lam,
        "n": info["n"],
        "d": info["d"],
        "k": k,
    }
    return EmVsGradientRecord(**out)


def run(
    config: EmVsGradientConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, EmVsGradientRecord]:
    """Every data set is one resumable point; pure computation."""
    return sweep(
        resume,
        list(config.datasets),
        lambda n: _point(config, n),
        progress,
        "data sets",
        EmVsGradientRecord,
    )


def check(config: EmVsGradientConfig, records: dict[str, EmVsGradientRecord]) -> list[str]:
    """Verified: EM's log-likelihood never decreases (EM is a monotone algorithm)."""
    failures = []
    for name, r in records.items():
        em = r.history[:, r.methods.index("em")]  # (S, T + 1)
        steps = np.diff(em, axis=1)
        if np.any(steps < -1e-9 * np.abs(em[:, :-1])):
            failures.append(f"{name}: EM's log-likelihood decreased")
    return failures


def summarize(config: EmVsGradientConfig, records: dict[str, EmVsGradientRecord]) -> str:
    """One line: per data set, the winner (fewest iterations to the target) at each sigma2.

    The winner is decided by iterations, which the same seed reproduces bit for bit; the wall
    times in the records (``seconds``, ``seconds_per_iter``) are measurements that vary from
    run to run, so they never decide the summary. Methods tied on iterations share the win
    (``em=lbfgs``); ``none`` when no method reached the target.
    """
    parts = []
    for name, record in records.items():
        methods = record.methods
        cells = []
        for i, r in enumerate(record.sigma2_rel):
            its = record.iterations[i]
            reached = its >= 0
            if reached.any():
                fewest = its[reached].min()
                tied = zip(methods, its, reached, strict=True)
                win = "=".join(m for m, n, ok in tied if ok and n == fewest)
            else:
                win = "none"
            its_txt = "/".join(str(int(v)) for v in its)
            cells.append(f"{r:g}:{win}({its_txt})")
        parts.append(
            f"{name} [sigma2/lambda: fewest-iterations winner(iters em/adam/lbfgs)] "
            + " ".join(cells)
        )
    return "em_vs_gradient: " + "; ".join(parts)


EXPERIMENT = ExperimentSpec(
    name="em_vs_gradient",
    config_type=EmVsGradientConfig,
    record_type=EmVsGradientRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={
        "datasets": ("anisotropic",),
        "n_samples": 300,
        "sigma2_rel": (0.02, 0.2, 1.2),
        "n_steps": 150,
        "adam_rates": (0.05,),
        "repeats": 3,
    },
    description=(
        "iterations and wall time of EM, Adam and L-BFGS to the same log-likelihood against sigma2"
    ),
    order=63,
)
