"""joblog: a rule script logs to its log file and ends a failed job with one readable line."""

import subprocess
import sys

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
    result, log = run(tmp_path, "pass")
    assert result.returncode == 0 and "working on shard 7" in log and "peak RSS of this job" in log


def test_a_failing_job_exits_with_one_line_and_keeps_the_traceback_in_its_log(tmp_path):
    result, log = run(tmp_path, "fail")
    lines = [line for line in result.stderr.splitlines() if line.startswith("img2npz error:")]
    assert result.returncode == 1 and lines == ["img2npz error: config key 'x': bad value"]
    assert "Traceback" in log and "ValueError" in log and "Traceback" not in result.stderr
