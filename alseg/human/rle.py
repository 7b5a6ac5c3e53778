"""Label Studio's brush masks: its run-length bit stream, decoded and encoded.

A brush result carries ``value.rle``, a list of bytes holding a bit stream (most
significant bit first): a header of 32 bits (N, the number of values), 5 bits (word size
- 1) and four 4-bit fields (the four run-length field widths - 1); then records until N
values are out, each: 1 bit (1: a run of one repeated word, 0: a run of literal words),
2 bits (which of the four widths follows), that many bits (run length - 1), then one word
(a run) or run-length words (literals). The values are the RGBA bytes of the image, row
by row; a brush mask is its alpha channel (every fourth value).
"""

from __future__ import annotations

import numpy as np

WIDTHS = (3, 4, 8, 16)  # run-length field widths Label Studio writes
WORD = 8


class _Bits:
    def __init__(self, data: bytes | list[int]) -> None:
        self.bits = np.unpackbits(np.asarray(data, dtype=np.uint8))
        self.i = 0

    def read(self, n: int) -> int:
        if self.i + n > self.bits.size:
            raise ValueError("the brush RLE ends in the middle of a record")
        chunk = self.bits[self.i : self.i + n]
        self.i += n
        return int(chunk.dot(1 << np.arange(n - 1, -1, -1, dtype=np.int64))) if n else 0


def decode(rle: list[int] | bytes) -> np.ndarray:
    """The (N,) uint8 values of a Label Studio RLE."""
    bits = _Bits(rle)
    n = bits.read(32)
    word = bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(n, dtype=np.uint8)
    i = 0
    while i < n:
        repeat = bits.read(1)
        length = bits.read(widths[bits.read(2)]) + 1
        if i + length > n:
            raise ValueError(f"the brush RLE runs past its {n} values")
        if repeat:
            out[i : i + length] = bits.read(word)
        else:
            out[i : i + length] = [bits.read(word) for _ in range(length)]
        i += length
    return out


def encode(values: np.ndarray) -> list[int]:
    """A Label Studio RLE of (N,) uint8 values: runs of one value as repeat records (the
    narrowest width that fits, split at 2^16)."""
    v = np.asarray(values, dtype=np.uint8).ravel()
    parts = [f"{v.size:032b}", f"{WORD - 1:05b}", *(f"{w - 1:04b}" for w in WIDTHS)]
    if v.size:
        change = np.flatnonzero(v[1:] != v[:-1]) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [v.size]])
        for s, e in zip(starts.tolist(), ends.tolist()):
            while s < e:
                length = min(e - s, 1 << WIDTHS[-1])
                k = next(k for k, w in enumerate(WIDTHS) if length <= 1 << w)
                parts.append(f"1{k:02b}{length - 1:0{WIDTHS[k]}b}{int(v[s]):08b}")
                s += length
    bits = "".join(parts)
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def brush_mask(rle: list[int] | bytes, height: int, width: int) -> np.ndarray:
    """(H, W) bool: where a brush result painted (its alpha channel)."""
    values = decode(rle)
    if values.size != height * width * 4:
        raise ValueError(
            f"a brush mask of {values.size // 4} pixels for an image of {height}x{width}"
        )
    return values.reshape(height, width, 4)[..., 3] > 0


def mask_rle(mask: np.ndarray) -> list[int]:
    """The RLE of a brush mask (H, W) bool, as Label Studio writes one (RGBA, 255 where
    painted)."""
    m = np.asarray(mask, dtype=bool).astype(np.uint8) * 255
    return encode(np.repeat(m.ravel(), 4))
