"""Figure 6: soft responsibilities harden as sigma2 falls (2-D small multiples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb

from . import FigureSpec
from . import _style as st

DATASET = "overlapping"


def component_colours(k: int) -> np.ndarray:
    """(k, 3) RGB colours, one per component, all distinct.

    The Okabe-Ito palette while it has enough colours, else a colormap: tab20 up to 20
    components, ``k`` evenly spaced turbo colours beyond.
    """
    if k <= len(st.PALETTE):
        return np.array([to_rgb(c) for c in st.PALETTE[:k]])
    if k <= 20:
        return np.asarray(colormaps["tab20"].colors[:k])[:, :3]
    return np.asarray(colormaps["turbo"](np.linspace(0.0, 1.0, k)))[:, :3]


def draw(results: dict, out_dir: Path) -> list[Path]:
    """Draw from the ``responsibilities`` results (its 2-D snapshots)."""
    run = results["responsibilities"]
    names = [n for n in st.dataset_order(list(run.records)) if run.records[n].snap_resp is not None]
    if not names:
        raise FileNotFoundError(
            "figure 'fig6_hardening' needs a 2-D data set in experiment 'responsibilities'; "
            "run `gmmlimit run responsibilities` with a synthetic data set (dim = 2)."
        )
    name = DATASET if DATASET in names else names[0]
    X = np.asarray(run.records[name].X)
    means = np.asarray(run.records[name].means)
    snaps = np.asarray(run.records[name].snap_sigma2)
    resp = np.asarray(run.records[name].snap_resp)  # (P, N, K)
    crit = float(run.records[name].critical_sigma2)
    k = resp.shape[2]
    colours = component_colours(k)
    n_panels = len(snaps)
    fig, axes = st.figure(n_panels, wide=True, height=1.75, sharex=True, sharey=True)
    for j, ax in enumerate(axes[0]):
        rgb = np.clip(resp[j] @ colours, 0, 1)
        ax.scatter(X[:, 0], X[:, 1], c=rgb, s=3, lw=0, rasterized=True)
        ax.plot(means[:, 0], means[:, 1], "k+", ms=6, mew=1.2)
        hard = np.mean(np.max(resp[j], axis=1) > 0.99)
        label = "0 (K-means)" if snaps[j] == 0 else f"{snaps[j] / crit:.2g}"
        ax.set_title(rf"$\sigma^2/\sigma^2_c$ = {label}" + f"\n{100 * hard:.0f}% rows > 0.99")
        ax.set_aspect("equal", adjustable="box")
        ax.set_xticks([-2, 0, 2])
        ax.set_yticks([-2, 0, 2])
        ax.set_xlabel(r"$x_1$ (std. units)")
    axes[0][0].set_ylabel(r"$x_2$ (std. units)")
    fig.tight_layout(w_pad=0.3)
    return st.save(fig, out_dir, "fig6_hardening")


FIGURE = FigureSpec(
    name="fig6_hardening",
    needs=("responsibilities",),
    draw=draw,
    title="Soft responsibilities harden as sigma2 falls",
    order=6,
    caption=(
        "The 2-D overlapping mixture (K = 3, standardised) with each point coloured by its "
        "responsibility mix sum_k r_nk c_k, the c_k being three Okabe-Ito colours (blue, "
        "vermillion, green): mixed colours are soft assignments, pure colours hard ones. The "
        "means (+) are fixed at the Lloyd fixed point; panels go from sigma2 equal to the "
        "critical sigma2_c = lambda_max(C) of the data down to 0, where the colouring is exactly "
        "the K-means partition. Titles give sigma2/sigma2_c and the share of rows whose largest "
        "responsibility exceeds 0.99. Experiment `responsibilities` (config key snapshot_sigma2)."
    ),
)
