"""crc32: CRCs of concatenations combined and split without reading the bytes."""

import zlib

from hypothesis import given
from hypothesis import strategies as st

from img2npz.crc32 import combine, combine_blocks, tail


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


@given(st.integers(1, 40), st.data())
def test_blocks_of_one_length_combine_as_zlib_reads_them_joined(length, data):
    blocks = data.draw(st.lists(st.binary(min_size=length, max_size=length), max_size=70))
    assert combine_blocks([zlib.crc32(block) for block in blocks], length) == zlib.crc32(b"".join(blocks))
