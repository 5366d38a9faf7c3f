"""runend: a pending timer ends at once, its function never called; the collector is off at exit;
Ctrl-C stays a KeyboardInterrupt under asyncio."""

import subprocess
import sys
import threading

import pytest

from img2npz.runend import cancel_timers


def test_pending_timers_end_at_once_without_running():
    called = []
    timers = [threading.Timer(60, called.append, args=[n]) for n in range(2)]
    for timer in timers:
        timer.start()
    assert cancel_timers() == 2
    for timer in timers:
        timer.join(timeout=5)
        assert not timer.is_alive()
    assert called == []


def test_end_run_turns_the_collector_off_at_exit_and_output_is_still_flushed(tmp_path):
    log = tmp_path / "log.txt"
    program = f"""
import atexit, gc, logging, threading
from img2npz.runend import end_run
logging.basicConfig(filename={str(log)!r}, level=logging.INFO)
threading.Timer(60, print).start()  # would hold the exit for a minute
# registered first, so run last of all: after end_run's own function
atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0, "enabled", gc.isenabled()))
end_run()
assert gc.isenabled()
logging.getLogger("x").info("written at exit")
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.split() == ["frozen", "True", "enabled", "False"]
    assert "written at exit" in log.read_text()


def run_python(program):
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)


def test_ctrl_c_under_asyncio_runner_stays_a_keyboard_interrupt():
    # Snakemake's scheduler runs its coroutines with asyncio.Runner, in task groups, off threads.
    program = """
import asyncio, os, signal, threading
from img2npz.runend import interrupt, plain_interrupts
assert plain_interrupts()
seen = []

async def child():
    await asyncio.to_thread(threading.Event().wait, 0.5)

async def main():
    seen.append(signal.getsignal(signal.SIGINT) is interrupt)
    async with asyncio.TaskGroup() as group:
        group.create_task(child())
        group.create_task(child())
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        await asyncio.sleep(5)

try:
    with asyncio.Runner() as runner:
        runner.run(main())
except BaseException as error:
    print(type(error).__name__, seen)
"""
    assert run_python(program).stdout.split() == ["KeyboardInterrupt", "[True]"]


def test_a_handler_already_set_or_an_ignored_ctrl_c_is_left_alone():
    program = """
import signal, threading
from img2npz.runend import plain_interrupts
signal.signal(signal.SIGINT, signal.SIG_IGN)
print(plain_interrupts(), signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
mine = lambda signum, frame: None
signal.signal(signal.SIGINT, mine)
print(plain_interrupts(), signal.getsignal(signal.SIGINT) is mine)
signal.signal(signal.SIGINT, signal.default_int_handler)
off_main = []
thread = threading.Thread(target=lambda: off_main.append(plain_interrupts()))
thread.start(); thread.join()
print(off_main[0], signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""
    assert run_python(program).stdout.split() == ["False", "True"] * 3


@pytest.mark.parametrize("to", ["process", "earlier-thread"])
def test_after_plain_interrupts_jobs_start_deaf_to_ctrl_c_and_a_waiting_main_thread_still_hears_it(to):
    """A child started afterwards has SIGINT blocked from its first instruction (no window before
    its shell's trap), and SIGINT still ends the main thread's wait on a lock nothing releases,
    also when a thread started before (numpy's BLAS workers) is the one that takes it."""
    program = f"""
import os, signal, subprocess, sys, threading
earlier = threading.Thread(target=threading.Event().wait, daemon=True)
earlier.start()  # SIGINT not blocked in it
from img2npz.runend import plain_interrupts
assert plain_interrupts()
ask = "import signal; print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))"
child = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, check=True)
print("child-blocks-int", child.stdout.strip())
if {to!r} == "process":
    threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGINT)).start()
else:
    threading.Timer(0.2, signal.pthread_kill, args=(earlier.ident, signal.SIGINT)).start()
try:
    threading.Semaphore(0).acquire()  # Snakemake's scheduler waits like this between jobs
except KeyboardInterrupt:
    print("interrupted")
"""
    assert run_python(program).stdout.split() == ["child-blocks-int", "True", "interrupted"]


def test_a_wakeup_fd_in_use_is_left_alone():
    program = """
import os, signal
from img2npz.runend import interrupt, plain_interrupts
read_end, write_end = os.pipe()
os.set_blocking(write_end, False)
signal.set_wakeup_fd(write_end)
print(plain_interrupts(), signal.set_wakeup_fd(-1) == write_end, signal.getsignal(signal.SIGINT) is interrupt)
print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
"""
    assert run_python(program).stdout.split() == ["True", "True", "True", "False"]


def test_a_sigterm_while_the_main_thread_holds_the_handlers_lock_still_reaches_it():
    """Snakemake's SIGTERM handler takes the scheduler's lock; the signal lands while the main
    thread holds it (handling finished jobs). Run in place, the handler could never get it."""
    program = """
import signal, threading
from img2npz.runend import graceful_terms
lock, done, got = threading.Lock(), threading.Event(), []

def scheduler_handler(signum, frame):  # as Snakemake's exit_gracefully: the lock, then a note
    got.append(lock.acquire(timeout=2))
    done.set()

signal.signal(signal.SIGTERM, scheduler_handler)
print(graceful_terms())
with lock:
    signal.raise_signal(signal.SIGTERM)  # its Python handler runs here, inside the hold
    inside = done.is_set()
print(inside, done.wait(10), got)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
print(graceful_terms())
"""
    assert run_python(program).stdout.split() == ["True", "False", "True", "[True]", "False"]
