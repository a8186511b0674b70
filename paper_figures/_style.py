"""The one shared figure style: serif text without TeX, a colour-blind-safe palette, paper sizes.

Fonts: matplotlib's bundled STIX (mathtext ``stix``), falling back to DejaVu Serif, so the output
looks like LaTeX text without a TeX install. Colours: the Okabe-Ito palette. Sizes: one column is
3.4 in wide, two columns 7.0 in (typical two-column journals).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

__all__ = [
    "COLUMN",
    "PALETTE",
    "TEXT",
    "WIDE",
    "apply",
    "dataset_order",
    "figure",
    "label_panel",
    "provenance_note",
    "save",
]

COLUMN = 3.4  # inches, one column of a two-column paper
WIDE = 7.0  # inches, full page width
TEXT = 8  # points

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
PALETTE = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

_RC = {
    "font.family": "serif",
    "font.serif": ["STIXGeneral", "DejaVu Serif"],
    "mathtext.fontset": "stix",
    "font.size": TEXT,
    "axes.titlesize": TEXT - 0.5,
    "axes.labelsize": TEXT,
    "legend.fontsize": TEXT - 1,
    "xtick.labelsize": TEXT - 1,
    "ytick.labelsize": TEXT - 1,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 3,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,
    "text.usetex": False,
    "axes.grid": False,
}


def apply() -> None:
    """Install the style (idempotent)."""
    matplotlib.rcParams.update(_RC)


def figure(
    ncols: int = 1, nrows: int = 1, *, wide: bool = False, height: float | None = None, **kw
):
    """A styled figure and axes grid, one column or full width."""
    apply()
    width = WIDE if wide else COLUMN
    height = height if height is not None else (2.3 if not wide else 2.1) * nrows
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kw)


def label_panel(ax, text: str) -> None:
    """A bold panel label like (a) in the top-left corner, outside the data."""
    ax.set_title(text, loc="left", fontweight="bold", fontsize=TEXT)


_NOTE: list[str] = []


@contextlib.contextmanager
def provenance_note(text: str | None) -> Iterator[None]:
    """While active, :func:`save` prints ``text`` under the figure (a run with overrides)."""
    _NOTE.append(text or "")
    try:
        yield
    finally:
        _NOTE.pop()


def _add_note(fig, text: str) -> None:
    """Print ``text`` in red below everything already drawn (axes, labels, a legend below them).

    A fixed spot such as figure coordinates (0, 0) lands on a legend placed under the axes, so
    the note goes one gap under the bottom of the figure's tight box, at its left edge.
    """
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
    width, height = fig.get_size_inches()
    gap = 0.04  # inches
    x = min(max(box.x0, 0.0), width) / width
    y = (box.y0 - gap) / height
    fig.text(x, y, text, ha="left", va="top", fontsize=TEXT - 2, color="#B00000", wrap=True)


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.pdf`` (vector) and ``name.png`` into ``out_dir`` and close the figure.

    Under :func:`provenance_note`, the note is printed in red under the axes first, so a figure
    drawn from a run with overrides says so even when it travels without its caption.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if _NOTE and _NOTE[-1]:
        _add_note(fig, _NOTE[-1])
    paths = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    # The tight box once, for both files: savefig's own "tight" lays the figure out once more
    # per file before drawing it.
    pad = matplotlib.rcParams["savefig.pad_inches"]
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(pad)
    for path in paths:
        # no creation date in the PDF, so drawing the same results again gives the same bytes
        extra = {"metadata": {"CreationDate": None}} if path.suffix == ".pdf" else {}
        fig.savefig(path, bbox_inches=box, **extra)
    plt.close(fig)
    return paths


def dataset_order(names: Sequence[str]) -> list[str]:
    """Data sets in the canonical order."""
    canon = ("separated", "overlapping", "anisotropic", "digits")
    return sorted(names, key=lambda n: canon.index(n) if n in canon else len(canon))


def log_ticks(ax, axis: str = "both") -> None:
    """Sparse decade ticks (every other decade when a log axis spans many)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    for name in ("x", "y") if axis == "both" else (axis,):
        target = ax.xaxis if name == "x" else ax.yaxis
        if (ax.get_xscale() if name == "x" else ax.get_yscale()) != "log":
            continue
        lo, hi = ax.get_xlim() if name == "x" else ax.get_ylim()
        import math

        span = abs(math.log10(max(hi, 1e-300)) - math.log10(max(lo, 1e-300)))
        step = max(1, math.ceil(span / 5))
        target.set_major_locator(LogLocator(base=10.0**step, numticks=12))
        target.set_minor_locator(LogLocator(base=10.0, subs="auto", numticks=12))
        target.set_minor_formatter(NullFormatter())


DATASET_LABEL = {
    "separated": "separated",
    "overlapping": "overlapping",
    "anisotropic": "anisotropic",
    "digits": "digits (64-D)",
}
