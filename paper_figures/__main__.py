"""``python -m gmmlimit.paper_figures``: print the figures index (docs/figures.md)."""

from . import index_markdown, registry

print(index_markdown(list(registry().values())))
