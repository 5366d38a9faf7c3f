"""crc32: CRCs of concatenations combined and split without reading the bytes."""

import zlib

from hypothesis import given
from hypothesis import strategies as st

from img2npz.crc32 import combine, tail


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_combine_and_tail_agree_with_zlib(a, b):
    assert combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert tail(zlib.crc32(a + b), zlib.crc32(a), len(b)) == zlib.crc32(b)


def test_gigabyte_lengths():
    """Long zero runs take the same path as real data: check against zlib's own continuation."""
    zeros = bytes(1 << 20)
    crc = zlib.crc32(b"header")
    for _ in range(3):
        crc = zlib.crc32(zeros, crc)
    assert combine(zlib.crc32(b"header"), zlib.crc32(bytes(3 << 20)), 3 << 20) == crc
