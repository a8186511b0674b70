"""Count the functions JAX traces while a block runs (``jax.monitoring``'s trace event)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def traces() -> Iterator[list[str]]:
    """The names of the functions traced inside the block, in order.

    A fresh function is traced at the end of the block and must be seen (then taken off the
    list), so that a renamed event cannot leave the list empty for a reason other than no trace.
    """
    seen: list[str] = []

    def listen(event: str, duration: float, **kwargs: object) -> None:
        if event == TRACE_EVENT:
            seen.append(str(kwargs.get("fun_name", event)))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seen
        before = len(seen)

        def control(x):
            return x + 1

        jax.jit(control)(1.0)
        assert seen[before:] == ["control"], f"the trace event was not seen: {seen[before:]}"
        del seen[before:]
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
