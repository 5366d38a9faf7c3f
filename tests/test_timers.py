"""timers: a pending timer ends at once, its function never called."""

import threading

from img2npz.timers import cancel_timers


def test_pending_timers_end_at_once_without_running():
    called = []
    timers = [threading.Timer(60, called.append, args=[n]) for n in range(2)]
    for timer in timers:
        timer.start()
    other = threading.Thread(target=threading.Event().wait, args=(0.5,))  # not a timer: left alone
    other.start()
    assert cancel_timers() == 2
    for timer in timers:
        timer.join(5)
        assert not timer.is_alive()
    assert other.is_alive() and not called
    other.join()
