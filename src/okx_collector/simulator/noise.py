"""Seeded integer hashing and value noise on integer grids (pure, vectorised with numpy).

Every random quantity of the simulated market is a hash of (salt, integer index), so any single
value can be computed directly, in any order, without walking from an origin. Arrays are 2-D:
one row per salt (instrument), one column per grid point, so that many instruments are computed in
one pass. Only element-wise operations are used, so a value does not depend on which range or
batch it was computed in.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

# splitmix64 constants (Steele, Lea, Flood 2014).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 2.0**-53
_MASK64 = (1 << 64) - 1


def derive_salt(seed: int, *parts: object) -> int:
    """A stable 64-bit salt for (seed, parts): the same in every process and Python version."""
    text = "|".join([str(seed), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def salts(values: list[int]) -> U64:
    """A 1-D uint64 array of salts."""
    return np.array(values, dtype=np.uint64)


def _mix(x: U64) -> U64:
    """splitmix64's finaliser: a bijective avalanche of a uint64 array (wraps, never warns)."""
    x = x ^ (x >> _S30)
    x = x * _MUL1
    x = x ^ (x >> _S27)
    x = x * _MUL2
    return x ^ (x >> _S31)


def sub_salts(base: U64, index: int) -> U64:
    """Independent salts derived from `base`, one per element, for sub-stream `index`."""
    step = ((index + 1) * int(_GOLDEN)) & _MASK64
    return _mix(base + np.uint64(step))


def hash2d(row_salts: U64, idx: I64) -> U64:
    """Hash of every (salt, index) pair: shape (len(row_salts), len(idx))."""
    x = idx.astype(np.uint64)[None, :] * _GOLDEN
    return _mix(x ^ row_salts[:, None])


def unit(h: U64) -> F64:
    """Uniform floats in [0, 1) from hashes."""
    return (h >> _S11).astype(np.float64) * _TO_UNIT


def open_unit(h: U64) -> F64:
    """Uniform floats in (0, 1) from hashes: safe under log()."""
    return ((h >> _S11).astype(np.float64) + 0.5) * _TO_UNIT


def rehash(h: U64) -> U64:
    """A second, independent hash from a first one."""
    return _mix(h + _GOLDEN)


def gaussian(h: U64) -> F64:
    """Standard normal floats from hashes (Box-Muller on two derived uniforms)."""
    u1 = open_unit(h)
    u2 = unit(rehash(h))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def value_noise(row_salts: U64, t: I64, octave: int) -> F64:
    """Smooth noise in [-1, 1] with lattice spacing 2**octave grid steps, at points `t`.

    Lattice values are hashed from (salt, t >> octave) and blended with a smoothstep, so the result
    at one point depends only on the salt and that point.
    """
    cell = t >> octave
    first = int(cell.min())
    lattice = unit(hash2d(row_salts, np.arange(first, int(cell.max()) + 2, dtype=np.int64)))
    lattice = lattice * 2.0 - 1.0
    j = cell - first
    left = lattice[:, j]
    if octave == 0:
        return left
    frac = (t & ((1 << octave) - 1)).astype(np.float64) * (1.0 / (1 << octave))
    blend = frac * frac * (3.0 - 2.0 * frac)
    return left + (lattice[:, j + 1] - left) * blend[None, :]
