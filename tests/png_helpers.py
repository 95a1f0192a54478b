"""A small PNG reader (zlib and struct only) for checking browser screenshots pixel by pixel."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel at 8 bits: RGB, RGBA


@dataclass(frozen=True)
class Image:
    """Decoded 8-bit RGB or RGBA pixels, row-major."""

    width: int
    height: int
    rows: list[bytes]  # one bytes object per row, `channels` bytes per pixel
    channels: int

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        row = self.rows[y]
        i = x * self.channels
        return row[i], row[i + 1], row[i + 2]

    def line(self, y: int, columns: range | None = None) -> list[tuple[int, int, int]]:
        """The RGB pixels of line `y` (in `columns`, or all)."""
        row, n = self.rows[y], self.channels
        cols = columns if columns is not None else range(self.width)
        return [(row[x * n], row[x * n + 1], row[x * n + 2]) for x in cols]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, prev: bytes, bpp: int) -> None:
    """Undo one scanline's filter in place (PNG spec, section 9)."""
    n = len(line)
    if kind == 1:
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:
        for i in range(n):
            line[i] = (line[i] + prev[i]) & 0xFF
    elif kind == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            up_left = prev[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + _paeth(left, prev[i], up_left)) & 0xFF
    elif kind != 0:
        raise ValueError(f"unknown PNG filter {kind}")


def read_png(path: Path) -> Image:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium's screenshots are)."""
    data = path.read_bytes()
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"{path} is not a PNG")
    pos, idat = len(_SIGNATURE), bytearray()
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in _CHANNELS or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour {colour}, {interlace=}")
            channels = _CHANNELS[colour]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(raw[start], line, prev, channels)
        prev = bytes(line)
        rows.append(prev)
    return Image(width, height, rows, channels)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """`#2e9e5b` -> (46, 158, 91)."""
    value = int(colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def near(colours: list[str], tolerance: int = 4) -> frozenset[tuple[int, int, int]]:
    """Every RGB within `tolerance` of one of `colours` (a set lookup beats arithmetic per
    pixel when a test scans a whole screenshot)."""
    steps = range(-tolerance, tolerance + 1)
    return frozenset(
        (r + i, g + j, b + k)
        for r, g, b in map(hex_rgb, colours)
        for i in steps
        for j in steps
        for k in steps
    )
