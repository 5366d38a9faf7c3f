"""Write files so that a reader (or a killed job) never sees a half-written final name."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only when the block ends without an error.

    The temporary file sits in the same directory (so the rename is atomic) and starts with a dot,
    so a tree scan or a glob for ``*.npz`` never mistakes it for a finished output. ``durable``
    fsyncs before the rename (survives power loss, not just a killed process); small files that are
    cheap to rebuild skip it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(error.errno, f"no space left on the device while writing {path}") from error
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    with atomic_output(path, durable) as handle:
        handle.write(data)


def write_if_changed(path: str | os.PathLike, data: bytes, durable: bool = True) -> bool:
    """Write ``data`` unless the file already holds exactly it; return whether it was written.

    Unchanged files keep their mtime, so Snakemake does not rerun the jobs that read them.
    """
    path = Path(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_bytes_atomic(path, data, durable)
    return True
