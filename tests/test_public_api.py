"""The public surface: what each public module's ``__all__`` says, and its docstring examples.

A module is public when no part of its dotted name starts with ``_``. For each one, read with
``ast`` (nothing is imported to find the names):

* ``__all__`` lists every public name the module defines (``def``, ``class``, assignment) and
  nothing it does not bind: a name it lists is defined there, imported there from inside the
  package (a re-export), one of its public submodules, or served by its module ``__getattr__``
  (a helper it merely imports, ``as_data`` or ``np``, is not an export);
* every name another file of the repository imports from it (``from gmmlimit.study import x``,
  ``from .variants import x``) or reads from it as an attribute (``gl.study.x``) is in its
  ``__all__``, or is one of its public submodules;

and every ``>>>`` example in the docstrings of the public names runs (``doctest``).
"""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CALLER_DIRS = ("gmmlimit", "tests", "experiments", "paper_figures", "benchmarks", "docs")


# setup.py installs these folders inside the package
MAPPED = {"gmmlimit": "gmmlimit", "experiments": "gmmlimit.experiments"}
MAPPED["paper_figures"] = "gmmlimit.paper_figures"


def _module_name(path: Path) -> str:
    """The dotted name of a file of the package (or of a folder installed in it); "" if none."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] not in MAPPED:
        return ""
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([MAPPED[parts[0]], *parts[1:]])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for d in MAPPED for p in sorted((ROOT / d).rglob("*.py"))}


MODULES = _modules()
PUBLIC = sorted(m for m in MODULES if not any(part.startswith("_") for part in m.split(".")))
# the library's public modules, and those of experiments/ and paper_figures/ that declare an
# __all__ (the figure scripts fig1..fig6 do not: they are run, not imported from). The latter
# also define the runner's protocol (check, summarize) outside __all__, so for them only the
# names __all__ lists and the names others import are checked.
LIBRARY = [m for m in PUBLIC if MODULES[m].is_relative_to(ROOT / "gmmlimit")]
CHECKED = LIBRARY + [
    m for m in PUBLIC if m not in LIBRARY and "\n__all__" in MODULES[m].read_text()
]


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(current: str, level: int, target: str | None) -> str:
    """The absolute module of ``from <dots><target> import ...`` written in ``current``."""
    if level == 0:
        return target or ""
    base = current.split(".")
    if not _is_package(current) if current in MODULES else True:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _top_statements(tree: ast.Module):
    """Top-level statements, looking inside ``if``/``try`` blocks too."""
    stack = list(tree.body)
    while stack:
        node = stack.pop(0)
        if isinstance(node, ast.If | ast.Try):
            stack[:0] = [*node.body, *getattr(node, "handlers", []), *node.orelse]
            stack[:0] = getattr(node, "finalbody", [])
        elif isinstance(node, ast.ExceptHandler):
            stack[:0] = node.body
        else:
            yield node


def _declared_all(tree: ast.Module, module: str) -> list[str]:
    names: list[str] | None = None
    for node in _top_statements(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        if "__all__" in targets:
            value = ast.literal_eval(node.value)
            if isinstance(node, ast.AugAssign):
                assert names is not None, f"{module}: __all__ += before __all__ ="
                names = names + list(value)
            else:
                names = list(value)
    assert names is not None, f"{module} has no __all__"
    return names


def _bound_names(tree: ast.Module, module: str) -> tuple[set[str], set[str], bool]:
    """Public names the module defines, those it binds (defined or imported from the package),
    and whether it has a module __getattr__."""
    names: set[str] = set()
    imported: set[str] = set()
    has_getattr = False
    for node in _top_statements(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            has_getattr |= node.name == "__getattr__"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node.level, node.module)
            if source == "gmmlimit" or source.startswith("gmmlimit."):
                imported |= {(a.asname or a.name) for a in node.names}
    defined = {n for n in names if not n.startswith("_")}
    return defined, defined | {n for n in imported if not n.startswith("_")}, has_getattr


def _public_submodules(module: str) -> set[str]:
    if not _is_package(module):
        return set()
    prefix = module + "."
    return {
        m[len(prefix) :] for m in PUBLIC if m.startswith(prefix) and "." not in m[len(prefix) :]
    }


def _all_of(module: str) -> list[str]:
    return _declared_all(ast.parse(MODULES[module].read_text()), module)


@pytest.mark.parametrize("module", CHECKED)
def test_all_lists_exactly_what_the_module_binds(module):
    tree = ast.parse(MODULES[module].read_text())
    declared = _declared_all(tree, module)
    assert len(declared) == len(set(declared)), f"{module}.__all__ repeats a name"
    defined, bound, has_getattr = _bound_names(tree, module)
    public_dunders = {n for n in declared if n.startswith("__")}
    missing = defined - set(declared) if module in LIBRARY else set()  # experiments: see below
    assert not missing, f"{module} defines public names its __all__ leaves out: {sorted(missing)}"
    extra = set(declared) - bound - _public_submodules(module) - public_dunders
    if has_getattr:  # names served by a module __getattr__ must still resolve
        extra = {n for n in extra if not hasattr(importlib.import_module(module), n)}
    assert not extra, f"{module}.__all__ lists names it never binds: {sorted(extra)}"
    for name in public_dunders:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def _callers() -> list[Path]:
    files: list[Path] = []
    for folder in CALLER_DIRS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def _names_a_module(module: str, name: str) -> bool:
    """Whether ``module.name`` is a public submodule (not an object that shadows one, as
    ``gmmlimit.variants.isotropic`` is the Variant)."""
    if f"{module}.{name}" not in PUBLIC:
        return False
    value = getattr(importlib.import_module(module), name, None)
    return value is None or isinstance(value, ModuleType)  # None: a submodule not yet imported


def _uses() -> list[tuple[str, str, str]]:
    """(file:line, public module, name) for each import from, or attribute of, a public module."""
    public = set(PUBLIC)
    uses = []
    for path in _callers():
        if path.name == "_render.py":
            continue  # the docs hook: not importable, and no caller of the package
        tree = ast.parse(path.read_text())
        here = _module_name(path)
        aliases: dict[str, str] = {}  # local name -> public module it names
        where = f"{path.relative_to(ROOT)}:"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in public:
                        aliases[a.asname or a.name.split(".")[0]] = (
                            a.name if a.asname else a.name.split(".")[0]
                        )
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(here, node.level, node.module) if here or not node.level else ""
                if source not in public:
                    continue
                for a in node.names:
                    if _names_a_module(source, a.name):
                        aliases[a.asname or a.name] = f"{source}.{a.name}"
                    else:
                        uses.append((f"{where}{node.lineno}", source, a.name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                chain = []
                inner = node
                while isinstance(inner, ast.Attribute):
                    chain.append(inner.attr)
                    inner = inner.value
                if not isinstance(inner, ast.Name) or inner.id not in aliases:
                    continue
                if isinstance(node.ctx, ast.Store):
                    continue
                module = aliases[inner.id]
                for attr in reversed(chain):  # walk down through public submodules
                    if _names_a_module(module, attr):
                        module = f"{module}.{attr}"
                        continue
                    uses.append((f"{where}{node.lineno}", module, attr))
                    break
    return uses


def test_every_name_imported_from_a_public_module_is_in_its_all():
    alls = {m: set(_all_of(m)) for m in CHECKED}
    uses = _uses()
    assert len(uses) > 200  # the scan sees the repository's callers
    # private names (``gmmlimit._native``, ``_fused``) are reached on purpose, by tests
    wrong = sorted(
        f"{where} {module}.{name}"
        for where, module, name in uses
        if not name.startswith("_") and module in alls and name not in alls[module]
    )
    assert not wrong, "names used but not in the module's __all__:\n" + "\n".join(wrong)


def _public_objects() -> dict[int, tuple[str, object]]:
    objects: dict[int, tuple[str, object]] = {}
    for module in LIBRARY:
        if module in ("gmmlimit.cli", "gmmlimit.launch"):
            continue  # scripts: their docstrings show shell use, not Python
        mod = importlib.import_module(module)
        objects.setdefault(id(mod), (module, mod))
        for name in _all_of(module):
            obj = getattr(mod, name)
            if callable(obj) or isinstance(obj, type):
                objects.setdefault(id(obj), (f"{module}.{name}", obj))
    return objects


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(recurse=False)
    tests = []
    for name, obj in _public_objects().values():
        for test in finder.find(obj, name, globs={}):
            if test.examples:
                tests.append(test)
    return tests


DOCTESTS = _doctests()


def test_the_main_functions_show_an_example():
    named = {t.name.rsplit(".", 1)[-1] for t in DOCTESTS}
    for fn in ("gmmlimit", "fit", "em", "kmeans", "responsibilities", "log_likelihood", "scale"):
        assert fn in named, f"no >>> example in the docstring of {fn}"
    assert {"study", "responsibility_gap", "responsibility_bound"} <= named


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example_runs(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    runner.run(test, out=failures.append)
    assert runner.summarize(verbose=False).failed == 0, "".join(failures)


# --- one responsibility_gap, and the names that moved -------------------------------------------

_X = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 3.0], [3.0, 4.0], [1.5, 1.5]])
_MEANS = np.array([[0.0, 0.5], [3.0, 3.5]])


def test_responsibility_gap_is_one_function_for_every_spelling():
    import gmmlimit as gl

    ref_gap = np.asarray(gl.study.responsibility_gap(_X, _MEANS, 0.7))
    ref_bound = np.asarray(gl.study.responsibility_bound(_X, _MEANS, 0.7))
    assert ref_gap.shape == (5, 2) and ref_gap.max() > 0.01  # row 4 sits between the means
    assert np.all(ref_gap <= ref_bound[:, None] + 1e-15)
    params = gl.variants.IsotropicParams(_MEANS, 0.7)
    for kwargs in ({}, {"variant": gl.variants.isotropic}):
        gap = np.asarray(gl.study.responsibility_gap(_X, params, **kwargs))
        bound = np.asarray(gl.study.responsibility_bound(_X, params, **kwargs))
        np.testing.assert_allclose(gap, ref_gap, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(bound, ref_bound, rtol=1e-12, atol=1e-15)
    # every other variant goes through the variant= branch too: tests/variant_contract.py


@pytest.mark.parametrize("fn", ["responsibility_gap", "responsibility_bound"])
def test_responsibility_gap_rejects_a_mixed_or_incomplete_call(fn):
    import gmmlimit as gl

    f = getattr(gl.study, fn)
    with pytest.raises(ValueError, match="sigma2 is required"):
        f(_X, _MEANS)
    with pytest.raises(ValueError, match="with variant= the temperature is read"):
        f(_X, gl.variants.IsotropicParams(_MEANS, 0.7), 0.7, variant=gl.variants.isotropic)
    with pytest.raises(ValueError, match="given twice"):
        f(_X, gl.variants.IsotropicParams(_MEANS, 0.7), 0.7)
    with pytest.raises(ValueError, match=r"gmmlimit\.Variant"):
        f(_X, _MEANS, variant="poisson")


# the old and new names of the responsibility bounds compute through two programs that give the
# same bits on XLA:CPU; on a GPU they differed in the last bit
@pytest.mark.cpu_bits
def test_moved_names_warn_and_still_work():
    import gmmlimit as gl
    from gmmlimit.variants import limits

    assert len(gl.__all__) <= 22  # a dozen core names and the subpackages
    for name, home in gl._MOVED.items():
        with pytest.warns(DeprecationWarning, match=f"moved to {home}.{name}"):
            old = getattr(gl, name)
        assert old is getattr(importlib.import_module(home), name)
        assert name not in gl.__all__
    unknown = "nonexistent"  # a plain attribute would trip the scan of the repository above
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        getattr(gl, unknown)
    params = gl.variants.IsotropicParams(_MEANS, 0.7)
    for name in ("responsibility_gap", "responsibility_bound"):
        with pytest.warns(DeprecationWarning, match=f"gmmlimit.study.{name}"):
            old = getattr(limits, name)
        np.testing.assert_array_equal(
            old(gl.variants.isotropic, _X, params), getattr(gl.study, name)(_X, _MEANS, 0.7)
        )
        assert name not in limits.__all__
