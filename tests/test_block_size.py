"""The default E-step block size: 4096 rows on the CPU, few large blocks on other backends."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gmmlimit as gl
from gmmlimit import _api, _block_size
from gmmlimit._block_size import DEFAULT_BLOCK_SIZE, DEVICE_BLOCK_ELEMENTS
from gmmlimit.scale import default_block_size
from gmmlimit.variants._isotropic_engines import _wide_tile_rows


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 10**8),
    k=st.integers(1, 4096),
    d=st.integers(1, 4096),
    lanes=st.integers(1, 64),
)
def test_device_blocks_hold_every_row_in_the_fewest_equal_blocks_within_the_budget(
    n: int, k: int, d: int, lanes: int
) -> None:
    assert default_block_size(n, k, d, lanes, backend="cpu") == DEFAULT_BLOCK_SIZE
    b = default_block_size(n, k, d, lanes, backend="gpu")
    most = max(DEFAULT_BLOCK_SIZE, DEVICE_BLOCK_ELEMENTS // (max(k, d) * lanes))
    n_blocks = -(-n // b)
    assert 1 <= b <= min(n, most)  # within the budget, never more rows than there are
    assert n_blocks == -(-n // most)  # as few blocks as the budget allows
    assert n_blocks * b - n < n_blocks  # equal blocks: less than a row of padding per block


def test_device_blocks_at_the_shapes_measured_on_an_h200() -> None:
    """benchmarks/results/gpu_h200_s34: one block of all rows was fastest at every shape."""
    assert default_block_size(250_000, 5, 2, backend="gpu") == 250_000
    assert default_block_size(156_250, 64, 64, backend="gpu") == 156_250
    # (B, K) scores of 2^26 elements at most: K = 512 takes 2 blocks of 78125 rows
    assert default_block_size(156_250, 512, 64, backend="gpu") == 78_125
    # eight lanes of a vmapped batch share the budget
    assert default_block_size(250_000, 64, 2, lanes=8, backend="gpu") == 125_000


def test_the_default_follows_the_default_device(monkeypatch) -> None:
    """A ``jax.default_device`` context decides, not the default backend (as on a GPU machine)."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert _block_size.default_platform() == "gpu"
    assert default_block_size(10**6, 5, 2) > DEFAULT_BLOCK_SIZE
    with jax.default_device(jax.devices("cpu")[0]):
        assert _block_size.default_platform() == "cpu"
        assert default_block_size(10**6, 5, 2) == DEFAULT_BLOCK_SIZE


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4096", True])
def test_a_bad_block_size_is_refused_before_any_fit(bad: object) -> None:
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="block_size"):
        gl.kmeans(X, X[:2], block_size=bad)
    with pytest.raises(ValueError, match="block_size"):
        gl.fit(gl.variants.isotropic, X, gl.variants.IsotropicParams(X[:2], 1.0), block_size=bad)


@pytest.fixture
def as_if_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Resolve default blocks as a GPU would (the fits still run here); record each fit's."""
    monkeypatch.setattr(_block_size, "default_platform", lambda: "gpu")
    seen: list[int] = []
    real = _api.fit_compiled

    def spy(*args, block_size: int, **kwargs):
        seen.append(block_size)
        return real(*args, block_size=block_size, **kwargs)

    monkeypatch.setattr(_api, "fit_compiled", spy)
    return seen


def test_fits_take_the_backends_default_and_give_the_same_iterates(as_if_on_a_gpu) -> None:
    rng = np.random.default_rng(0)
    n, d, k = 9001, 3, 4  # two blocks of 4096 and a part-filled third on the CPU
    X = rng.normal(size=(n, d)) + 6.0 * rng.integers(0, k, size=(n, 1))
    m0 = X[:k]
    device = gl.kmeans(X, m0)
    em = gl.em(X, m0, 0.5, max_iter=20)
    assert as_if_on_a_gpu == [n, n]  # one block of all rows
    cpu = gl.kmeans(X, m0, block_size=DEFAULT_BLOCK_SIZE)
    np.testing.assert_array_equal(np.asarray(device.labels), np.asarray(cpu.labels))
    assert int(device.n_iter) == int(cpu.n_iter)
    np.testing.assert_allclose(np.asarray(device.means), np.asarray(cpu.means), rtol=1e-12)
    em_cpu = gl.em(X, m0, 0.5, max_iter=20, block_size=DEFAULT_BLOCK_SIZE)
    np.testing.assert_allclose(np.asarray(em.means), np.asarray(em_cpu.means), rtol=1e-10)
    # restarts run as one vmap off the CPU: n_init lanes share the budget
    gl.restarts(jax.random.key(0), X, k, n_init=3, max_iter=5)
    assert as_if_on_a_gpu[-1] == default_block_size(n, k, d, lanes=3, backend="gpu")
    # an explicit block size is kept
    gl.kmeans(X, m0, block_size=1000, max_iter=2)
    assert as_if_on_a_gpu[-1] == 1000


def test_a_vmapped_sweep_tiles_its_blocks_for_the_platform(monkeypatch) -> None:
    """On the CPU tiles of 2^18 (S K rows) elements stay in cache; elsewhere a tile costs a
    launch (about 58 us on an H200 whatever its size), so it takes a block's budget."""
    monkeypatch.setattr(_block_size, "default_platform", lambda: "cpu")
    assert _wide_tile_rows(250_000, 8 * 64) == (1 << 18) // 512
    monkeypatch.setattr(_block_size, "default_platform", lambda: "gpu")
    assert _wide_tile_rows(250_000, 8 * 64) == DEVICE_BLOCK_ELEMENTS // 512
    assert _wide_tile_rows(20_000, 8 * 64) == 20_000  # one tile holds the whole block


@pytest.mark.parametrize(
    ("n", "k", "d", "lanes", "message"),
    [
        (-1, 2, 2, 1, "n must be an integer >= 0; got -1."),
        (10.5, 2, 2, 1, "n must be an integer >= 0; got 10.5."),
        (True, 2, 2, 1, "n must be an integer >= 0; got True."),
        (10, 0, 2, 1, "k must be >= 1; got 0."),
        (10, 2, 2.0, 1, "d must be an integer; got 2.0."),
        (10, 2, 2, 0, "lanes must be >= 1; got 0."),
    ],
)
def test_default_block_size_refuses_bad_counts(n, k, d, lanes, message):
    # before, (-1, 2, 2) and (10.5, 2, 2) returned 4096 on the CPU without a word
    with pytest.raises(ValueError, match=re.escape(message)):
        gl.scale.default_block_size(n, k, d, lanes, backend="cpu")
    assert gl.scale.default_block_size(np.int64(0), 2, 2, backend="cpu") == 4096
