"""sha256 of a stream, computed in a second thread while the caller reads or writes the next chunk.

hashlib releases the GIL on large buffers, so on a multi-core machine hashing gigabytes of pixels costs
(almost) no wall time next to the I/O. Chunks handed over must not be modified afterwards.
"""

from __future__ import annotations

import hashlib
import queue
import threading


class BackgroundSha256:
    DEPTH = 4  # chunks queued at most; a reader reusing buffers needs a ring of DEPTH + 2

    def __init__(self, depth: int = DEPTH):
        self._digest = hashlib.sha256()
        self._chunks: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._consume, name="sha256", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk) -> None:
        self._chunks.put(chunk)

    def hexdigest(self) -> str:
        self._chunks.put(None)
        self._thread.join()
        return self._digest.hexdigest()
