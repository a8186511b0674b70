"""Bifurcation diagram: centre coordinates along the annealing path, sigma2_c marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import FigureSpec
from ._style import PALETTE, dataset_order, figure, label_panel, save

__all__ = ["FIGURE", "draw"]


def draw(results: dict, out_dir: Path) -> list[Path]:
    """Two rows (first and second principal coordinate) by one column per data set."""
    records = results["phase_transition"].records
    names = dataset_order(list(records))
    fig, axes = figure(len(names), 2, wide=True, height=3.6, sharex="col")
    for j, name in enumerate(names):
        lam = records[name].lambda_max
        rel = np.asarray(records[name].sigma2)[:-1] / lam  # EM stages (K-means stage is 0)
        proj = np.asarray(records[name].projected)[:-1]  # (S, K, 2)
        later = np.asarray(records[name].split_predicted)[1:] / lam
        for row in range(2):
            ax = axes[row, j]
            for c in range(proj.shape[1]):
                color = PALETTE[c % len(PALETTE)]
                ax.plot(rel, proj[:, c, row], "-", lw=0.6, color=color, alpha=0.6)
                ax.plot(rel, proj[:, c, row], ".", ms=1.6, color=color)
            ax.axvline(1.0, color="k", lw=0.8, ls="--")
            for s in later:
                ax.axvline(s, color="0.5", lw=0.6, ls=":")
            ax.set_xscale("log")
            if row == 0:  # the two rows share this x axis: invert it once
                ax.set_xlim(rel.max() * 1.1, rel.min() / 1.1)
            if row == 1:
                ax.set_xlabel(r"$\sigma^2 / \lambda_{\max}$")
            if j == 0:
                ax.set_ylabel(f"centre, PC{row + 1}")
        label_panel(axes[0, j], f"({chr(97 + j)}) {name}")
        axes[0, j].text(
            1.0,
            1.0,
            r" $\sigma^2_c$",
            transform=axes[0, j].get_xaxis_transform(),
            va="top",
            fontsize=7,
        )
    return save(fig, out_dir, "bifurcation")


FIGURE = FigureSpec(
    name="bifurcation",
    needs=("phase_transition",),
    draw=draw,
    title="Bifurcation diagram of deterministic annealing",
    caption=(
        "Coordinates of the K centres on the first (top) and second (bottom) principal axis of "
        "the data, at the end of every annealing stage, against sigma2 / lambda_max on a "
        "decreasing log axis (experiment `phase_transition`: gl.anneal, fine stages of about "
        "0.8% through the first transition, then coarse ones). Dashed: the predicted first "
        "split sigma2_c = lambda_max(C) (gl.critical_sigma2); dotted: the later splits predicted "
        "by lambda_max of the splitting group's responsibility-weighted covariance. Above "
        "sigma2_c all centres sit at the data mean; they leave it along the top eigenvector. On "
        "data of one feature (D = 1) that feature is the first axis and there is no second: the "
        "bottom panel is 0."
    ),
    order=60,
)
