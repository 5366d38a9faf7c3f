"""Logging for rule scripts: everything goes to the rule's log file, and an error ends the job with
one readable line on stderr (the full traceback stays in the log)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import sys
import time
import traceback
from collections.abc import Iterator


def peak_rss_mb() -> float:
    """This process's own peak resident memory, in MB.

    Linux's ``VmHWM`` starts afresh when a program is executed; ``ru_maxrss`` (the fallback
    elsewhere) survives ``exec``, so a job started by Snakemake's fork would report at least
    Snakemake's own size there."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_free_memory() -> bool:
    """Hand the memory freed since the last call back to the system (glibc's ``malloc_trim``);
    False where there is no glibc.

    After a phase of large numpy temporaries, many of them in worker threads' malloc arenas, glibc
    keeps the freed blocks for reuse: the next phase's peak would stack on top of the last one's.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def process_age() -> float | None:
    """Seconds since this process started (Linux: its start in clock ticks since boot), or None:
    a job's whole wall, interpreter start and imports included, which its script cannot time."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            started = int(handle.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@contextlib.contextmanager
def rule_logging(log_path: str | None) -> Iterator[logging.Logger]:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    logger = logging.getLogger("img2npz")
    started, times = time.perf_counter(), os.times()
    try:
        yield logger
        wall, now = time.perf_counter() - started, os.times()
        user, system = now.user - times.user, now.system - times.system
        logger.info(
            "peak RSS of this job: %.1f MB; %.2f s wall, %.2f s CPU in this script (user %.2f, system %.2f)",
            peak_rss_mb(),
            wall,
            user + system,
            user,
            system,
        )
        age = process_age()
        if age is not None:  # bench/throughput.py sums these into the shard phase's work
            ended = time.time()
            logger.info("process: %.3f to %.3f s since the epoch (%.2f s wall)", ended - age, ended, age)
    except Exception as error:
        if log_path:
            with open(log_path, "a", encoding="utf-8") as handle:
                traceback.print_exc(file=handle)
        print(f"img2npz error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(1)
