"""The paper's content as data: every number is formatted here from a run's results.

The typst template holds the prose and the mathematics; this module turns the runs read by
:mod:`._reader` into the JSON document the template lays out: statements with their bounds and
outcomes, a predicted-vs-measured table, the figures and the provenance of every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._reader import PaperFigure, PaperRun

__all__ = ["BOUNDS", "code_provenance", "document", "fmt", "table_rows"]

# The bound or prediction each experiment verifies, in words and symbols (no measured numbers).
BOUNDS: dict[str, str] = {
    "responsibilities": "|r_nk - onehot_nk| <= (K-1) exp(-Delta_n / (2 sigma2)); the log of the "
    "largest gap falls with slope -min(Delta)/2 against 1/sigma2",
    "loglik": "J - 2 N sigma2 ln K <= L~ <= J, with L~ = -2 sigma2 [l + N ln K + (N D/2) "
    "ln(2 pi sigma2)] -> J exponentially fast (J - L~ <= 2 sigma2 (K-1) sum_n "
    "exp(-Delta_n / (2 sigma2)), counted where it exceeds the rounding slack); L~ equals its "
    "float64 recomputation from the definition to rounding",
    "updates": "the EM and Lloyd mean updates from the same means differ by "
    "O(exp(-Delta / (2 sigma2))), and not at all past the one-hot threshold",
    "trajectories": "EM started where Lloyd starts ends at Lloyd's partition at every grid "
    "sigma2 at or below sigma2_onehot = Delta_path / (2 ln(N (K-1) / eps)) (Delta_path the "
    "smallest gap on Lloyd's path from that start), so sigma2* >= that grid point > 0",
    "precision": "a log-domain softmax is exactly one-hot once Delta_n / (2 sigma2) passes "
    "-ln(eps) of the dtype; no NaN or inf on the way to sigma2 = 0",
    "phase_transition": "the collapsed fixed point mu_k = mean(X) splits at sigma2 = lambda_max(C)",
    "variant_limits": "each variant's tempered responsibilities and updates approach its hard "
    "limit within its bound as beta grows",
    "anneal_vs_lloyd": "annealing's median distortion is at most the median of Lloyd's from "
    "random starts and from k-means++ starts (an empirical claim on these data sets), and each "
    "annealing distortion is the K-means objective of its final means",
    "variant_study": "each variant's responsibility gap stays within bound 1 and shrinks toward "
    "the hard limit, and the annealing path's hard-stage J is that of its final parameters",
    "convergence_rate": "near the collapsed point the EM map contracts at rate lambda_max / sigma2",
    "em_vs_gradient": "EM never decreases the log-likelihood",
}


def fmt(value: Any) -> str:
    """A result number as the paper prints it: integers exactly, reals to 4 significant digits.

    Raises:
        ValueError: for a value that is not a real number (a bool, a string, an array...).
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"fmt: not a real number: {value!r}")
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _count(mask: Any) -> tuple[str, str]:
    """``(total, held)`` of a boolean array, as printed."""
    arr = np.asarray(mask, dtype=bool)
    return fmt(int(arr.size)), fmt(int(arr.sum()))


Row = dict[str, str]


def _row(run: PaperRun, subject: str, quantity: str, predicted: str, measured: str) -> Row:
    return {
        "experiment": run.name,
        "subject": subject,
        "quantity": quantity,
        "predicted": predicted,
        "measured": measured,
    }


def _responsibilities(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        total, held = _count(run.field(s, "held"))
        rows.append(_row(run, s, "sigma2 points within bound 1", total, held))
        rows.append(
            _row(
                run,
                s,
                "slope of log max gap vs 1/sigma2 (predicted -min(Delta)/2)",
                fmt(run.field(s, "slope_predicted")),
                fmt(run.field(s, "slope")),
            )
        )
    return rows


def _loglik(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        matches = run.field(s, "ltilde_matches")
        if matches is not None:  # None: a record made before the recomputation
            total, held = _count(matches)
            rows.append(
                _row(run, s, "sigma2 points where L~ equals its float64 recomputation", total, held)
            )
        total, held = _count(run.field(s, "held"))
        rows.append(_row(run, s, "sigma2 points within bound 2", total, held))
        total, held = _count(run.field(s, "rate_held"))
        rows.append(
            _row(
                run,
                s,
                "sigma2 points within the exponential rate, of those where it can fail",
                total,
                held,
            )
        )
        rows.append(
            _row(
                run,
                s,
                "L~ at sigma2 = 0 (predicted: the distortion J)",
                fmt(run.field(s, "J")),
                fmt(float(np.asarray(run.field(s, "ltilde"))[-1])),
            )
        )
    return rows


def _updates(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        total, held = _count(run.field(s, "held"))
        rows.append(
            _row(
                run,
                s,
                "(start, sigma2) points within the update bound, of those where it can fail",
                total,
                held,
            )
        )
        rows.append(
            _row(
                run,
                s,
                "points past the one-hot threshold with identical updates",
                fmt(run.field(s, "n_past_threshold")),
                fmt(run.field(s, "bitwise_zero_past_threshold")),
            )
        )
    return rows


def _trajectories(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        star = np.asarray(run.field(s, "sigma2_star"))
        rows.append(
            _row(
                run,
                s,
                "restarts reaching Lloyd's partition below a positive sigma2*",
                fmt(int(star.size)),
                fmt(int(np.sum(star > 0))),
            )
        )
        rows.append(
            _row(
                run,
                s,
                "range of sigma2* over restarts",
                "positive",
                f"{fmt(float(star.min()))} to {fmt(float(star.max()))}",
            )
        )
        predicted = np.asarray(run.field(s, "sigma2_onehot"))
        testable = np.asarray(run.field(s, "n_below_prediction")) > 0
        equal = np.asarray(run.field(s, "equal_below_prediction"), dtype=bool)
        rows.append(
            _row(
                run,
                s,
                "restarts with Lloyd's partition at every grid sigma2 up to the predicted "
                "sigma2_onehot, of those whose grid reaches below it",
                fmt(int(testable.sum())),
                fmt(int((testable & equal).sum())),
            )
        )
        rows.append(
            _row(
                run,
                s,
                "sigma2* / predicted sigma2_onehot over restarts",
                "at least 1, to the grid's spacing",
                f"{fmt(float(np.min(star / predicted)))} to {fmt(float(np.max(star / predicted)))}",
            )
        )
    return rows


def _precision(run: PaperRun) -> list[Row]:
    rows = []
    by_subject = {s: run.field(s, "by_dtype") for s in run.subjects()}
    dtypes = list(dict.fromkeys(d for by_dtype in by_subject.values() for d in by_dtype))
    for dtype in dtypes:
        for s, by_dtype in by_subject.items():
            if dtype not in by_dtype:
                continue
            label = f"{s}-{dtype}"

            def get(name: str, s: str = s, dtype: str = dtype) -> Any:
                return run.field(s, "by_dtype", dtype, name)

            rows.append(
                _row(
                    run,
                    label,
                    "one-hot onset of Delta/(2 sigma2) (measured: last soft, first hard)",
                    fmt(get("threshold")),
                    f"{fmt(get('x_soft_max'))}, {fmt(get('x_hard_min'))}",
                )
            )
            rows.append(
                _row(
                    run,
                    label,
                    "sigma2 where the naive E-step turns NaN",
                    fmt(get("naive_nan_onset_predicted")),
                    fmt(get("naive_nan_onset")),
                )
            )
            rows.append(
                _row(
                    run,
                    label,
                    "rows with NaN or inf from the stable E-step",
                    "none",
                    fmt(int(np.sum(get("stable_nonfinite_rows")))),
                )
            )
    return rows


def _phase_transition(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        rows.append(
            _row(
                run,
                s,
                "first split sigma2 (predicted lambda_max; measured: bracket)",
                fmt(run.field(s, "lambda_max")),
                f"{fmt(run.field(s, 'first_split_after'))} to "
                f"{fmt(run.field(s, 'first_split_before'))}",
            )
        )
    return rows


def _variant_limits(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        total, held = _count(run.field(s, "bound_holds"))
        rows.append(_row(run, s, "beta values within the bound", total, held))
        rows.append(
            _row(
                run,
                s,
                "responsibility gap at the largest beta",
                "one-hot",
                fmt(float(np.asarray(run.field(s, "resp_gap"))[-1])),
            )
        )
    return rows


def _anneal_vs_lloyd(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        rows.append(
            _row(
                run,
                s,
                "median annealing distortion / median random-start Lloyd distortion",
                "at most one",
                fmt(run.field(s, "anneal_over_median_random")),
            )
        )
        rows.append(
            _row(
                run,
                s,
                "median annealing distortion / median k-means++ Lloyd distortion",
                "at most one",
                fmt(run.field(s, "anneal_over_median_pp")),
            )
        )
        rows.append(
            _row(
                run,
                s,
                "fraction of random-start Lloyd runs worse than annealing",
                "measured only",
                fmt(run.field(s, "frac_random_worse")),
            )
        )
    return rows


def _convergence_rate(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        rows.append(
            _row(
                run,
                s,
                "largest |rate / (lambda_max/sigma2) - 1| above sigma2_c",
                f"at most {fmt(run.value('rate_tol'))}",
                fmt(run.field(s, "max_rel_error_above")),
            )
        )
    return rows


def _em_vs_gradient(run: PaperRun) -> list[Row]:
    rows = []
    for s in run.subjects():
        em = np.asarray(run.field(s, "history"))[:, 0]
        steps = np.diff(em, axis=1)
        down = int(np.sum(steps < -1e-9 * np.abs(em[:, :-1])))
        rows.append(
            _row(run, s, "EM iterations that decrease the log-likelihood", "none", fmt(down))
        )
    return rows


_ROWS: dict[str, Callable[[PaperRun], list[Row]]] = {
    "responsibilities": _responsibilities,
    "loglik": _loglik,
    "updates": _updates,
    "trajectories": _trajectories,
    "precision": _precision,
    "phase_transition": _phase_transition,
    "variant_limits": _variant_limits,
    "anneal_vs_lloyd": _anneal_vs_lloyd,
    "convergence_rate": _convergence_rate,
    "em_vs_gradient": _em_vs_gradient,
}


def table_rows(runs: Mapping[str, PaperRun]) -> list[Row]:
    """The predicted-vs-measured rows of every run (experiments without a row maker add none)."""
    rows: list[Row] = []
    for name, run in runs.items():
        maker = _ROWS.get(name)
        if maker is not None:
            rows.extend(maker(run))
    return rows


def _environment(runs: Mapping[str, PaperRun]) -> list[dict[str, Any]]:
    """The distinct environments the runs were computed in, each with the runs that used it."""
    envs: list[dict[str, Any]] = []
    for run in runs.values():
        meta = run.meta
        items = [f"{k} {v}" for k, v in sorted(dict(meta.get("versions", {})).items())]
        device = dict(meta.get("device", {}))
        items += [f"{k}: {v}" for k, v in sorted(device.items())]
        items.append(f"float64 enabled: {'yes' if meta.get('x64') else 'no'}")
        for key in ("estep", "e_step"):
            if key in meta:
                items.append(f"E-step: {meta[key]}")
        items.append(f"git revision: {meta.get('git_revision')}")
        for env in envs:
            if env["items"] == items:
                env["runs"].append(run.name)
                break
        else:
            envs.append({"items": items, "runs": [run.name]})
    return envs


def code_provenance(
    runs: Mapping[str, PaperRun], current: Mapping[str, str | None]
) -> tuple[bool, str]:
    """Whether every run was made by the current code, and the sentence that says so.

    A run records the fingerprint of the code that made it (``meta.json``'s
    ``code_fingerprint``; see :func:`gmmlimit.experiments.code_fingerprint`); a run whose
    fingerprint differs from the one the current code gives is named with its git revision.

    Args:
        runs: ``{experiment: PaperRun}``.
        current: ``{experiment: fingerprint}`` the current code gives (None: unknown).

    Returns:
        ``(all_current, note)``.
    """
    from gmmlimit.paper_figures import short_revision

    stale = []
    for name, run in runs.items():
        recorded, now = run.meta.get("code_fingerprint"), current.get(name)
        if recorded and now and recorded != now:
            rev = short_revision(run.meta.get("git_revision"))
            stale.append(f"{name} (run {run.run_id}, git {rev}, code fingerprint {recorded})")
    if stale:
        return False, (
            f"{len(stale)} of {len(runs)} runs were made by code other than the current code "
            "(their recorded code fingerprint differs from the one the current code gives); "
            "their numbers and figures are those of that code: " + "; ".join(stale) + ". Rerun "
            "them (gmmlimit reproduce) for the current code's results."
        )
    unknown = [
        n for n, r in runs.items() if not (r.meta.get("code_fingerprint") and current.get(n))
    ]
    if unknown:
        return True, (
            "Whether these runs were made by the current code is not known for: "
            + ", ".join(unknown)
            + " (no code fingerprint to compare)."
        )
    return True, (
        "Every run was made by the current code (its recorded code fingerprint is the one the "
        "current code gives)."
    )


def document(
    runs: Mapping[str, PaperRun],
    figures: list[PaperFigure],
    texts: Mapping[str, tuple[str, str]],
    quick: bool,
    current: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The paper as JSON-able data for the typst template.

    Args:
        runs: ``{experiment: PaperRun}`` in run order.
        figures: the drawn figures, in order (image paths relative to the typst root).
        texts: ``{experiment: (description, verified statement)}``.
        quick: whether the runs are the quick setting.
        current: ``{experiment: code fingerprint}`` of the current code; None computes it
            (:func:`gmmlimit.paper_figures.current_code`).
    """
    if current is None:
        from gmmlimit.paper_figures import current_code

        current = current_code(runs)
    code_current, code_note = code_provenance(runs, current)
    statements = []
    for name, run in runs.items():
        description, statement = texts.get(name, ("", ""))
        failures = list(run.meta.get("check_failures", []))
        statements.append(
            {
                "experiment": name,
                "description": description,
                "statement": statement,
                "bound": BOUNDS.get(name, ""),
                "held": not failures,
                "failures": failures,
                "summary": run.summary,
                "run_id": run.run_id,
            }
        )
    n_held = sum(1 for s in statements if s["held"])
    return {
        "setting": "quick" if quick else "full",
        "n_experiments": fmt(len(statements)),
        "n_held": fmt(n_held),
        "n_figures": fmt(len(figures)),
        "statements": statements,
        "rows": table_rows(runs),
        "figures": [
            {
                "name": f.name,
                "title": f.title,
                "caption": f.caption,
                "image": f.image.as_posix(),
                "runs": ", ".join(f"{k} {v}" for k, v in f.runs.items()),
            }
            for f in figures
        ],
        "code_current": code_current,
        "code_note": code_note,
        "environments": _environment(runs),
        "runs": [
            {
                "experiment": run.name,
                "run_id": run.run_id,
                "setting": run.setting,
                "config": "default"
                if not run.overrides
                else "overrides: " + ", ".join(run.overrides),
                "seed": "none" if run.meta.get("seed") is None else fmt(run.meta["seed"]),
                "finished": str(run.meta.get("finished", "")),
            }
            for run in runs.values()
        ],
    }
