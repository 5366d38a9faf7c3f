"""The end of a Snakemake run: leave no timer for the interpreter to wait on.

Snakemake's scheduler arms a ``threading.Timer`` after each of its rounds (its job-rate limiter's
timespan, 1 s by default, to look at the queue again), and Python waits for every such thread
before the process exits: about a second added to every run that ran a job, a sixth of a
small rerun (measured with py-spy: the main thread in ``threading._shutdown``, the timers in
``Event.wait``). The workflow's ``onsuccess`` and ``onerror`` handlers run once the scheduler is
done, when nothing is left for the timers to wake.
"""

from __future__ import annotations

import threading


def cancel_timers() -> int:
    """Cancel every pending ``threading.Timer`` of this process (each thread then ends at once,
    without calling its function); return how many there were."""
    timers = [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]
    for timer in timers:
        timer.cancel()
    return len(timers)
