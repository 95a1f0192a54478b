"""SHA-256 whose state can be saved and resumed, so that an append hashes only the new bytes.

qlib feature files and the newest month of candles only ever grow at their end between two
incremental exports. Their checksums stay plain SHA-256 (a user verifies a file with `sha256sum`),
but rehashing a year of 1m (2 MB a file, eight files an instrument) to append one day would make
an update cost grow with the history. So the exporter keeps, next to each checksum, the hash's
internal state after a prefix of the data (`Sha256.state`, a short hex string saved in the
machine-local source cache) and resumes from it (`Sha256.resume`) when only bytes after that
prefix changed.

`hashlib` cannot export its state, so this drives OpenSSL's one-shot SHA-256 context
(`SHA256_Init/Update/Final`, the same library `hashlib` uses) through ctypes. The context is a
plain struct of 112 bytes; `RESUMABLE` is True only if the library has these functions and a
save/restore round trip reproduces `hashlib`'s digest at load time. Otherwise `state()` returns
None and the callers hash the whole data, as before: slower, never wrong.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Any

import numpy as np

_CTX_BYTES = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len (32-bit each)


def _load() -> Any:
    """OpenSSL's libcrypto with the SHA-256 context functions, or None.

    Through `_hashlib`'s own library, whose symbol lookup reaches the libcrypto it is linked
    with (`find_library` would run `ldconfig` in a subprocess)."""
    try:
        import _hashlib

        name: str | None = _hashlib.__file__
    except (ImportError, AttributeError):
        name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        for fn in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
            fn.restype = ctypes.c_int
        lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        lib.SHA256_Init.argtypes = [ctypes.c_void_p]
        lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _load()


class Sha256:
    """Incremental SHA-256 (hashlib's when the state cannot be saved)."""

    def __init__(self, state: str | None = None) -> None:
        self._ctx: ctypes.Array[ctypes.c_char] | None = None
        self._h: Any = None
        if _LIB is None:
            if state is not None:
                raise ValueError("a saved SHA-256 state needs OpenSSL")
            self._h = hashlib.sha256()
            return
        self._ctx = ctypes.create_string_buffer(_CTX_BYTES)
        if state is None:
            _LIB.SHA256_Init(self._ctx)
        else:
            raw = bytes.fromhex(state)
            if len(raw) != _CTX_BYTES:
                raise ValueError("not a saved SHA-256 state")
            ctypes.memmove(self._ctx, raw, _CTX_BYTES)

    @classmethod
    def resume(cls, state: str) -> Sha256:
        """Continue a hash from a `state()` saved earlier (ValueError if it is not one)."""
        return cls(state)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._ctx is None:
            self._h.update(data)
            return
        arr = np.frombuffer(data, dtype=np.uint8)  # (a view: read-only buffers too, no copy)
        if arr.size:
            _LIB.SHA256_Update(self._ctx, arr.ctypes.data, arr.size)

    def state(self) -> str | None:
        """The hash's state after the bytes given so far (None without OpenSSL)."""
        return None if self._ctx is None else self._ctx.raw.hex()

    def hexdigest(self) -> str:
        """The digest of the bytes so far (the hash can go on after it)."""
        if self._ctx is None:
            return str(self._h.hexdigest())
        ctx = ctypes.create_string_buffer(self._ctx.raw, _CTX_BYTES)  # Final clears the context
        out = ctypes.create_string_buffer(32)
        _LIB.SHA256_Final(out, ctx)
        return out.raw.hex()


def _self_test() -> bool:
    """Does a saved and resumed state give hashlib's digest? (Guards the struct's size.)"""
    if _LIB is None:
        return False
    data = bytes(range(256)) * 5
    try:
        h = Sha256()
        h.update(data[:77])
        saved = h.state()
        assert saved is not None
        h2 = Sha256.resume(saved)
        h2.update(memoryview(data)[77:])
        return h2.hexdigest() == hashlib.sha256(data).hexdigest()
    except (ValueError, OSError, AssertionError):
        return False


RESUMABLE = _self_test()
if not RESUMABLE:
    _LIB = None
