"""Figure 3: the distance between one EM update and one Lloyd update, against sigma2."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import FigureSpec
from . import _style as st


def draw(results: dict, out_dir: Path) -> list[Path]:
    """Draw from the ``updates`` results."""
    run = results["updates"]
    names = st.dataset_order(list(run.records))
    fig, axes = st.figure(len(names), wide=True, height=2.1)
    for i, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        s2 = np.asarray(run.records[name].sigma2)
        pos = s2 > 0
        gap = np.asarray(run.records[name].gap)[:, pos]
        bound = np.asarray(run.records[name].bound)[:, pos]
        for j in range(gap.shape[0]):
            color = st.PALETTE[j % 6]
            ax.plot(
                s2[pos],
                np.where(gap[j] > 0, gap[j], np.nan),
                "o-",
                ms=1.8,
                lw=0.9,
                color=color,
                label="EM vs Lloyd update" if j == 0 else None,
            )
            finite = np.isfinite(bound[j]) & (bound[j] > 0)
            ax.plot(
                s2[pos][finite],
                bound[j][finite],
                "--",
                lw=0.8,
                color=color,
                label="explicit bound (statement 3)" if j == 0 else None,
            )
        zero = np.all(gap <= float(run.records[name].round_tol), axis=0)
        if zero.any():
            first = s2[pos][np.argmax(zero)]
            ax.axvspan(
                s2[pos].min() / 2,
                first,
                color=st.PALETTE[2],
                alpha=0.13,
                lw=0,
                label="updates equal to float64 rounding",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-22, 1e2)
        ax.set_yticks([1e0, 1e-5, 1e-10, 1e-15, 1e-20])
        ax.set_xlim(s2[pos].min() / 2, s2[pos].max() * 2)
        st.log_ticks(ax, "x")
        ax.set_xlabel(r"$\sigma^2$ (squared data units)")
        ax.set_title(f"{st.DATASET_LABEL.get(name, name)} ({gap.shape[0]} starts)")
        if i == 0:
            ax.set_ylabel(r"$\|\mu^{\rm EM} - \mu^{\rm Lloyd}\|_F$ (data units)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout(w_pad=0.5)
    return st.save(fig, out_dir, "fig3_updates")


FIGURE = FigureSpec(
    name="fig3_updates",
    needs=("updates",),
    draw=draw,
    title="One EM update approaches one Lloyd update",
    order=3,
    caption=(
        "Frobenius distance between one EM mean update and one Lloyd update taken from the same "
        "k-means++ starting means (one colour per start), against sigma2, log-log. Dashed: the "
        "explicit form of statement 3, sum_n b_n ||x_n - c_k|| / (N_k - sum_n b_n) with b_n = (K "
        "- 1) exp(-Delta_n/(2 sigma2)) from bound 1, c_k the Lloyd update and N_k its counts; it "
        "is vacuous (not drawn) at large sigma2 and decays like exp(-min(Delta)/(2 sigma2)). The "
        "measured distance stays below the bound and drops to exactly 0 (off the log axis) as "
        "soon as the soft corrections fall below float64 rounding: in the green region the two "
        "updates agree to rounding (16 eps max|x| sqrt(KD); on the quick data bit for bit), as "
        "at sigma2 = 0. Experiment `updates`."
    ),
)
