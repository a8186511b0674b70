"""Test configuration: float64 is enabled so both precisions are exercised."""

import jax

jax.config.update("jax_enable_x64", True)
