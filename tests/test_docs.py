"""The documentation runs: the README example prints its README block, the tutorials execute,
the pages' Python blocks use no name they do not define (but the reader's own data), the Gamma
walkthrough is the shipped file, and the docs site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"


def _env() -> dict[str, str]:
    """A default-install environment: x64 off, the CPU kernel not switched off, repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "GMMLIMIT_NATIVE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MPLBACKEND"] = "Agg"
    return env


def readme_example() -> tuple[str, str, str]:
    """The README's first Python block, the platform line after it and the printed block."""
    text = (ROOT / "README.md").read_text()
    pattern = r"```python\n(.*?)```\s*\n\s*(prints[^\n]*):\s*\n\s*```\n(.*?)```"
    match = re.search(pattern, text, re.S)
    assert match is not None, "README: no ```python block followed by 'prints (...):' and a block"
    return match.group(1), match.group(2), match.group(3)


def test_readme_example_prints_the_readme_block(tmp_path):
    code, platform, expected = readme_example()
    script = tmp_path / "readme_example.py"
    script.write_text(
        code + "\nimport sys as _sys\n"
        "print(jax.default_backend(), jax.__version__, gl.cpu_kernel_status(), file=_sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    backend, version, kernel = proc.stderr.strip().splitlines()[-1].split(" ", 2)
    documented = re.search(r"\((\w+), jax ([\w.]+)\)", platform)
    assert documented is not None, f"README: the line {platform!r} names no (platform, jax version)"
    if (backend, version) != (documented.group(1).lower(), documented.group(2)):
        pytest.skip(f"the README block is for {documented.group(0)}; this is {backend}, {version}")
    if not kernel.startswith("native:"):
        pytest.skip("the README block is what the compiled CPU kernel prints; it is unavailable")
    assert proc.stdout == expected


@pytest.mark.parametrize("name", ["five_minutes", "own_variant"])
def test_tutorial_is_a_percent_script_that_runs(name, tmp_path):
    jupytext = pytest.importorskip("jupytext")
    script = TUTORIALS / f"{name}.py"
    notebook = jupytext.read(script, fmt="py:percent")
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and kinds.count("code") >= 4 and kinds.count("markdown") >= 4
    assert notebook.cells[0].source.startswith("# ")  # the page title
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.strip()
    if name == "five_minutes":  # J is a sum of squared distances (it printed -J, the objective)
        hard = re.search(r"K-means: \d+ iterations, distortion J = (\S+)", proc.stdout)
        assert hard is not None and float(hard.group(1)) > 0, proc.stdout


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**_env(), "NO_MKDOCS_2_WARNING": "1"}
    command = ["mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)]
    proc = subprocess.run(
        [sys.executable, "-m", *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # every existing guide is a page, the tutorials are rendered from their scripts
    for page in sorted((ROOT / "docs").glob("*.md")):
        stem = "" if page.stem == "index" else f"{page.stem}/"
        assert (site / stem / "index.html").exists(), page.name
    for name in ("five_minutes", "own_variant"):
        html = (site / "tutorials" / name / "index.html").read_text()
        assert 'class="highlight"' in html and f"{name}.py" in html
    # the API reference is generated from the docstrings
    import gmmlimit

    for page, module, fn in (
        ("core", "gmmlimit", gmmlimit.em),
        ("core", "gmmlimit", gmmlimit.kmeans),
        ("study", "gmmlimit.study", gmmlimit.study.nearest_gap),
        ("scale", "gmmlimit.scale", gmmlimit.scale.kmeans_out_of_core),
    ):
        api = (site / "api" / page / "index.html").read_text()
        assert f'id="{module}.{fn.__name__}"' in api
        assert fn.__doc__.strip().splitlines()[0][:40] in api


# The names a page's Python blocks leave to the reader: their own data and starting values.
READERS_NAMES = {
    "annealing.md": {"X"},
    "experiments.md": {"run_id"},
    "scale.md": {"init_means", "m0", "params", "paths", "read_chunks", "sigma2", "variant"},
    "sklearn.md": {"X"},
    "variants.md": {"X", "X_counts", "params", "rates0", "weights0"},
}


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_pages_python_blocks_define_every_name_but_the_readers_data(tmp_path):
    # A block read in order, as a reader runs a page: a name used and never defined or imported
    # (docs/sklearn.md's math.inf without `import math`) is a NameError for every reader.
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    undefined = {}
    for page in pages:
        blocks = _python_blocks(page.read_text())
        if not blocks:
            continue
        script = tmp_path / f"{page.stem}.py"
        script.write_text("\n\n".join(blocks))
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F821",
             "--output-format", "json", str(script)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr  # 1: ruff found names
        found = json.loads(proc.stdout)
        assert all(f["code"] == "F821" for f in found), (page.name, found)  # None: a syntax error
        names = {re.search(r"`(\w+)`", f["message"]).group(1) for f in found}
        if names - READERS_NAMES.get(page.name, set()):
            undefined[page.name] = sorted(names - READERS_NAMES.get(page.name, set()))
    assert not undefined, f"names used but never defined in the pages' blocks: {undefined}"


def _definitions(source: str) -> dict[str, object]:
    """Each top-level name a source defines, as its AST without docstrings or annotations
    (a class: its field names), and the set of its imports under "imports"."""
    out: dict[str, object] = {"imports": set()}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            module = getattr(node, "module", None)
            out["imports"] |= {(module, alias.name) for alias in node.names}
        elif isinstance(node, ast.FunctionDef):
            node.returns = None
            for arg in node.args.args + node.args.kwonlyargs:
                arg.annotation = None
            if ast.get_docstring(node) is not None:
                node.body = node.body[1:]
            out[node.name] = ast.dump(node)
        elif isinstance(node, ast.ClassDef):
            out[node.name] = [f.target.id for f in node.body if isinstance(f, ast.AnnAssign)]
        elif isinstance(node, ast.Assign):
            name = getattr(node.targets[0], "id", "__all__")  # a plain name, not a tuple
            if name != "__all__":
                out[name] = ast.dump(node.value)
    return out


def test_the_gamma_walkthrough_is_the_shipped_file():
    # docs/variants.md says "The file is gmmlimit/variants/_gamma.py": every definition of the
    # walkthrough is the shipped one (docstrings and type annotations aside), and the file
    # defines nothing more (the walkthrough once lacked the file's scaling and init guard).
    text = (ROOT / "docs" / "variants.md").read_text()
    start = text.index("## Adding a variant: the Gamma mixture")
    end = text.index("\n## ", start + 1)
    walkthrough = _definitions("\n\n".join(_python_blocks(text[start:end])))
    shipped = _definitions((ROOT / "gmmlimit" / "variants" / "_gamma.py").read_text())
    assert walkthrough.pop("imports") <= shipped.pop("imports")
    assert walkthrough.keys() == shipped.keys()
    for name, definition in walkthrough.items():
        assert definition == shipped[name], name
