"""bench: a run prints its figures and writes a report only where ``--out`` names, so running a bench
never overwrites the committed bench/*.md that the README quotes. The benches themselves run, scaled
down, in test_examples (the README's commands); here only what surrounds them, with fake figures,
and the helpers whose mistakes would not show in a scaled-down run: the count of bytes a run wrote,
the change that replaces pictures under the same paths, and the issue's targets."""

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

BENCHES = ["incremental", "scale", "throughput"]
FIGURES = "| run | seconds |\n|---|---|\n| first build | 1.0 |\n"


def committed_reports() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (REPO / "bench").glob("*.md")}


@pytest.fixture(params=BENCHES)
def bench(request, monkeypatch, tmp_path):
    """The bench module, its measurements replaced by fake figures, run from an empty folder."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    module = importlib.import_module(request.param)
    figures = (FIGURES, []) if request.param == "incremental" else FIGURES  # incremental adds its problems
    monkeypatch.setattr(module, "run_bench", lambda args: figures)
    monkeypatch.chdir(tmp_path)
    return module


def test_a_plain_run_writes_no_file(bench, tmp_path):
    before = committed_reports()
    assert bench.parse_args([]).out is None
    bench.main([])
    assert committed_reports() == before
    assert list(tmp_path.iterdir()) == []


def test_out_names_where_the_report_goes(bench, tmp_path, capsys):
    before = committed_reports()
    bench.main(["--out", str(tmp_path / "figures" / "report.md")])
    assert (tmp_path / "figures" / "report.md").read_text() == FIGURES
    assert f"wrote {tmp_path / 'figures' / 'report.md'}" in capsys.readouterr().out
    assert committed_reports() == before


def memory_file_system(path: Path) -> bool:
    """Whether ``path`` lies on tmpfs or ramfs, whose writes the kernel does not count as disk writes."""
    resolved, point, kind = str(path.resolve()), "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount, after = line.split(" - ", 1)
        mounted = mount.split()[4]
        if (resolved == mounted or resolved.startswith(mounted.rstrip("/") + "/")) and len(mounted) >= len(point):
            point, kind = mounted, after.split()[0]
    return kind in {"tmpfs", "ramfs"}


def test_bytes_written_count_every_process_under_the_command(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from throughput import run_counting_writes

    if memory_file_system(tmp_path):
        pytest.skip("tmp_path is on a memory file system: nothing is written to a disk")
    write = "import os, sys; f = open(sys.argv[1], 'wb'); f.write(os.urandom(4 << 20)); f.close()"
    grandchild = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {write!r}, sys.argv[1]], check=True)"
    seconds, written, status, errors = run_counting_writes(
        [sys.executable, "-c", grandchild, str(tmp_path / "out")], {}
    )
    assert (status, errors) == (0, "")
    assert seconds > 0
    assert 4 << 20 <= written < 6 << 20


def test_a_failing_command_reports_its_status_and_stderr(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from throughput import run_counting_writes

    _, _, status, errors = run_counting_writes([sys.executable, "-c", "import sys; sys.exit('no tree')"], {})
    assert (status, errors.strip()) == (1, "no tree")


def test_replaced_pictures_keep_their_paths_and_leave_the_corpus_alone(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    incremental = importlib.import_module("incremental")
    from corpus import write_image

    corpus, tree = tmp_path / "corpus", tmp_path / "tree"
    for number in range(4):
        (corpus / "rings00").mkdir(parents=True, exist_ok=True)
        write_image(corpus / "rings00" / f"img{number:07d}", "rings", np.random.default_rng(number))
    subprocess.run(["cp", "-al", str(corpus), str(tree)], check=True)  # as the bench makes its tree
    before = {path.relative_to(corpus): path.read_bytes() for path in incremental.images_of(corpus)}

    assert incremental.replace_some(tree, 0.5, np.random.default_rng(0)) == 2
    after = {path.relative_to(tree): path.read_bytes() for path in incremental.images_of(tree)}
    assert after.keys() == before.keys()
    assert sum(after[name] != before[name] for name in before) == 2
    assert {path.relative_to(corpus): path.read_bytes() for path in incremental.images_of(corpus)} == before


def account(seconds: float, written: float, dataset_bytes: float = 100.0) -> dict:
    return {"seconds": seconds, "written": written, "dataset_bytes": dataset_bytes}


def test_done_when_compares_the_one_percent_rerun_with_the_issues_targets(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    incremental = importlib.import_module("incremental")
    rows = {
        "shards": [("full", 100, account(100.0, 100.0)), ("+1%", 1, account(5.0, 2.0))],
        "file": [("full", 100, account(100.0, 200.0)), ("+1%", 1, account(20.0, 105.0))],
    }
    lines = incremental.done_when(rows, cores=2)
    shards = next(line for line in lines if line.startswith("- shards layout"))
    file = next(line for line in lines if line.startswith("- file layout"))
    assert "rerun / full build 0.050 (target <= 0.08: holds)" in shards
    assert "bytes written / dataset bytes 0.020" in shards and "target <= 0.03: holds" in shards
    assert "rerun / full build 0.200 (target <= 0.15: misses)" in file
    assert "bytes written / dataset bytes 1.050" in file and "target <= 1.1: holds" in file
