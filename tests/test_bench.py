"""bench: a run prints its figures and writes a report only where ``--out`` names, so running a bench
never overwrites the committed bench/*.md that the README quotes. The benches themselves run, scaled
down, in test_examples (the README's commands); here only what surrounds them, with fake figures."""

import importlib

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
