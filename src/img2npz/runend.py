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

A run stopped by Ctrl-C must end the same way every time: Snakemake's scheduler catches the
``KeyboardInterrupt``, stops its jobs and calls ``onerror``. Its scheduler loop runs coroutines
with ``asyncio.Runner``, which takes SIGINT over while it runs (when the handler is Python's
default) and turns it into a ``CancelledError`` of its task; raised from inside a task group, that
error leaves as ``CancelledError``, which the scheduler does not catch: a traceback, and no
``onerror``. ``onstart`` calls :func:`plain_interrupts` so that Ctrl-C stays a
``KeyboardInterrupt`` wherever it lands, and reaches no job Snakemake starts after it.

A SIGTERM must end the run too: Snakemake's handler takes its scheduler's lock (a plain
``threading.Lock``), which the main thread holds while it handles finished jobs; a SIGTERM that
landed then ran the handler inside that hold, and the run never ended. ``onstart`` calls
:func:`graceful_terms`, which runs the handler in a thread of its own.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
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


WAKE = getattr(signal, "SIGURG", None)  # wakes the main thread; ignored by default, so no job minds it


def plain_interrupts() -> bool:
    """Raise ``KeyboardInterrupt`` on SIGINT through a handler of our own, which ``asyncio.Runner``
    leaves in place (it replaces only Python's default handler object), and start every later job
    with SIGINT blocked: a job's shell ignores it (the rules' ``trap '' INT``) only once it runs
    that line, and a Ctrl-C in that first millisecond killed the job.

    With SIGINT blocked in the main thread, the kernel hands it to a thread that takes it: the
    forwarding thread started here, or one started before (numpy's BLAS workers, an executor's
    status thread). Either way Python's C handler notes it and writes its number to the wakeup
    file descriptor, which the forwarding thread reads, and wakes the main thread with :data:`WAKE`
    (Snakemake's scheduler sleeps until a job ends), which then runs :func:`interrupt`. A handler
    someone else set (or SIGINT ignored) is left alone, and so is a platform without these signals.
    Return whether ours was installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    signal.signal(signal.SIGINT, interrupt)
    if WAKE is None or not hasattr(signal, "pthread_sigmask"):
        return True
    in_use = signal.set_wakeup_fd(-1)
    if in_use != -1:  # an event loop's: left as it was, and only the handler is ours
        signal.set_wakeup_fd(in_use)
        return True
    signal.signal(WAKE, _woken)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    # threads started from here on, and the jobs they start, inherit the blocked signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    main = threading.main_thread().ident
    threading.Thread(target=_forward_interrupts, args=(read_end, main), name="ctrl-c", daemon=True).start()
    return True


def graceful_terms() -> bool:
    """Run the SIGTERM handler that is set (Snakemake's scheduler's) in a thread of its own, where
    it waits for the scheduler's lock like any other thread. Return whether it was wrapped: not
    off the main thread, nor where SIGTERM has no Python handler."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        return False

    def in_a_thread(signum, frame) -> None:
        threading.Thread(target=handler, args=(signum, None), name="sigterm", daemon=True).start()

    signal.signal(signal.SIGTERM, in_a_thread)
    return True


def interrupt(signum, frame) -> None:
    """SIGINT as Python's default handler answers it: a ``KeyboardInterrupt``."""
    signal.default_int_handler(signum, frame)


def _woken(signum, frame) -> None:
    """Nothing: the signal only ends the main thread's wait, so that it runs :func:`interrupt`."""


def _forward_interrupts(read_end: int, main: int) -> None:
    """Wake the main thread for each SIGINT or SIGTERM noted (the forwarding thread, which takes
    SIGINT too): only the main thread runs Python's handlers."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    while noted := os.read(read_end, 64):
        if signal.SIGINT in noted or signal.SIGTERM in noted:
            signal.pthread_kill(main, WAKE)
