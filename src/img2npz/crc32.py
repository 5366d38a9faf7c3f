"""Arithmetic on zip CRC-32s, so a merge can copy bytes it never reads and still write a valid CRC.

``combine(crc_a, crc_b, len_b)`` is the CRC of ``a + b`` (zlib's ``crc32_combine``, which Python's
zlib does not expose), and ``tail(crc_ab, crc_a, len_b)`` recovers the CRC of ``b`` alone: the CRC of a
stored npz member's array bytes from the member's zip CRC and its header. Both take well under a millisecond
(precomputed GF(2) matrix powers), against a second or so per GB to recompute a CRC.
"""

from __future__ import annotations

import functools

_POLYNOMIAL = 0xEDB88320  # reflected CRC-32, as zip and zlib use


def _times(matrix: list[int], vector: int) -> int:
    total = 0
    row = 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _square(matrix: list[int]) -> list[int]:
    return [_times(matrix, matrix[row]) for row in range(32)]


@functools.cache
def _byte_powers() -> list[list[int]]:
    """Operators that advance a CRC over 2**k zero bytes, k = 0..63."""
    one_bit = [_POLYNOMIAL] + [1 << bit for bit in range(31)]
    operator = _square(_square(_square(one_bit)))  # 8 zero bits
    powers = []
    for _ in range(64):
        powers.append(operator)
        operator = _square(operator)
    return powers


def _shift(crc: int, length: int) -> int:
    """``crc`` advanced over ``length`` zero bytes, without its final conditioning: the part of the
    CRC of ``a + b`` that comes from ``a``."""
    power = 0
    while length:
        if length & 1:
            crc = _times(_byte_powers()[power], crc)
        length >>= 1
        power += 1
    return crc


def combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC-32 of ``a + b`` from the CRC-32s of ``a`` and ``b`` and the length of ``b``."""
    return _shift(crc_a, len_b) ^ crc_b


def tail(crc_ab: int, crc_a: int, len_b: int) -> int:
    """CRC-32 of ``b`` from the CRC-32s of ``a + b`` and ``a`` and the length of ``b``."""
    return crc_ab ^ _shift(crc_a, len_b)
