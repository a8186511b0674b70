"""EM against Adam and L-BFGS: cost to the same log-likelihood, and the cost curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter

from . import FigureSpec
from ._style import PALETTE, dataset_order, figure, label_panel, save

__all__ = ["FIGURE", "draw"]

LABELS = {"em": "EM", "adam": "Adam (best step)", "lbfgs": "L-BFGS"}


def draw(results: dict, out_dir: Path) -> list[Path]:
    """Per data set: iterations and seconds to the target against sigma2; gap curves."""
    records = results["em_vs_gradient"].records
    names = dataset_order(list(records))
    methods = list(records[names[0]].methods)
    fig, axes = figure(3, len(names), wide=True, height=2.2 * len(names))
    for i, name in enumerate(names):
        lam = records[name].lambda_max
        rel = np.asarray(records[name].sigma2) / lam
        its = np.asarray(records[name].iterations, dtype=float)
        secs = np.asarray(records[name].seconds)
        hist = np.asarray(records[name].history)  # (S, M, T)
        for j, m in enumerate(methods):
            color = PALETTE[j]
            y = np.where(its[:, j] >= 0, np.maximum(its[:, j], 0.5), np.nan)
            axes[i, 0].plot(rel, y, "o-", color=color, label=LABELS.get(m, m))
            axes[i, 1].plot(rel, secs[:, j] * 1e3, "o-", color=color)
        # cost curves at the sigma2 closest to 0.5 lambda_max
        s = int(np.argmin(np.abs(np.log(rel / 0.5))))
        best = hist[s].max()
        start = hist[s, 0, 0]
        for j in range(len(methods)):
            gap = (best - hist[s, j]) / (best - start)
            axes[i, 2].plot(np.arange(gap.size), np.maximum(gap, 1e-16), color=PALETTE[j])
        axes[i, 2].set_yscale("log")
        axes[i, 2].set_xlabel("iteration")
        axes[i, 2].set_ylabel("remaining gap (fraction)")
        axes[i, 2].set_title(rf"$\sigma^2 = {rel[s]:.2g}\,\lambda_{{\max}}$", fontsize=7)
        for col, ylabel in ((0, "iterations to target"), (1, "ms to target")):
            ax = axes[i, col]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.axvline(1.0, color="k", lw=0.8, ls="--")
            ax.set_xlabel(r"$\sigma^2 / \lambda_{\max}$")
            ax.set_ylabel(ylabel)
            ax.yaxis.set_minor_formatter(NullFormatter())
        label_panel(axes[i, 0], f"({chr(97 + 3 * i)}) {name}")
        label_panel(axes[i, 1], f"({chr(98 + 3 * i)})")
        label_panel(axes[i, 2], f"({chr(99 + 3 * i)})")
    axes[0, 0].legend(loc="best")
    fig.tight_layout()
    return save(fig, out_dir, "em_vs_gradient_cost")


FIGURE = FigureSpec(
    name="em_vs_gradient_cost",
    needs=("em_vs_gradient",),
    draw=draw,
    title="EM against gradient ascent on the log-likelihood",
    caption=(
        "EM, Adam (best of a few step sizes) and L-BFGS (optax, zoom line search) maximise the "
        "same isotropic log-likelihood over the means from the same k-means++ start (experiment "
        "`em_vs_gradient`, gl.study.compare_em_gradient). Target: all but 1e-6 of the best "
        "improvement over the start. (a) iterations and (b) compiled wall time to the target "
        "(the run's time times the share of its value-and-gradient evaluations spent before the "
        "target, which counts L-BFGS's line-search evaluations) "
        "against sigma2 / lambda_max (missing points: never reached in the budget); (c) the "
        "remaining fraction of the improvement against the iteration at one sigma2. EM needs no "
        "step size and its rate vanishes as sigma2 -> 0; near and above sigma2_c (dashed) its "
        "rate lambda_max / sigma2 nears 1 and L-BFGS wins."
    ),
    order=63,
)
