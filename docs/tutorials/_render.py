"""mkdocs hook: each tutorial script ``docs/tutorials/<name>.py`` becomes a page.

A tutorial is a jupytext percent script; its page ``tutorials/<name>.md`` shows the Markdown
cells as text and the code cells as code blocks.

The scripts stay the single source: the test suite executes them, and the site shows them.
"""

from __future__ import annotations

from typing import Any

import jupytext
from mkdocs.structure.files import File, Files


def percent_to_markdown(text: str, name: str) -> str:
    """A jupytext percent script as Markdown, with a link to download the script.

    Args:
        text: the script's source.
        name: the script's file name (for the download link).

    Returns:
        The page's Markdown.
    """
    notebook = jupytext.reads(text, fmt="py:percent")
    parts = []
    for cell in notebook.cells:
        source = cell.source.strip("\n")
        if not source:
            continue
        if cell.cell_type == "markdown":
            parts.append(source)
        else:
            parts.append(f"```python\n{source}\n```")
    parts.append(
        f"*This page is the script [`{name}`]({name}), a jupytext percent script: run it with "
        f"`python {name}`, or open it as a notebook with `jupytext --to notebook {name}`.*"
    )
    return "\n\n".join(parts) + "\n"


def on_files(files: Files, config: Any) -> Files:
    """Add a generated Markdown page next to every tutorial script."""
    for file in list(files):
        uri = file.src_uri
        if uri.startswith("tutorials/") and uri.endswith(".py"):
            name = uri.rsplit("/", 1)[1]
            if name.startswith("_"):
                continue
            assert file.abs_src_path is not None
            with open(file.abs_src_path, encoding="utf-8") as fh:
                content = percent_to_markdown(fh.read(), name)
            files.append(File.generated(config, uri[: -len(".py")] + ".md", content=content))
    return files
