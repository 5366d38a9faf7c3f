"""report: what the report files hold (failure groups, pictures, change report)."""

import numpy as np
import pytest
from conftest import COLOURS, DEFAULT_PIXEL, build_dataset, make_tree, thresholds
from PIL import Image

from img2npz import pictures
from img2npz.changes import Catalogue
from img2npz.checks import run_checks
from img2npz.contract import CHANGES_HEADER, FAILURE_HEADER, Check
from img2npz.facts import Facts
from img2npz.nearrule import NearRule
from img2npz.report import ReportFiles, failure_groups, page_of, write_report
from img2npz.tsv import read_tsv, write_tsv


def test_failures_are_grouped_by_stage_and_reason(tmp_path):
    rows = [
        ("a/1.png", "decode", "UnidentifiedImageError: cannot identify image file 'a/1.png'"),
        ("a/2.png", "decode", "UnidentifiedImageError: cannot identify image file 'a/2.png'"),
        ("b/3.jpg", "exif", "SyntaxError: not a TIFF file"),
        ("b/4.jpg", "decode", "changed since it was indexed (size or mtime differ)"),
    ]
    write_tsv(tmp_path / "f.tsv", FAILURE_HEADER, rows)
    groups = failure_groups(str(tmp_path / "f.tsv"))
    assert [(g["stage"], g["reason"], g["count"]) for g in groups] == [
        ("decode", "UnidentifiedImageError", 2),
        ("decode", "changed since it was indexed (size or mtime differ)", 1),
        ("exif", "SyntaxError", 1),
    ]
    assert groups[0]["examples"] == ["a/1.png", "a/2.png"]


def written_report(tmp_path, failed=False):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    facts = Facts(str(out), str(fail), str(out.parent / "images.parquet"), DEFAULT_PIXEL, "folder")
    checks, _ = run_checks(facts, thresholds())
    files = ReportFiles(
        **{name: tmp_path / f"{name}.png" for name in ("samples", "class_counts", "histograms")},
        html=tmp_path / "report" / "index.html",
        failed_html=tmp_path / "logs" / "failed.html",
        changes=tmp_path / "report" / "changes.tsv",
        catalogue=tmp_path / "report" / "catalogue.npz",
    )
    write_report(facts, checks, files, 9, {}, failed=failed, near_rule=NearRule(16))
    return files


def test_the_sample_grid_shows_each_class_in_its_own_row(tmp_path):
    files = written_report(tmp_path)
    grid = Image.open(files.samples)  # a row per class, 9 samples over 3 classes: 3 per row
    cell = pictures.TILE + pictures.GAP
    assert grid.size == (pictures.LABEL_WIDTH + 3 * cell + pictures.GAP, 3 * cell + pictures.GAP)
    for row, colour in enumerate(COLOURS.values()):  # classes in order, each row showing its own images
        centre = (pictures.LABEL_WIDTH + pictures.TILE // 2, pictures.GAP + row * cell + pictures.TILE // 2)
        assert np.abs(np.subtract(grid.getpixel(centre), colour)).max() <= 1
    assert Image.open(files.class_counts).size[1] == pictures.GAP + 3 * (pictures.BAR_HEIGHT + pictures.GAP)


def test_the_first_report_lists_everything_as_added_and_the_page_links_its_passed_run(tmp_path):
    files = written_report(tmp_path)
    rows = {(what, name): int(count) for what, name, _, count in read_tsv(files.changes, CHANGES_HEADER)}
    assert rows[("added", "blue")] == 7 and rows[("added", "red-ish")] == 7
    assert next(Catalogue.load(files.catalogue).iter_paths()) == "blue/00.png"
    note = files.failed_html.read_text()
    assert 'href="../report/index.html"' in note and "This run passed" in note


def test_a_failed_run_keeps_its_page_beside_the_logs(tmp_path):
    files = written_report(tmp_path, failed=True)
    assert files.failed_html.read_text() == files.html.read_text()


def test_a_file_that_is_no_dataset_gets_a_page_of_its_checks(tmp_path):
    files = ReportFiles(tmp_path / "s.png", tmp_path / "c.png", tmp_path / "h.png", tmp_path / "index.html")
    checks = [Check("members", False, ["x"], ["images"])]
    write_report(None, checks, files, 9, {}, failed=True, near_rule=NearRule(16))
    page = files.html.read_text()
    assert "Validation failed: members" in page and "data:image/png" not in page and not files.samples.exists()


def splits_table(tmp_path, labels):
    splits = {"train": 0.5, "val": 0.5}
    out, fail, meta, _ = build_dataset(tmp_path, 4, "d", splits=splits, labels=labels)
    facts = Facts(str(out), str(fail), str(out.parent / "images.parquet"), DEFAULT_PIXEL, labels)
    checks, _ = run_checks(facts, thresholds())
    page = page_of(facts, checks, ReportFiles("s.png", "c.png", "h.png", "i.html"), None, NearRule(16))
    return page.splits, meta, facts


def test_a_labelled_splits_table_has_no_unlabelled_column(tmp_path):
    make_tree(tmp_path / "src")
    (header, rows), _, facts = splits_table(tmp_path, "folder")
    assert header == ["split", "images", *facts.classes] and all(len(row) == len(header) for row in rows)


@pytest.mark.parametrize("labels", ["none", "folder"])
def test_the_splits_table_counts_every_image_of_a_split_labelled_or_not(tmp_path, labels):
    make_tree(tmp_path / "src")
    (tmp_path / "src" / "top.png").write_bytes((tmp_path / "src" / "blue" / "00.png").read_bytes())  # unlabelled
    (header, rows), meta, facts = splits_table(tmp_path, labels)
    rows = [[row[0], *(int(str(cell).replace(",", "")) for cell in row[1:])] for row in rows]
    counts = meta.splits["counts"]
    assert {row[0]: row[1] for row in rows} == counts and sum(counts.values()) == 22
    assert header == ["split", "images", *facts.classes, "unlabelled"]
    assert sum(row[-1] for row in rows) == (22 if labels == "none" else 1)
    for row in rows:  # classes plus unlabelled add up to the split
        assert sum(row[2:]) == row[1]
