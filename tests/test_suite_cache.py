"""The test session's JAX compilation cache (tests/conftest.py): set up, used, shared."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def test_the_session_compiles_into_its_own_cache_shared_with_subprocesses(tmp_path):
    path = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    assert path.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(path)
    before = set(path.iterdir())
    # A program no other test compiles: its entry appears in the session's cache.
    salt = float(np.random.default_rng().integers(1 << 30))
    jax.jit(lambda x: jnp.sin(x) * salt + 0.123456789)(jnp.arange(7.0)).block_until_ready()
    assert set(path.iterdir()) - before
    # A subprocess the tests start sees the same cache (the variable is in its environment).
    code = "import jax; print(jax.config.jax_compilation_cache_dir)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(path)
