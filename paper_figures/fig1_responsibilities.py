"""Figure 1: the responsibility gap against 1/sigma2 with bound 1, one panel per data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import FigureSpec
from . import _style as st


def draw(results: dict, out_dir: Path) -> list[Path]:
    """Draw from the ``responsibilities`` results."""
    run = results["responsibilities"]
    names = st.dataset_order(list(run.records))
    fig, axes = st.figure(len(names), wide=True, height=2.0)
    for i, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        s2 = np.asarray(run.records[name].sigma2)
        pos = s2 > 0
        inv = 1.0 / s2[pos]
        max_gap = np.asarray(run.records[name].max_gap)[pos]
        mean_gap = np.asarray(run.records[name].mean_gap)[pos]
        mask = np.asarray(run.records[name].fit_mask)[pos]
        dmin = float(run.records[name].delta_min)
        thr = float(run.records[name].onehot_threshold)
        onset = 2 * thr / dmin
        scale = 10.0 ** np.floor(np.log10(onset))
        inv = inv / scale
        ax.plot(
            inv,
            np.where(max_gap > 0, max_gap, np.nan),
            "o-",
            color=st.PALETTE[0],
            ms=2.4,
            label=r"max $|r_{nk}-\mathbb{1}_{nk}|$",
        )
        ax.plot(
            inv,
            np.where(mean_gap > 0, mean_gap, np.nan),
            "s-",
            color=st.PALETTE[1],
            ms=1.8,
            lw=0.9,
            label=r"mean $|r_{nk}-\mathbb{1}_{nk}|$",
        )
        line = np.linspace(0, 1.08 * onset / scale, 200)
        ax.plot(
            line,
            (float(run.records[name].k) - 1) * np.exp(-dmin * line * scale / 2),
            "--",
            color=st.PALETTE[7],
            lw=0.9,
            zorder=5,
            label=r"bound 1, worst row: $(K{-}1)\,e^{-\Delta_{\min}/2\sigma^2}$",
        )
        if mask.any():
            ax.axvspan(
                inv[mask].min(),
                inv[mask].max(),
                color=st.PALETTE[2],
                alpha=0.13,
                lw=0,
                label="slope-fit regime",
            )
        ax.axvline(
            onset / scale,
            color=st.PALETTE[4],
            lw=0.9,
            ls=":",
            label=r"one-hot threshold: $\Delta_{\min}/2\sigma^2 = 708$",
        )
        ax.set_yscale("log")
        ax.set_xlim(0, 1.08 * onset / scale)
        ax.set_ylim(1e-320, 20)
        ax.set_yticks([1e0, 1e-100, 1e-200, 1e-300])
        exp10 = int(np.log10(scale))
        unit = "" if exp10 == 0 else rf"$10^{{{exp10}}}$ "
        ax.set_xlabel(rf"$1/\sigma^2$ ({unit}/ squared data unit)")
        if i == 0:
            ax.set_ylabel("responsibility gap")
        slope, pred = float(run.records[name].slope), float(run.records[name].slope_predicted)
        ax.set_title(
            f"{st.DATASET_LABEL.get(name, name)}\nslope {slope:.4g} (predicted {pred:.4g})"
        )
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout(w_pad=0.6)
    return st.save(fig, out_dir, "fig1_responsibilities")


FIGURE = FigureSpec(
    name="fig1_responsibilities",
    needs=("responsibilities",),
    draw=draw,
    title="Responsibilities harden exponentially fast, inside bound 1",
    order=1,
    caption=(
        "Largest (blue) and mean (vermillion) responsibility gap |r_nk - onehot_nk| (log axis) "
        "against 1/sigma2 (linear axis), at the Lloyd fixed point reached from a k-means++ start, "
        "one panel per data set (three synthetic 2-D mixtures with K = 3 and sklearn's digits "
        "with K = 10, all standardised). The dashed straight line is bound 1 for the worst row, "
        "(K - 1) exp(-min(Delta)/(2 sigma2)); the measured maximum never crosses it and runs "
        "parallel to it. In the green band, where the exponent min(Delta)/(2 sigma2) lies between "
        "5 and 0.9 times the float64 one-hot threshold, log(max gap) is fitted against 1/sigma2; "
        "panel titles give the fitted slope next to the predicted -min(Delta)/2. Right of the "
        "dotted line the exponent min(Delta)/(2 sigma2) passes about 708 and the responsibilities "
        "are exactly one-hot (the gap is 0 and leaves the log axis), as at the grid's last point "
        "sigma2 = 0. Experiment `responsibilities` (grid: twice the critical sigma2 down to 1.5x "
        "past the one-hot onset, log-spaced, plus 0)."
    ),
)
