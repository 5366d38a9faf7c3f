"""runend: a pending timer ends at once, its function never called; the collector is off at exit."""

import subprocess
import sys
import threading

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
