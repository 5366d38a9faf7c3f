"""The end of a Snakemake run: the process exits as soon as its last job is done.

Two waits came after the last job of every run, measured on a +1% rerun at 20,000 images:
- Snakemake's scheduler arms a ``threading.Timer`` after each of its rounds (its job-rate limiter's
  timespan, 1 s by default, to look at the queue again), and Python waits for every such thread
  before it exits: about a second (py-spy: the main thread in ``threading._shutdown``, the timers
  in ``Event.wait``).
- Python's last garbage collections walk every object Snakemake built (its DAG, the ~1,200 modules
  it imports): 0.25-0.35 s between the last ``atexit`` function and the end of the process.
The workflow's ``onsuccess`` and ``onerror`` handlers call :func:`end_run` once the scheduler is
done, when nothing is left for the timers to wake.
"""

from __future__ import annotations

import atexit
import gc
import threading


def end_run() -> None:
    """Cancel the scheduler's timers now, and skip the final collections at exit."""
    cancel_timers()
    atexit.register(skip_final_collections)


def cancel_timers() -> int:
    """Cancel every pending ``threading.Timer`` of this process (each thread then ends at once,
    without calling its function); return how many there were."""
    timers = [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]
    for timer in timers:
        timer.cancel()
    return len(timers)


def skip_final_collections() -> None:
    """At exit: move every object to the collector's permanent generation and stop it, so the
    interpreter's shutdown frees objects by their reference counts only. Nothing is lost: files
    are flushed and closed by the functions ``atexit`` runs after this one (logging's) and by
    reference counting, and no collection is promised at exit anyway."""
    gc.disable()
    gc.freeze()
