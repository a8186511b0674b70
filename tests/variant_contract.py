"""The test template every tempered mixture variant inherits.

A new variant's test file builds one :class:`VariantCase` (data, starting parameters, a few
temperatures) and runs every check with::

    from variant_contract import CONTRACT, VariantCase

    CASE = VariantCase(variant=my_variant, X=X, params=MyParams(...))

    @pytest.mark.parametrize("check", CONTRACT)
    def test_my_variant_contract(check):
        check(CASE)

The checks: shapes and dtype kept (float64 run, float32 traced); the objective (higher is
better: free energy, -J at the hard limit) never decreases; the hard limit is reached (it
converges with one-hot responsibilities, and a fit very close to it ends where the hard fit
ends); the bound |r - onehot| <= (K - 1) exp(-g) at every point; no recompilation across the
temperature; N larger than and not a multiple of the block size (padding); out of core from
uneven chunks; ``vmap`` over the temperature including the hard limit; restarts from the
variant's ``init``; the annealing path with warm starts; the scikit-learn wrapper. Sharding over
forced host devices needs a process of its own: :func:`run_sharded` runs :func:`check_sharded`
for every case of a module in one subprocess.

The variant needs ``temperature`` and ``log_odds_gap`` (and ``init`` for restarts and the
wrapper); ``betas`` and ``large_beta`` are temperatures in the variant's own units.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import jaxprs_in_params
from sklearn.base import clone

import gmmlimit as gl
from gmmlimit._api import fit_batch
from gmmlimit._driver import fit_program, history_length
from gmmlimit._variant_estimator import VariantMixture

__all__ = ["BLOCK", "CONTRACT", "VariantCase", "check_sharded", "fitted_wrapper", "run_sharded"]

BLOCK = 128
"""The block size of the padding checks: the cases' N (300) is larger and not a multiple."""


@dataclass(frozen=True)
class VariantCase:
    """One variant on one data set.

    Attributes:
        variant: the variant under test.
        X: (N, D) float64 data.
        params: starting parameters (their temperature is replaced by each one tried).
        betas: soft temperatures in the variant's own units, ordered from the softest toward
            the hard limit (it is also the annealing schedule).
        large_beta: a temperature so close to the hard limit that the soft fit ends at the hard
            fit's partition.
        max_iter: iterations of every fit (the hard fit must converge within them).
        means_rtol: relative tolerance of the large-beta means against the hard means.
        tol: the stopping tolerance of every fit.
        rtol: agreement of fits that differ only in the order of summation (padded or not,
            out of core, sharded, vmapped).
        free_energy: the objective is a tempered free energy, which tends to -J at the hard
            limit (the isotropic model's log-likelihood does not: it diverges).
    """

    variant: gl.Variant
    X: np.ndarray
    params: Any
    betas: tuple[float, ...] = (0.3, 1.0, 5.0)
    large_beta: float = 1e6
    max_iter: int = 30
    means_rtol: float = 1e-7
    tol: float = 0.0
    free_energy: bool = True
    rtol: float = 1e-7

    def at(self, beta: float) -> Any:
        """The starting parameters at temperature ``beta`` (the variant's own units)."""
        return self.variant.temperature.set(self.params, beta)

    @property
    def hard(self) -> float:
        """The temperature of the hard limit."""
        return self.variant.temperature.hard

    @property
    def k(self) -> int:
        """The number of components."""
        return int(np.shape(self.variant.means(self.params))[0])

    def fit(self, beta: float, dtype: Any = np.float64, **kw: Any) -> gl.FitResult:
        """A fit from the starting parameters at ``beta`` in ``dtype``."""
        kw = {"max_iter": self.max_iter, "tol": self.tol, **kw}
        return gl.fit(self.variant, self.X.astype(dtype), self.at(beta), **kw)


def _check_result(case: VariantCase, result: Any, start: Any, dtype: Any) -> None:
    n, d = case.X.shape
    k = result.means.shape[0]
    assert result.means.shape == (k, d) and result.means.dtype == dtype
    assert result.labels.shape == (n,) and result.labels.dtype == jnp.int32
    assert result.history.shape == (case.max_iter,) and result.history.dtype == dtype
    assert result.objective.shape == () and result.objective.dtype == dtype
    got, want = jax.tree.leaves(result.params), jax.tree.leaves(start)
    assert [a.shape for a in got] == [b.shape for b in want]
    assert all(a.dtype == dtype for a in got if jnp.issubdtype(a.dtype, jnp.floating))


def check_shapes_and_dtype(case: VariantCase) -> None:
    """Result shapes; every floating leaf keeps X's dtype; nothing NaN, even at the hard limit.

    float64 fits run at beta = 1, a large beta and inf. float32 is checked abstractly
    (``jax.eval_shape``: the traced program keeps float32 end to end) so that the template does
    not compile a second program per variant; variant tests run float32 numerics where they
    compare against a reference.
    """
    for dtype in (np.float32, np.float64):
        X = jnp.asarray(case.X, dtype)
        start = case.variant.validate(X, case.at(1.0))
        if dtype == np.float32:
            traced = jax.eval_shape(lambda: case.fit(1.0, np.float32))
            _check_result(case, traced, start, dtype)
            continue
        for beta in (1.0, case.large_beta, case.hard):
            result = case.fit(beta, dtype)
            _check_result(case, result, start, dtype)
            assert np.isfinite(float(result.objective))
            assert np.all(np.isfinite(np.asarray(result.history)))
            no_temp = jax.tree.leaves(case.variant.temperature.set(result.params, 1.0))
            finite = [np.all(np.isfinite(np.asarray(a))) for a in no_temp]
            assert all(finite), f"non-finite parameters at beta={beta} in {dtype}"


def _steps(result: gl.FitResult) -> np.ndarray:
    n = int(result.n_iter)
    values = np.append(np.asarray(result.history)[:n], float(result.objective))
    return np.diff(values), np.abs(values).max()


def check_monotone_objective(case: VariantCase) -> None:
    """Free energy non-decreasing at every finite beta; hard distortion non-increasing."""
    for beta in case.betas:
        steps, scale = _steps(case.fit(beta))
        assert np.all(steps >= -1e-10 * scale), (beta, steps.min())
    hard = case.fit(case.hard)
    steps, scale = _steps(hard)
    # the objective is higher-is-better at every temperature: -J at the hard limit
    assert np.all(steps >= -1e-10 * scale), steps
    np.testing.assert_allclose(float(hard.objective), -float(hard.distortion), rtol=1e-12)


def check_hard_limit_reached(case: VariantCase) -> None:
    """beta = inf converges with exactly one-hot responsibilities; large beta ends at the same."""
    hard = case.fit(case.hard)
    assert bool(hard.converged) and int(hard.n_iter) < case.max_iter
    X = jnp.asarray(case.X)
    gap = gl.study.responsibility_gap(X, hard.params, variant=case.variant)
    assert float(jnp.max(gap)) == 0.0
    soft = case.fit(case.large_beta)
    np.testing.assert_array_equal(np.asarray(soft.labels), np.asarray(hard.labels))
    np.testing.assert_allclose(
        np.asarray(soft.means), np.asarray(hard.means), rtol=case.means_rtol, atol=1e-12
    )
    if not case.free_energy:
        return
    # the free energy tends to -J (the free energy of one-hot rows is -d)
    minus_j = float(hard.objective)
    scale = abs(float(minus_j)) + 1.0
    assert abs(float(soft.objective) - float(minus_j)) <= 1e-3 * scale


def check_bound(case: VariantCase) -> None:
    """|r_nk - onehot_nk| <= (K - 1) exp(-beta gap_n) at every point and temperature."""
    X = jnp.asarray(case.X)
    eps = np.finfo(np.float64).eps
    for beta in (*case.betas, case.large_beta):
        params = case.at(beta)
        gap = np.asarray(gl.study.responsibility_gap(X, params, variant=case.variant))
        bound = np.asarray(gl.study.responsibility_bound(X, params, variant=case.variant))
        assert np.all(gap <= bound[:, None] + 4 * eps), (beta, (gap - bound[:, None]).max())
    # the bound is not vacuous: at the softest temperature some points are far from one-hot
    moderate = case.at(case.betas[0])
    assert float(jnp.max(gl.study.responsibility_gap(X, moderate, variant=case.variant))) > 1e-3


def check_no_recompilation(case: VariantCase) -> None:
    """Changing beta (finite or inf), or max_iter within its history length, reuses the fit;
    so does the annealing path (its stages are calls to the same compiled fit)."""
    case.fit(case.betas[0])
    size = fit_program._cache_size()
    for beta in (*case.betas[1:], case.large_beta, case.hard, case.betas[0] * 1.5):
        case.fit(beta)
    m = case.max_iter
    other = m - 1 if m > 1 and history_length(m - 1) == history_length(m) else m + 1
    assert case.fit(case.betas[0], max_iter=other).history.shape == (other,)
    gl.study.anneal_variant(
        case.variant, case.X, list(case.betas), init_params=case.params,
        max_iter=case.max_iter, tol=case.tol,
    )  # fmt: skip
    assert fit_program._cache_size() == size


def _close(a: gl.FitResult, b: gl.FitResult, case: VariantCase) -> None:
    """Two fits that differ only in the order of summation: the same labels, and the means,
    objective and distortion within ``case.rtol``.

    A mean near zero (a cancellation: the tied variant's are about 1e-10) carries the rounding
    of sums at the data's scale, so the means' absolute tolerance is ``rtol`` times the largest
    |X| (on an H200 such means differed by 8e-9 between a vmapped and a single fit).
    """
    rtol = case.rtol
    scale = float(np.max(np.abs(case.X)))
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    np.testing.assert_allclose(
        np.asarray(a.means), np.asarray(b.means), rtol=rtol, atol=rtol * scale
    )
    np.testing.assert_allclose(float(a.objective), float(b.objective), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(float(a.distortion), float(b.distortion), rtol=rtol, atol=1e-12)


def _builtin(variant: gl.Variant) -> bool:
    """Whether ``variant`` is one of the package's own (its M-step is defined in gmmlimit)."""
    return variant.m_step.__module__.startswith("gmmlimit.")


def check_padded_and_out_of_core(case: VariantCase) -> None:
    """N > block_size and not a multiple of it; out of core from uneven chunks: the same fit.

    The padded rows are zero-weight copies of a real row, so no variant function sees a value
    that is not data (zeros would be -inf in a log); out of core, every chunk of every pass is
    checked and the last one padded the same way.
    """
    n = case.X.shape[0]
    assert n > BLOCK and n % BLOCK, "the case must exercise padding"
    for beta in (1.0, case.hard):
        padded = case.fit(beta, block_size=BLOCK)
        assert np.all(np.isfinite(np.asarray(padded.history)))
        _close(padded, case.fit(beta), case)
        pieces = [case.X[:77], case.X[77:]]
        ooc = gl.scale.fit_out_of_core(
            case.variant,
            pieces,
            case.at(beta),
            max_iter=case.max_iter,
            tol=case.tol,
            block_size=BLOCK,
            chunk_blocks=1,
        )
        assert int(ooc.n_iter) == int(padded.n_iter)
        _close(ooc, padded, case)
        if _builtin(case.variant) and jax.default_backend() == "cpu":
            # docs/scale.md: on the CPU the blocks are summed in the in-memory order, so the
            # package's variants fit out of core bit for bit (a user's M-step compiled in two
            # programs may fuse differently: the tied einsum did, 3e-8 off in float32)
            for name, value in ooc.params._asdict().items():
                expect = np.asarray(getattr(padded.params, name))
                np.testing.assert_array_equal(np.asarray(value), expect, err_msg=name)


def check_vmap_temperature(case: VariantCase) -> None:
    """One vmapped fit over temperatures, the hard limit included, equals the separate fits.

    Three lanes through ``fit_batch`` (the program restarts run off the CPU), in blocks of
    ``BLOCK`` that N does not fill; the separate fits run in one block: the same fits, padded
    blocks under ``vmap`` included.
    """
    X = jnp.asarray(case.X)
    assert X.shape[0] > BLOCK and X.shape[0] % BLOCK, "the case must exercise padding"
    w = jnp.ones((X.shape[0],), X.dtype)
    start = case.variant.validate(X, case.at(1.0))
    temps = [case.betas[0], case.large_beta, case.hard]
    batch = jax.tree.map(
        lambda *a: jnp.stack(a), *[case.variant.temperature.set(start, t) for t in temps]
    )
    batched = fit_batch(
        case.variant, X, w, batch, case.tol, max_iter=case.max_iter, block_size=BLOCK
    )
    assert np.all(np.isfinite(np.asarray(batched.history)))
    for i, t in enumerate(temps):
        lane = jax.tree.map(lambda a, i=i: a[i], batched)
        _close(lane, case.fit(float(t)), case)


def check_restarts(case: VariantCase) -> None:
    """Restarts from the variant's init (one vmap over keys) keep the best objective."""
    key = jax.random.key(3)
    t = float(case.variant.temperature.get(case.params))
    best = gl.restarts(
        key, case.X, case.k, variant=case.variant, temperature=t, n_init=3,
        max_iter=case.max_iter, tol=case.tol,
    )  # fmt: skip
    singles = []
    init = jax.jit(case.variant.init, static_argnums=2)
    for kk in jax.random.split(key, 3):
        start = case.variant.temperature.set(init(kk, jnp.asarray(case.X), case.k), t)
        singles.append(gl.fit(case.variant, case.X, start, max_iter=case.max_iter, tol=case.tol))
    objectives = [float(r.objective) for r in singles]
    np.testing.assert_allclose(float(best.objective), max(objectives), rtol=1e-8)


def check_anneal(case: VariantCase) -> None:
    """The annealing path: warm starts stage to stage, the hard limit last, -J there."""
    path = gl.study.anneal_variant(
        case.variant, case.X, list(case.betas), init_params=case.params,
        max_iter=case.max_iter, tol=case.tol,
    )  # fmt: skip
    assert float(path.temperature[-1]) == case.hard
    assert np.all(np.isfinite(np.asarray(path.objective)))
    np.testing.assert_allclose(float(path.objective[-1]), -float(path.distortion[-1]), rtol=1e-12)
    assert bool(path.converged[-1])
    for s in (1, len(case.betas)):  # a soft stage and the hard stage, from the stage before
        prev = jax.tree.map(lambda a, s=s: a[s - 1], path.params)
        start = case.variant.temperature.set(prev, float(path.temperature[s]))
        again = gl.fit(case.variant, case.X, start, max_iter=case.max_iter, tol=case.tol)
        np.testing.assert_allclose(
            np.asarray(path.means[s]), np.asarray(again.means), rtol=1e-8, atol=1e-12
        )
        assert int(path.n_iter[s]) == int(again.n_iter)
    np.testing.assert_array_equal(np.asarray(path.labels), np.asarray(again.labels))


def fitted_wrapper(case: VariantCase) -> VariantMixture:
    """The scikit-learn wrapper of the case's variant, fitted at its temperature (3 restarts)."""
    t = float(case.variant.temperature.get(case.params))
    return VariantMixture(
        case.variant, case.k, temperature=t, n_init=3, max_iter=case.max_iter, tol=case.tol,
        random_state=0,
    ).fit(case.X)  # fmt: skip


def check_sklearn_wrapper(case: VariantCase) -> None:
    """fit / predict / predict_proba / score of the scikit-learn wrapper, and clone."""
    est = fitted_wrapper(case)
    np.testing.assert_array_equal(est.predict(case.X), est.labels_)
    proba = est.predict_proba(case.X)
    assert proba.shape == (case.X.shape[0], case.k)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(est.score(case.X), est.objective_ / case.X.shape[0], rtol=1e-10)
    again = clone(est).fit(case.X)
    np.testing.assert_array_equal(again.labels_, est.labels_)


def check_sharded(case: VariantCase, reference: dict[str, np.ndarray] | None = None) -> None:
    """Rows sharded over the devices (padded: N is not a multiple of devices * block): same fit.

    Needs several devices: run through :func:`run_sharded`, which passes the one-device fits
    computed in the calling process as ``reference`` (so the subprocess compiles only the
    sharded program).
    """
    assert len(jax.devices()) >= 2, "check_sharded needs several devices (run_sharded)"
    for beta in (1.0, case.hard):
        sharded = gl.scale.fit_sharded(
            case.variant, case.X, case.at(beta), max_iter=case.max_iter, tol=case.tol,
            block_size=32,
        )  # fmt: skip
        key = "hard" if beta == case.hard else "soft"
        if reference is None:
            ref = case.fit(beta)
            ref = {f: np.asarray(getattr(ref, f)) for f in _FIELDS}
        else:
            ref = {f: reference[f"{key}_{f}"] for f in _FIELDS}
        np.testing.assert_array_equal(np.asarray(sharded.labels), ref["labels"])
        for f in ("means", "objective", "distortion"):
            np.testing.assert_allclose(
                np.asarray(getattr(sharded, f)), ref[f], rtol=case.rtol, atol=1e-12
            )


_FIELDS = ("labels", "means", "objective", "distortion")


def run_sharded(
    module: str,
    *,
    paths: tuple[str, ...] = (),
    devices: int = 4,
    names: tuple[str, ...] | None = None,
) -> str:
    """Run :func:`check_sharded` on every case of ``module.CASES`` in a subprocess.

    The one-device references are computed here (reusing this process's compiled fits) and
    handed over in a temporary file.

    Args:
        module: an importable module holding ``CASES``, a dict of :class:`VariantCase`.
        paths: extra ``sys.path`` entries (where ``module`` lives), here and in the subprocess.
        devices: forced host devices.
        names: the cases to run (every case if None).

    Returns:
        The subprocess's output.

    Raises:
        AssertionError: with the subprocess's output if any check failed.
    """
    import importlib
    import tempfile

    here = str(Path(__file__).resolve().parent)
    root = str(Path(__file__).resolve().parents[1])
    cases = importlib.import_module(module).CASES
    names = tuple(cases) if names is None else names
    refs = {}
    for name in names:
        case = cases[name]
        for key, beta in (("soft", 1.0), ("hard", case.hard)):
            fit = case.fit(beta)
            for f in _FIELDS:
                refs[f"{name}__{key}_{f}"] = np.asarray(getattr(fit, f))
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = str(Path(tmp) / "refs.npz")
        np.savez(ref_path, **refs)
        code = textwrap.dedent(
            f"""
            import os, sys
            os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count={devices}"
            os.environ["JAX_PLATFORMS"] = "cpu"  # host devices, also beside a GPU
            sys.path[:0] = {[root, here, *paths]!r}
            import jax
            jax.config.update("jax_enable_x64", True)
            import importlib
            import numpy as np
            import variant_contract
            refs = np.load({ref_path!r})
            cases = importlib.import_module({module!r}).CASES
            for name in {names!r}:
                case = cases[name]
                mine = {{k.split("__", 1)[1]: refs[k] for k in refs.files
                         if k.startswith(name + "__")}}
                variant_contract.check_sharded(case, mine)
                print("sharded ok:", name, flush=True)
            """
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, here, *paths])}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _floating(dtypes: tuple[Any, ...]) -> bool:
    return all(jnp.issubdtype(dt, jnp.floating) for dt in dtypes)


def _jaxpr_products(call: Callable[[], object]) -> list[tuple[Any, tuple[Any, ...]]]:
    """The products of ``call``'s jaxpr and of every jaxpr nested in it (jit, loops, branches)."""
    seen: list[tuple[Any, tuple[Any, ...]]] = []

    def walk(jaxpr: Any) -> None:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                dtypes = tuple(v.aval.dtype for v in eqn.invars)
                if _floating(dtypes):
                    seen.append((eqn.params.get("precision"), dtypes))
            for inner in jaxprs_in_params(eqn.params):
                walk(inner)

    walk(jax.make_jaxpr(call)().jaxpr)
    return seen


def _bound_products(call: Callable[[], object]) -> list[tuple[Any, tuple[Any, ...]]]:
    """The products bound while ``call()`` runs, after clearing the compiled-program caches (a
    cached program would trace nothing)."""
    from jax._src.lax import lax as lax_internal

    seen: list[tuple[Any, tuple[Any, ...]]] = []
    primitive = lax_internal.dot_general_p
    bind = primitive.bind

    def recording_bind(*args: Any, **params: Any) -> Any:
        dtypes = tuple(jnp.result_type(a) for a in args)
        if _floating(dtypes):
            seen.append((params.get("precision"), dtypes))
        return bind(*args, **params)

    jax.clear_caches()
    primitive.bind = recording_bind
    try:
        jax.block_until_ready(call())
    finally:
        del primitive.bind  # the class's method again
    return seen


def traced_products(call: Callable[[], object]) -> list[tuple[Any, tuple[Any, ...]]]:
    """``(precision, operand dtypes)`` of every floating-point matrix product ``call()`` traces.

    Products are ``dot_general`` (``@``, ``jnp.matmul``, ``jnp.einsum``, ``lax.dot_general``).
    They are read from ``call``'s jaxpr, every nested jaxpr included (jitted functions, loops,
    both branches of a ``cond``), which compiles and runs nothing, and so leaves JAX's caches as
    they were. A call that needs concrete values (a loop on the host that reads a convergence
    test) cannot be traced so: it runs instead, after clearing the compiled-program caches, and
    each product is recorded where it is bound.
    """
    try:
        return _jaxpr_products(call)
    except (
        jax.errors.ConcretizationTypeError,  # bool() and float() of a traced value
        jax.errors.TracerArrayConversionError,  # np.asarray of one
        jax.errors.TracerIntegerConversionError,  # int() of one
    ):
        return _bound_products(call)


FULL_PRECISION = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
"""A product's ``precision`` when it asks for ``Precision.HIGHEST``."""


def check_full_precision(case: VariantCase) -> None:
    """Every matrix product of a fit (soft and hard) and of ``init`` asks for full precision.

    A product at JAX's default precision runs in TF32 on a GPU (ten mantissa bits) and in
    float32 on the CPU, so only a GPU would show the error: this reads the traced products
    instead (pass ``precision=jax.lax.Precision.HIGHEST`` to ``@``'s replacements ``jnp.matmul``,
    ``jnp.einsum`` and ``lax.dot_general``). A variant whose fits take no product passes; the
    check's own product shows that the recorder sees them.
    """
    probe = jnp.eye(2)  # a product at full precision: the recorder must see it

    def probe_and_fits() -> tuple[Any, ...]:
        seen = jnp.matmul(probe, probe, precision=jax.lax.Precision.HIGHEST)
        return seen, case.fit(case.betas[0]), case.fit(case.hard)

    fits = traced_products(probe_and_fits)
    assert fits, "the recorder saw no product, not even the probe's: the check would be vacuous"
    init = case.variant.init
    starts = (
        []
        if init is None
        else traced_products(lambda: init(jax.random.key(0), jnp.asarray(case.X), case.k))
    )
    low = [p for p in fits + starts if p[0] != FULL_PRECISION]
    assert not low, f"{len(low)} products below full precision, e.g. {low[:2]}"


def _as_the_public_functions_run(check: Callable[[VariantCase], None]) -> Callable:
    """``check`` under JAX's x64 flag whatever its global value.

    The case's data are float64, which the public functions compute in float64 with the flag
    off too (a local ``jax.enable_x64``, docs/design.md); the checks build some of their
    arrays themselves (``jnp.asarray(case.X)``), which with the flag off would be float32.
    """

    @functools.wraps(check)
    def run(case: VariantCase) -> None:
        with jax.enable_x64(True):
            check(case)

    return run


CONTRACT = [
    check_shapes_and_dtype,
    check_monotone_objective,
    check_hard_limit_reached,
    check_bound,
    check_no_recompilation,
    check_padded_and_out_of_core,
    check_vmap_temperature,
    check_restarts,
    check_anneal,
    check_sklearn_wrapper,
    check_full_precision,
]
CONTRACT = [_as_the_public_functions_run(check) for check in CONTRACT]
