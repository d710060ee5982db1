"""Counter-based random numbers: every value is a pure function of (seed, stream, coordinates).

The synthetic section is rendered window by window, in any order and on any number of
workers, yet must be identical to a render of the whole section at once. Random fields are
therefore never drawn from a sequential generator: a 64-bit hash (splitmix64 finaliser) of the
seed, a stream id and integer coordinates gives a uniform number for any pixel, lattice node
or cell on demand.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix_int(x: int) -> int:
    """splitmix64 on a Python int (used for scalar keys, no overflow warnings)."""
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix(z: np.ndarray) -> np.ndarray:
    # In-place splitmix64 finaliser on uint64 arrays (wrapping multiplication is intended).
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def stream_key(seed: int, stream: int) -> int:
    """64-bit key of one random stream of one seed."""
    return _splitmix_int(_splitmix_int(seed & _MASK) ^ (stream * _GOLDEN & _MASK))


def hash_uint64(key: int, *coords: np.ndarray | int) -> np.ndarray:
    """Hash integer coordinate arrays (broadcast together) into uint64 values.

    Parameters
    ----------
    key : int
        From :func:`stream_key`.
    *coords : array_like of int
        Coordinates (may be negative); broadcast against each other.
    """
    arrays = np.broadcast_arrays(*[np.asarray(c, dtype=np.int64) for c in coords])
    h = np.full(arrays[0].shape, key, dtype=np.uint64)
    for i, c in enumerate(arrays):
        h ^= c.astype(np.uint64) + np.uint64((_GOLDEN * (i + 1)) & _MASK)
        _mix(h)
    return h


def hash_uniform(key: int, *coords: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) (float64), one per broadcast coordinate tuple.

    Examples
    --------
    >>> k = stream_key(7, 1)
    >>> a = hash_uniform(k, np.arange(3), 5)
    >>> bool(np.all((a >= 0) & (a < 1))), bool(np.array_equal(a, hash_uniform(k, np.arange(3), 5)))
    (True, True)
    """
    h = hash_uint64(key, *coords)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_normal(key: int, *coords: np.ndarray | int) -> np.ndarray:
    """Standard normal floats by the Box–Muller transform of two hashed uniforms."""
    u1 = hash_uniform(key, *coords, 0)
    u2 = hash_uniform(key, *coords, 1)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def pixel_noise(key: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
    """Zero-mean uniform white noise (float32, variance 1/12) on a pixel window."""
    rows = np.arange(row0, row0 + height, dtype=np.int64)[:, None]
    cols = np.arange(col0, col0 + width, dtype=np.int64)[None, :]
    h = hash_uint64(key, rows, cols)
    return ((h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))) - np.float32(0.5)


def value_noise(
    key: int, row0: int, col0: int, height: int, width: int, spacing: float
) -> np.ndarray:
    """Smooth noise in [-1, 1): hashed lattice values (``spacing`` px apart), interpolated.

    Window-independent: the value at a pixel depends only on its global coordinates.
    """
    y = (np.arange(row0, row0 + height) + 0.5) / spacing
    x = (np.arange(col0, col0 + width) + 0.5) / spacing
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    # Smoothstep weights avoid visible lattice creases.
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    ys = np.arange(y0.min(), y0.max() + 2)
    xs = np.arange(x0.min(), x0.max() + 2)
    lattice = 2.0 * hash_uniform(key, ys[:, None], xs[None, :]) - 1.0
    iy, ix = (y0 - ys[0])[:, None], (x0 - xs[0])[None, :]
    top = lattice[iy, ix] * (1 - fx) + lattice[iy, ix + 1] * fx
    bottom = lattice[iy + 1, ix] * (1 - fx) + lattice[iy + 1, ix + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def tile_rng(seed: int, stream: int, tile_row: int, tile_col: int) -> np.random.Generator:
    """A sequential generator for one fixed noise tile (Poisson counts, sensor noise)."""
    return np.random.default_rng([seed & _MASK, stream, tile_row, tile_col])
