"""The dataset's digest as a two-level tree: one sha256 per row, then a sha256 of those in row order.

``meta.images_sha256`` (dataset format ``img2npz/2``) is ``sha256(d_0 || d_1 || ... || d_{N-1})``
in hex, where ``d_i = sha256(bytes of row i)`` is the 32-byte digest of row ``i``'s
``H * W * 3 * itemsize`` array bytes. Unlike a sha256 of all the bytes in one stream, which only
one process can compute, the row digests can be taken anywhere and in any order: each shard job
takes its own rows' as it decodes them (a reused row keeps its digest, as it keeps its CRC-32), the
merge combines the shards' without reading a pixel, and validate-report recomputes them with as
many threads as it has. The root depends only on the rows, never on how they were sharded,
copied or verified. To check a dataset by hand::

    rows = np.load("dataset.npz", mmap_mode="r")["images"]
    root = hashlib.sha256(b"".join(hashlib.sha256(row.tobytes()).digest() for row in rows))
    assert root.hexdigest() == json.loads(str(np.load("dataset.npz")["meta"]))["images_sha256"]
"""

from __future__ import annotations

import hashlib

import numpy as np

DIGEST_BYTES = 32


def row_digest(row) -> bytes:
    """sha256 of one row's bytes (anything with the buffer protocol)."""
    return hashlib.sha256(row).digest()


def row_digests(rows: np.ndarray) -> np.ndarray:
    """(n, 32) uint8: each of ``rows``' (first axis) sha256."""
    flat = np.ascontiguousarray(rows).reshape(len(rows), -1).view(np.uint8)
    digests = b"".join(hashlib.sha256(row).digest() for row in flat)
    return np.frombuffer(digests, np.uint8).reshape(len(rows), DIGEST_BYTES).copy()


class TreeDigest:
    """The root over row digests handed over in row order, in batches of any size."""

    def __init__(self):
        self._root = hashlib.sha256()
        self.rows = 0

    def update(self, digests: np.ndarray) -> None:
        """Append (n, 32) uint8 row digests."""
        digests = np.ascontiguousarray(digests, np.uint8)
        if digests.ndim != 2 or digests.shape[1] != DIGEST_BYTES:
            raise ValueError(f"row digests must be (n, {DIGEST_BYTES}) uint8, got {digests.shape}")
        self._root.update(digests)
        self.rows += len(digests)

    def hexdigest(self) -> str:
        return self._root.hexdigest()


def tree_digest(rows: np.ndarray) -> str:
    """The root of ``rows`` computed from scratch (tests, and readers checking a small file)."""
    digest = TreeDigest()
    digest.update(row_digests(rows) if len(rows) else np.zeros((0, DIGEST_BYTES), np.uint8))
    return digest.hexdigest()
