"""The limit study of one variant, built in or a user's: every diagnostic toward its hard limit.

``gmmlimit run variant_study --variant NAME`` (a variant of ``gmmlimit.variants``) or
``--variant package.module:attr`` (a user's :class:`~gmmlimit.variants` Variant, imported when
the config is built) measures, over a log grid of temperatures toward the variant's hard limit
(beta -> inf for the tempered variants, sigma2 -> 0 for the isotropic model), from the same
starting parameters (the variant's ``init`` from an explicit ``jax.random`` key):

- the largest responsibility gap |r_nk - onehot_nk| and its bound (K - 1) exp(-g_n), checked at
  every point (``log_odds_gap`` gives g_n);
- the objective (free energy, or log-likelihood for the isotropic model) minus the hard
  objective -J at the same parameters;
- the gap between one update at the temperature and one hard update;
- how far a full fit at each temperature ends from the hard fit;
- an annealing path (warm-started fits along the grid, the hard limit last) and its distortion
  against the hard fit's; the distortion J of its hard stage is recomputed from that stage's
  final parameters (``gl.study.diagnose``, an E-step of its own) and checked against the
  recorded one.

The grid is set in reduced units tau, the mean over the rows of the log-odds gap g_n at the
starting parameters (``log_odds_gap``: a row's runner-up minus best divergence times beta, or
over the variance; |r_nk - onehot_nk| <= (K - 1) exp(-g_n)), so beta = tau / unit (a variance
temperature is unit / tau). Gaps, unlike the divergences, are free of the data's units: a -ln p
divergence shifts by D ln c when the data are multiplied by c (and is negative for data of small
spread) while its gaps do not move, so the study of X * c covers the same range of the limit as
that of X (the same g_n and responsibilities at every tau for a model whose gaps are unit-free,
such as a density that declares its scaling).

The data: ``--data PATH``, or a small mixture drawn from the seed by ``generator`` (``auto``: the
one that suits the variant; for a user's variant the first its ``check_data`` accepts, in the
order ``gaussian, positive, counts, binary, sphere``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import math
import re
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gmmlimit as gl
from gmmlimit import variants as gv
from gmmlimit._anneal import anneal_variant
from gmmlimit._variant import Variant, with_temperature
from gmmlimit._variant_scale import variant_fit_map, variant_params

from ._common import dataset_key
from ._config import ExperimentSpec
from ._data import data_name, load_file
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = [
    "EXPERIMENT",
    "GENERATORS",
    "VariantStudyConfig",
    "VariantStudyRecord",
    "make_data",
    "recompute_tol",
    "resolve_variant",
    "run",
    "variant_provenance",
]

GENERATORS = ("gaussian", "positive", "counts", "binary", "sphere")
_BUILTIN_DATA = {"poisson": "counts", "bernoulli": "binary", "vmf": "sphere", "gamma": "positive"}
_NEEDS = ("init", "temperature", "log_odds_gap")


def resolve_variant(spec: str) -> Variant:
    """The Variant named by ``spec``: a name in ``gmmlimit.variants`` or ``module:attr``.

    Args:
        spec: ``"gamma"`` (built in) or ``"package.module:attr"`` (importable; ``attr`` may be
            dotted).

    Returns:
        The Variant, with ``init``, ``temperature`` and ``log_odds_gap`` (the study needs all).

    Raises:
        ValueError: naming the problem: an unknown built-in name, a module that does not import,
            a missing attribute, an object that is not a Variant, or a missing protocol field.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"variant must be a name or 'module:attr'; got {spec!r}.")
    spec = spec.strip()
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise ValueError(f"variant {spec!r}: write it as 'package.module:attr'.")
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as err:  # any import failure is the user's to see
            raise ValueError(
                f"variant {spec!r}: cannot import module {module_name!r} "
                f"({type(err).__name__}: {err}); is its folder on PYTHONPATH?"
            ) from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"variant {spec!r}: {module_name!r} has no attribute {attr!r}.")
            obj = getattr(obj, part)
    else:
        builtins = sorted(n for n in gv.__all__ if isinstance(getattr(gv, n, None), Variant))
        obj = getattr(gv, spec, None)
        if spec not in builtins:
            raise ValueError(
                f"unknown variant {spec!r}; built in: {', '.join(builtins)}, or give your own as "
                "'package.module:attr'."
            )
    if not isinstance(obj, Variant):
        raise ValueError(f"variant {spec!r} is a {type(obj).__name__}, not a gmmlimit Variant.")
    missing = [f for f in _NEEDS if getattr(obj, f) is None]
    if missing:
        raise ValueError(
            f"variant {spec!r} ({obj.name}) has no {', '.join(missing)}; the limit study needs "
            "init, temperature and log_odds_gap (see docs/variants.md)."
        )
    return obj


def variant_provenance(config: VariantStudyConfig) -> dict:
    """What ``meta.json`` records of the variant: its spec, name, temperature and source hash.

    A user's variant is identified by the sha256 of its module's source and by that of every
    module it has imported from its own folder tree (its package, or the folder of a top-level
    module: helpers it imports), both part of the run's hash, so an interrupted run never
    resumes with changed variant code.
    """
    variant = resolve_variant(config.variant)
    info: dict[str, Any] = {
        "spec": config.variant,
        "name": variant.name,
        "builtin": ":" not in config.variant,
        "temperature": variant.temperature.name,
        "hard": "inf" if math.isinf(variant.temperature.hard) else variant.temperature.hard,
    }
    if ":" in config.variant:
        module = importlib.import_module(config.variant.partition(":")[0])
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            source = ""
        info["module_file"] = getattr(module, "__file__", None)
        info["source_sha256"] = hashlib.sha256(source.encode()).hexdigest() if source else None
        info["imported_sha256"] = _imported_sources_sha256(module)
    return {"variant": info}


def _imported_sources_sha256(module: Any) -> str | None:
    """sha256 of the sources of every imported module under ``module``'s own folder tree.

    The tree is the folder of its top-level package, or its own folder for a top-level module;
    the files are read in the order of their paths relative to it.
    """
    top = sys.modules.get(module.__name__.partition(".")[0], module)
    anchor = getattr(top, "__file__", None)
    if anchor is None:
        return None
    root = Path(anchor).resolve().parent
    files = set()
    for loaded in list(sys.modules.values()):
        path = getattr(loaded, "__file__", None)
        if not (path and path.endswith(".py") and Path(path).resolve().is_relative_to(root)):
            continue
        relative = Path(path).resolve().relative_to(root)
        if not {"site-packages", "dist-packages"} & set(relative.parts):  # installed libraries
            files.add(Path(path).resolve())
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class VariantStudyConfig:
    """Config of one variant's limit study (defaults: the full setting).

    Attributes:
        seed: the root of every ``jax.random`` key of the run.
        variant: a name in ``gmmlimit.variants`` or ``package.module:attr``
            (``gmmlimit run variant_study --variant ...`` sets it).
        generator: the synthetic data: ``auto`` or one of ``gaussian, positive, counts, binary,
            sphere`` (not used with ``data``).
        data: a user's data file (``.npy``, ``.npz`` or ``.csv``), used as it is with K = ``k``.
        n_samples: rows of the synthetic data.
        dim: its dimension D.
        k: components K (of the synthetic data and of the fit).
        n_temp: size of the temperature grid.
        tau_soft: the softest reduced temperature (the mean log-odds gap g_n over the rows).
        tau_cold: the coldest one (the hard limit itself is the reference, not on the grid).
        n_anneal: stages of the annealing path before its hard stage.
        max_iter: iterations of every fit (and of every annealing stage).
        dtype: ``"float64"`` or ``"float32"``.
    """

    seed: int = 0
    variant: str = "gamma"
    generator: str = "auto"
    data: str | None = None
    n_samples: int = 2000
    dim: int = 8
    k: int = 4
    n_temp: int = 30
    tau_soft: float = 0.1
    tau_cold: float = 1e5
    n_anneal: int = 12
    max_iter: int = 200
    dtype: str = "float64"

    def validate(self) -> None:
        """Refuse bad values before any work (ValueError naming the problem)."""
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}.")
        if self.generator not in ("auto", *GENERATORS):
            raise ValueError(
                f"generator must be 'auto' or one of {', '.join(GENERATORS)}; "
                f"got {self.generator!r}."
            )
        for name, value, low in (
            ("n_samples", self.n_samples, 2),
            ("dim", self.dim, 2),
            ("k", self.k, 2),
            ("n_temp", self.n_temp, 2),
            ("n_anneal", self.n_anneal, 1),
            ("max_iter", self.max_iter, 1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}; got {value}.")
        if not (0 < self.tau_soft < self.tau_cold < math.inf):
            raise ValueError(
                f"need 0 < tau_soft < tau_cold < inf; got {self.tau_soft}, {self.tau_cold}."
            )
        variant = resolve_variant(self.variant)
        n = load_file(self.data).shape[0] if self.data is not None else self.n_samples
        if self.k > n:
            raise ValueError(f"k={self.k} exceeds the {n} rows of the data.")
        X, _ = make_data(self, variant)  # the data's values checked by the variant, eagerly
        if not np.all(np.isfinite(X)):
            raise ValueError("the data holds NaN or inf values.")


@dataclasses.dataclass(frozen=True)
class VariantStudyRecord:
    """One variant's limit study (G grid temperatures, S annealing stages then the hard one).

    Attributes:
        variant: the variant's name.
        spec: how it was named (``gamma`` or ``module:attr``).
        data: the data's name (the generator, or the file's stem).
        temperature_name: the temperature's name (``beta``, ``sigma2``).
        hard: its value at the hard limit (inf or 0).
        cost_scale: tau's unit: the mean log-odds gap g_n at the start at temperature 1 in
            the data's units (the mean runner-up minus best divergence, for beta; beta =
            tau / cost_scale, a variance temperature cost_scale / tau).
        temperature: (G,) the grid in the variant's units, toward the hard limit.
        tau: (G,) the same grid in reduced units, ascending.
        resp_gap: (G,) max_nk |r_nk - onehot_nk|.
        bound: (G,) max_n (K - 1) exp(-g_n).
        bound_holds: (G,) bool, every entry within its row's bound (to 4 ulps).
        objective_gap: (G,) objective minus -J at the starting parameters.
        update_gap: (G,) max |one update at the temperature - one hard update|.
        fit_means_gap: (G,) max |locations of the fit at the temperature - of the hard fit|.
        fit_label_agreement: (G,) share of final labels equal to the hard fit's.
        n_iter: (G,) iterations of each fit.
        hard_objective: the hard fit's final objective -J.
        anneal_tau: (S,) the reduced temperature of each stage before the hard one.
        anneal_temperature: (S + 1,) each stage's temperature; the last is the hard limit.
        anneal_objective: (S + 1,) the objective at each stage's end (-J at the hard stage).
        anneal_distortion: (S + 1,) the distortion J at each stage's end.
        anneal_n_distinct: (S + 1,) distinct locations at each stage's end.
        anneal_means: (S + 1, K, D) the locations at each stage's end (the trajectory).
        anneal_hard_recomputed: J at the hard stage's final parameters, recomputed by
            ``gl.study.diagnose`` (its hard objective, negated) apart from the path's record.
    """

    variant: str
    spec: str
    data: str
    temperature_name: str
    hard: float
    cost_scale: float
    temperature: np.ndarray
    tau: np.ndarray
    resp_gap: np.ndarray
    bound: np.ndarray
    bound_holds: np.ndarray
    objective_gap: np.ndarray
    update_gap: np.ndarray
    fit_means_gap: np.ndarray
    fit_label_agreement: np.ndarray
    n_iter: np.ndarray
    hard_objective: float
    anneal_tau: np.ndarray
    anneal_temperature: np.ndarray
    anneal_objective: np.ndarray
    anneal_distortion: np.ndarray
    anneal_n_distinct: np.ndarray
    anneal_means: np.ndarray
    anneal_hard_recomputed: float


def _generator(config: VariantStudyConfig, variant: Variant) -> str:
    """The data generator a config uses for ``variant`` (``auto`` resolved)."""
    if config.generator != "auto":
        return config.generator
    if ":" not in config.variant:
        return _BUILTIN_DATA.get(config.variant, "gaussian")
    if variant.check_data is None:
        return "gaussian"
    for kind in GENERATORS:
        try:
            variant.check_data(_draw(kind, config.seed, 50, config.dim, config.k))
        except ValueError:
            continue
        return kind
    raise ValueError(
        f"variant {config.variant!r} accepts none of the generators {', '.join(GENERATORS)}; "
        "give it data with --data PATH."
    )


def _draw(kind: str, seed: int, n: int, d: int, k: int) -> np.ndarray:
    """Draw n rows of a k-component mixture of the generator ``kind``, from the seed's key."""
    key = dataset_key(seed, f"variant_study-{kind}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())
    labels = rng.integers(k, size=n)
    if kind == "gaussian":
        X = 4.0 * rng.normal(size=(k, d))[labels] + rng.normal(size=(n, d))
    elif kind == "positive":
        scales = 10.0 ** rng.uniform(-1.0, 1.0, size=(k, d))
        X = scales[labels] * rng.gamma(4.0, 0.25, size=(n, d))
    elif kind == "counts":
        X = rng.poisson(3.0 * rng.gamma(2.0, size=(k, d))[labels]).astype(np.float64)
    elif kind == "binary":
        X = (rng.uniform(size=(n, d)) < rng.beta(0.7, 0.7, size=(k, d))[labels]).astype(float)
    else:
        X = 2.0 * rng.normal(size=(k, d))[labels] + rng.normal(size=(n, d))
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X


def make_data(config: VariantStudyConfig, variant: Variant) -> tuple[np.ndarray, str]:
    """The study's data in the config's dtype and its name, checked by the variant.

    Raises:
        ValueError: when the variant's ``check_data`` refuses the data (its message).
    """
    if config.data is not None:
        X, name = np.asarray(load_file(config.data), dtype=np.float64), data_name(config.data)
    else:
        name = _generator(config, variant)
        X = _draw(name, config.seed, config.n_samples, config.dim, config.k)
    X = X.astype(config.dtype)
    if variant.check_data is not None:
        try:
            variant.check_data(X)
        except ValueError as err:
            raise ValueError(
                f"variant {config.variant!r} refuses the data {name!r}: {err}"
            ) from None
    return X, name


def _tau_unit(
    variant: Variant, X: np.ndarray, hard_start: Any, spec: str
) -> tuple[int, Any, float]:
    """The unit of the reduced temperature tau: the mean log-odds gap g_n at temperature 1.

    ``log_odds_gap`` gives g_n, the gap between a row's runner-up and best divergence scaled by
    the inverse temperature (beta, or 1 / sigma2 for a variance), which bounds the row's
    distance from one-hot by (K - 1) exp(-g_n). tau = mean_n g_n, unlike the divergences
    themselves, is free of the data's units (a -ln p divergence shifts by D ln c when the data
    are multiplied by c, and may be negative; its gaps do not move). It is computed as the fits
    run it, on (X - offset) / 2^e for a variant that declares its ``scaling`` (where g_n is the
    same), at temperature 1 there; rows with an infinite gap (one-hot at every temperature) are
    left out.

    Returns:
        ``(e, params, unit)``: the data's exponent e, the hard start on (X - offset) / 2^e and
        the unit (mean g_n at temperature 1 there).

    Raises:
        ValueError: when no row has a positive finite gap: the starting components do not tell
            the rows apart in the data's dtype (they coincide, e.g. every row is the same, or
            the data's spread is far below a floor of the model), so no temperature moves the
            responsibilities.
    """
    data = jnp.asarray(X)
    data_map = variant_fit_map(variant, data, variant.means(hard_start))
    scaled = variant_params(variant, hard_start, data_map)
    at_one = with_temperature(variant, scaled, jnp.ones((), data.dtype))
    g = np.asarray(variant.log_odds_gap(at_one, data_map.data(data)), np.float64)
    finite = g[np.isfinite(g)]
    unit = float(np.mean(finite)) if finite.size else math.nan
    if not (math.isfinite(unit) and unit > 0):
        counts = [
            f"{n} {what}"
            for n, what in (
                (int(np.sum(g == 0)), "0"),
                (int(np.sum(np.isinf(g))), "inf"),
                (int(np.sum(np.isnan(g))), "NaN"),
            )
            if n
        ]
        raise ValueError(
            f"variant {spec!r}: no row has a positive finite log-odds gap g_n (runner-up minus "
            f"best divergence, in {data.dtype}) at the start ({', '.join(counts)} of {g.size} "
            "rows), so no temperature moves the responsibilities and the grid has no unit: the "
            "starting components do not tell the rows apart (are all rows the same, or is the "
            "data's spread far below a floor of the model, such as a variance's reg_covar?)."
        )
    return data_map.exponent, scaled, unit


def _grid(
    variant: Variant, tau: np.ndarray, exponent: int, scaled: Any, unit: float, dtype: Any
) -> np.ndarray:
    """The temperatures, in the data's units, at which the mean g_n is tau (by ``tau``).

    On X / 2^e the temperature is beta = tau / unit (a variance: sigma2 = unit / tau); it is
    mapped to the data's units by the variant's scaling (exact powers of two).
    """
    temp = variant.temperature
    values = tau / unit if math.isinf(temp.hard) else unit / tau
    if not exponent:
        return values
    at = [with_temperature(variant, scaled, jnp.asarray(v, dtype)) for v in values]
    return np.asarray([float(temp.get(variant.scaling.params(p, -exponent))) for p in at])


def _point(config: VariantStudyConfig) -> VariantStudyRecord:
    variant = resolve_variant(config.variant)
    temp = variant.temperature
    X, name = make_data(config, variant)
    start = variant.init(dataset_key(config.seed, "variant_study-init"), jnp.asarray(X), config.k)
    hard_start = variant.validate(X, with_temperature(variant, start, temp.hard))
    exponent, scaled, unit = _tau_unit(variant, X, hard_start, config.variant)
    tau = np.geomspace(config.tau_soft, config.tau_cold, config.n_temp)
    grid = _grid(variant, tau, exponent, scaled, unit, X.dtype)
    info = np.finfo(X.dtype)
    if not np.all(np.isfinite(grid) & (grid >= info.tiny) & (grid <= info.max)):
        raise ValueError(
            f"variant {config.variant!r}: at these data's scale the {temp.name} grid for tau "
            f"{config.tau_soft:g} to {config.tau_cold:g} runs from {grid[0]:.4g} to "
            f"{grid[-1]:.4g}, past what {X.dtype} holds; run in float64 (--set dtype=float64)."
        )
    out = gv.limit_sweep(variant, X, start, grid, max_iter=config.max_iter)
    stages = np.geomspace(config.tau_soft, config.tau_cold, config.n_anneal)
    schedule = _grid(variant, stages, exponent, scaled, unit, X.dtype)
    # tau's unit in the data's units: beta = tau / cost_scale, sigma2 = cost_scale / tau
    cost = tau[0] / grid[0] if math.isinf(temp.hard) else grid[0] * tau[0]
    path = anneal_variant(variant, X, schedule, init_params=start, max_iter=config.max_iter)
    hard_params = jax.tree.map(lambda leaf: leaf[-1], path.params)
    recomputed = -float(gl.study.diagnose(variant, X, hard_params).hard_objective)
    return VariantStudyRecord(
        variant=variant.name,
        spec=config.variant,
        data=name,
        temperature_name=temp.name,
        hard=float(temp.hard),
        cost_scale=float(cost),
        temperature=np.asarray(out["temperature"]),
        tau=tau,
        resp_gap=np.asarray(out["resp_gap"]),
        bound=np.asarray(out["bound"]),
        bound_holds=np.asarray(out["bound_holds"]),
        objective_gap=np.asarray(out["objective_gap"]),
        update_gap=np.asarray(out["update_gap"]),
        fit_means_gap=np.asarray(out["fit_means_gap"]),
        fit_label_agreement=np.asarray(out["fit_label_agreement"]),
        n_iter=np.asarray(out["n_iter"]),
        hard_objective=float(out["hard_objective"]),
        anneal_tau=stages,
        anneal_temperature=np.asarray(path.temperature, dtype=np.float64),
        anneal_objective=np.asarray(path.objective),
        anneal_distortion=np.asarray(path.distortion),
        anneal_n_distinct=np.asarray(path.n_distinct),
        anneal_means=np.asarray(path.means),
        anneal_hard_recomputed=recomputed,
    )


def record_key(spec: str) -> str:
    """The record's key: the variant spec made safe for file names (``m:attr`` -> ``m-attr``)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", spec)


def run(
    config: VariantStudyConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, VariantStudyRecord]:
    """The variant's study as one resumable point; pure computation."""
    return sweep(
        resume,
        [record_key(config.variant)],
        lambda _: _point(config),
        progress,
        "variant",
        VariantStudyRecord,
    )


def recompute_tol(dtype: Any) -> float:
    """The relative gap allowed between the path's hard-stage J and the recomputed one.

    256 ulps of the dtype (the fits' own rounding allowance for an objective): the two sums of
    the rows' divergences may run in different orders and blocks.
    """
    return 256 * float(np.finfo(dtype).eps)


def check(config: VariantStudyConfig, records: dict[str, VariantStudyRecord]) -> list[str]:
    """Verified: the bound at every point; the gaps shrink toward the limit; annealed J recomputed.

    In full: the responsibilities within their bound (K - 1) exp(-g_n) at every grid point; the
    update gap and (for an inverse temperature, whose objective is a free energy) the objective's
    gap to -J shrink from the softest to the coldest point; the distortion J the annealing path
    records at its hard stage equals J recomputed from that stage's parameters; no NaN or inf
    in a measurement. (That the path ends at the hard limit with objective -J holds by the
    construction of ``anneal_variant`` and is not counted.)

    Returns:
        The statements that failed (empty when all hold).
    """
    failures = []
    tol = recompute_tol(config.dtype)
    for key, r in records.items():
        if not r.bound_holds.all():
            failures.append(f"{key}: bound violated at {int((~r.bound_holds).sum())} temperatures")
        for field in ("resp_gap", "bound", "objective_gap", "update_gap", "anneal_distortion"):
            if not np.all(np.isfinite(getattr(r, field))):
                failures.append(f"{key}: {field} holds NaN or inf")
        # an inverse temperature's objective is a free energy on -J's scale; the isotropic
        # model's (a variance) is the log-likelihood, which diverges as sigma2 -> 0
        if math.isinf(r.hard) and not abs(r.objective_gap[-1]) <= abs(r.objective_gap[0]):
            failures.append(f"{key}: the objective is not closer to -J at the coldest point")
        if not r.update_gap[-1] <= r.update_gap[0]:
            failures.append(f"{key}: the update gap did not shrink toward the hard limit")
        annealed, recomputed = float(r.anneal_distortion[-1]), float(r.anneal_hard_recomputed)
        if not abs(annealed - recomputed) <= tol * max(abs(annealed), abs(recomputed)):
            failures.append(
                f"{key}: the annealing path's hard stage records J = {annealed:.10g}, but J "
                f"recomputed at its final parameters is {recomputed:.10g} (relative tolerance "
                f"{tol:.3g})"
            )
    return failures


def summarize(config: VariantStudyConfig, records: dict[str, VariantStudyRecord]) -> str:
    """One line: the variant, the bound count, and the gaps at the two ends of the grid."""
    parts = []
    for r in records.values():
        parts.append(
            f"{r.variant} ({r.spec}) on {r.data}: bound held at {int(r.bound_holds.sum())}/"
            f"{r.bound_holds.size} {r.temperature_name} points; resp {r.resp_gap[0]:.2g}->"
            f"{r.resp_gap[-1]:.2g}, objective-(-J) {r.objective_gap[0]:.2g}->"
            f"{r.objective_gap[-1]:.2g}, update {r.update_gap[0]:.2g}->{r.update_gap[-1]:.2g}; "
            f"annealed J {r.anneal_distortion[-1]:.4g} vs hard fit {-r.hard_objective:.4g}"
        )
    return "variant_study: " + "; ".join(parts)


EXPERIMENT = ExperimentSpec(
    name="variant_study",
    config_type=VariantStudyConfig,
    record_type=VariantStudyRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={"n_samples": 300, "dim": 3, "k": 3, "n_temp": 8, "n_anneal": 4, "max_iter": 30},
    description=(
        "one variant's limit study (--variant NAME or module:attr): responsibilities against "
        "their bound, objective against -J, tempered against hard updates and fits, and an "
        "annealing path ending at the hard limit, over a grid of temperatures"
    ),
    order=65,
    provenance=variant_provenance,
)
