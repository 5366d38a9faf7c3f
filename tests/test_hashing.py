"""hashing: the background sha256 equals a plain one over the same chunks, in order."""

import hashlib
import os

from img2npz.hashing import BackgroundSha256


def test_background_digest_equals_hashlib_over_the_same_chunks():
    chunks = [os.urandom(n) for n in (0, 1, 4096, 1 << 20, 7)]
    digest = BackgroundSha256(depth=2)
    for chunk in chunks:
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert BackgroundSha256().hexdigest() == hashlib.sha256().hexdigest()
