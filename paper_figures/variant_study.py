"""One variant's limit study: responsibilities, objectives, updates and annealing toward hard."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import FigureSpec
from . import _style as st

NAME = "variant_study"


def _record(results: dict):
    run = results[NAME]
    if len(run.records) != 1:
        raise FileNotFoundError(
            f"figure {NAME!r} reads one variant per run; run {run.run_id} holds {len(run.records)}."
        )
    return next(iter(run.records.values()))


def _positive(values: np.ndarray) -> np.ndarray:
    """The values with zeros (exact one-hot, equal updates) masked out of a log axis."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    return np.where(values > 0, values, np.nan)


def describe(results: dict) -> str:
    """The caption's sentence naming the variant, its temperature and data of this drawing."""
    r = _record(results)
    hard = "infinity" if math.isinf(r.hard) else f"{r.hard:g}"
    return (
        f"Variant: `{r.variant}` (given as `{r.spec}`), temperature {r.temperature_name} -> "
        f"{hard}, data `{r.data}`, tau = the start's mean log-odds gap g_n ({r.cost_scale:.4g} at "
        "temperature 1)."
    )


def draw(results: dict, out_dir: Path) -> list[Path]:
    """Draw from the ``variant_study`` run (its single variant)."""
    r = _record(results)
    tau = np.asarray(r.tau)
    fig, axes = st.figure(4, wide=True, height=2.2)
    ax = axes[0]
    ax[0].loglog(
        tau, _positive(r.resp_gap), "o-", color=st.PALETTE[0], ms=3, label="max |r - onehot|"
    )
    ax[0].loglog(tau, _positive(r.bound), "--", color=st.PALETTE[1], label="bound (K-1) exp(-g)")
    ax[0].set_ylabel("responsibility gap")
    ax[0].legend(loc="lower left")
    ax[1].loglog(tau, _positive(r.objective_gap), "o-", color=st.PALETTE[0], ms=3)
    ax[1].set_ylabel("|objective - (-J)|")
    ax[2].loglog(tau, _positive(r.update_gap), "o-", color=st.PALETTE[0], ms=3, label="one update")
    ax[2].loglog(tau, _positive(r.fit_means_gap), "s-", color=st.PALETTE[2], ms=3, label="full fit")
    ax[2].set_ylabel("max |tempered - hard|")
    ax[2].legend(loc="lower left")
    for a in ax[:3]:
        a.set_xlim(tau[0] / 2, tau[-1] * 2)
        a.set_xlabel(r"reduced temperature $\tau$ (colder $\to$)")
    stages = np.arange(len(r.anneal_distortion))
    ax[3].plot(stages, r.anneal_distortion, "o-", color=st.PALETTE[0], ms=3, label="annealed J")
    ax[3].axhline(-r.hard_objective, color=st.PALETTE[1], ls="--", label="hard fit J")
    ax[3].set_xticks(stages, [*(f"{t:.0e}" for t in np.asarray(r.anneal_tau)), "hard"])
    ax[3].tick_params(axis="x", labelrotation=60)
    ax[3].set_xlabel(r"annealing stage ($\tau$)")
    ax[3].set_ylabel("distortion J")
    ax[3].legend(loc="upper right")
    for a, label in zip(ax, "abcd", strict=True):
        st.label_panel(a, f"({label})")
    fig.suptitle(f"{r.variant}: {r.temperature_name} toward its hard limit", fontsize=st.TEXT)
    fig.tight_layout(w_pad=0.6)
    return st.save(fig, out_dir, NAME)


FIGURE = FigureSpec(
    name=NAME,
    needs=(NAME,),
    draw=draw,
    describe=describe,
    title="One variant's limit study",
    order=65,
    caption=(
        "The limit study of the variant named in the run (`gmmlimit run variant_study --variant "
        "NAME` or `--variant package.module:attr`), against the reduced temperature tau (the "
        "starting components' mean log-odds gap g_n over the rows at that temperature, free of "
        "the data's units; larger is colder). "
        "(a) The largest responsibility gap |r_nk - onehot_nk| stays under its bound "
        "(K - 1) exp(-g_n) and falls toward 0, exactly 0 once every row's gap g_n is past the "
        "dtype's underflow threshold (a grid that stops warmer ends above 0). (b) The "
        "objective (free energy, or "
        "log-likelihood for the isotropic model) approaches the hard objective -J at the same "
        "parameters. (c) One update at the temperature against one hard update, and a full fit "
        "against the hard fit, from the same start. (d) The annealing path, warm-started along "
        "the grid with the hard limit last: its distortion J at each stage against a hard fit "
        "from the start. Points at exactly 0 are left off the log axes. Experiment `variant_study` "
        "(default: the Gamma mixture, hard limit Itakura-Saito clustering, on positive data)."
    ),
)
