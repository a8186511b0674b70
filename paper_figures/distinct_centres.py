"""The number of distinct centres along the annealing path: a staircase."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import FigureSpec
from ._style import PALETTE, dataset_order, figure, label_panel, save

__all__ = ["FIGURE", "draw"]


def draw(results: dict, out_dir: Path) -> list[Path]:
    """One panel: the staircase of every data set, predicted split points as ticks."""
    records = results["phase_transition"].records
    names = dataset_order(list(records))
    fig, axes = figure(1, 1)
    ax = axes[0, 0]
    for i, name in enumerate(names):
        lam = records[name].lambda_max
        rel = np.asarray(records[name].sigma2)[:-1] / lam
        count = np.asarray(records[name].n_distinct)[:-1]
        offset = 0.06 * (i - (len(names) - 1) / 2)  # separate overlapping staircases
        color = PALETTE[i % len(PALETTE)]
        ax.step(rel, count + offset, where="post", color=color, label=name)
        predicted = np.asarray(records[name].split_predicted) / lam
        before = np.asarray(records[name].splits)[:, 2] if predicted.size else []
        ax.plot(predicted, np.asarray(before) + 0.5 + offset, "v", color=color, ms=3.5)
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(r"$\sigma^2 / \lambda_{\max}$")
    ax.set_ylabel("distinct centres")
    top = max(int(np.max(records[n].n_distinct)) for n in names)
    ax.set_yticks(range(1, top + 1))
    ax.legend(loc="lower right")
    label_panel(ax, "")
    return save(fig, out_dir, "distinct_centres")


FIGURE = FigureSpec(
    name="distinct_centres",
    needs=("phase_transition",),
    draw=draw,
    title="Distinct centres along the annealing path",
    caption=(
        "Number of distinct centres (means closer than 1% of the data scale merged, "
        "transitively) at the end of each annealing stage against sigma2 / lambda_max "
        "(decreasing log axis), one staircase per data set, slightly offset vertically "
        "(experiment `phase_transition`). Dashed: sigma2_c = lambda_max(C). Triangles: the "
        "predicted split points, lambda_max of the splitting group's responsibility-weighted "
        "covariance at the last stage before the split. The count leaves 1 within the grid "
        "resolution of sigma2_c on every data set, anisotropic ones included, where lambda_max "
        "is far from the mean variance."
    ),
    order=61,
)
