"""``python -m paper_figures``: print the figures index (docs/figures.md) from the captions."""

from . import index_markdown, registry

print(index_markdown(list(registry().values())))
