"""joblog: a rule script logs to its log file and ends a failed job with one readable line."""

import re
import subprocess
import sys
import time

from conftest import REPO

SCRIPT = """
import logging, sys
from img2npz.joblog import rule_logging
with rule_logging(sys.argv[1]) as log:
    log.info("working on %s", "shard 7")
    if sys.argv[2] == "fail":
        raise ValueError("config key 'x':\\n  bad   value")
"""


def run(tmp_path, outcome):
    log = tmp_path / "job.log"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(log), outcome], capture_output=True, text=True, cwd=REPO)
    return result, log.read_text()


def test_a_job_logs_its_work_and_its_peak_memory(tmp_path):
    before = time.time()
    result, log = run(tmp_path, "pass")
    after = time.time()
    assert result.returncode == 0 and "working on shard 7" in log and "peak RSS of this job" in log
    # the whole process's wall, interpreter start included (the bench's shard phase adds these up)
    process = re.search(r"process: ([\d.]+) to ([\d.]+) s since the epoch \(([\d.]+) s", log)
    started, ended, wall = map(float, process.groups())
    script = float(re.search(r"([\d.]+) s wall", log).group(1))
    assert before - 0.05 <= started <= ended <= after and wall >= script and abs(ended - started - wall) < 0.01


def test_a_failing_job_exits_with_one_line_and_keeps_the_traceback_in_its_log(tmp_path):
    result, log = run(tmp_path, "fail")
    lines = [line for line in result.stderr.splitlines() if line.startswith("img2npz error:")]
    assert result.returncode == 1 and lines == ["img2npz error: config key 'x': bad value"]
    assert "Traceback" in log and "ValueError" in log and "Traceback" not in result.stderr


RELEASE = """
import threading, numpy as np
from img2npz.joblog import peak_rss_mb, release_free_memory
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
def churn():
    np.ones(4 << 20, np.uint8)  # once freed, glibc takes blocks this large from its arena, not mmap
    keep = [np.ones(3 << 20, np.uint8) for _ in range(60)]  # 180 MB that stay resident when freed
    del keep
thread = threading.Thread(target=churn); thread.start(); thread.join()
before = rss()
print(release_free_memory(), before - rss(), peak_rss_mb() >= before)
"""


def test_freed_memory_goes_back_to_the_system_and_the_peak_is_the_jobs_own():
    """A thread's freed numpy temporaries stay resident until released; the peak is VmHWM."""
    result = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, cwd=REPO, check=True)
    released, dropped, peak_ok = result.stdout.split()
    assert released == "True" and float(dropped) > 50 and peak_ok == "True", result.stdout
