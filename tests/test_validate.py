import json

import numpy as np
import pytest
from conftest import COLOURS, DEFAULT_PIXEL, build_dataset, make_tree, save, thresholds
from PIL import Image

from img2npz import pictures as report
from img2npz.contract import FAILURE_HEADER
from img2npz.evidence import account_for_index
from img2npz.npzformat import write_npz
from img2npz.pixelpass import row_fingerprints as _row_fingerprints
from img2npz.report import ReportFiles, failure_groups
from img2npz.tsv import write_tsv
from img2npz.validate import ValidationFailed, validate_dataset


def report_files(folder):
    return ReportFiles(folder / "s.png", folder / "c.png", folder / "h.png", folder / "r.html", folder / "log.html")


def run(tmp_path, out, fail, label_mode="folder", samples=9, **limits):
    return validate_dataset(
        str(out),
        str(fail),
        str(out.parent / "images.parquet"),
        DEFAULT_PIXEL,
        label_mode=label_mode,
        limits=thresholds(**{"max_failure_fraction": 0.2, **limits}),
        samples=samples,
        out_json=tmp_path / "v.json",
        files=report_files(tmp_path),
    )


def test_a_good_dataset_passes_every_check(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    checks = run(tmp_path, out, fail)
    names = {check.name for check in checks}
    assert {
        "shapes_and_dtypes",
        "value_range",
        "labels_in_classes",
        "paths_unique_sorted",
        "rows_plus_failures_equal_index",
        "failure_fraction",
        "images_sha256",
    } <= names
    document = json.loads((tmp_path / "v.json").read_text())
    assert document["passed"] is True
    assert all({"name", "passed", "value", "threshold"} <= set(check) for check in document["checks"])
    grid = Image.open(tmp_path / "s.png")  # a row per class, 9 samples over 3 classes: 3 per row
    cell = report.TILE + report.GAP
    assert grid.size == (report.LABEL_WIDTH + 3 * cell + report.GAP, 3 * cell + report.GAP)
    for row, colour in enumerate(COLOURS.values()):  # classes in order, each row showing its own images
        tile_centre = (report.LABEL_WIDTH + report.TILE // 2, report.GAP + row * cell + report.TILE // 2)
        assert np.abs(np.subtract(grid.getpixel(tile_centre), colour)).max() <= 1
    bars = report.GAP + 3 * (report.BAR_HEIGHT + report.GAP)
    assert Image.open(tmp_path / "c.png").size == (report.LABEL_WIDTH + report.BAR_WIDTH + 90, bars)
    panel_w, panel_h = report.PANEL
    hist = Image.open(tmp_path / "h.png")
    assert hist.size == (3 * (panel_w + 2 * report.GAP) + report.GAP, panel_h + report.CAPTION + 3 * report.GAP)
    assert len(np.unique(np.asarray(hist).reshape(-1, 3), axis=0)) > 3  # bars in three colours on white


def test_too_many_failures_fail_the_run_by_name(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with pytest.raises(ValidationFailed, match="failure_fraction"):
        run(tmp_path, out, fail, max_failure_fraction=0.01)
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is False


def test_tampered_images_fail_the_checksum(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with np.load(out) as data:
        arrays = {key: data[key] for key in data}
    arrays["images"][0, 0, 0, 0] ^= 1
    with open(out, "wb") as handle:
        write_npz(handle, arrays)
    with pytest.raises(ValidationFailed) as caught:
        run(tmp_path, out, fail)
    assert "images_sha256" in str(caught.value) and "failure_fraction" not in str(caught.value)


def test_accounting_finds_missing_extra_and_doubled_paths():
    ok = account_for_index(iter(["a", "c"]), iter(["b"]), iter(["a", "b", "c"]))
    assert ok["problems"] == 0 and ok["indexed"] == 3
    bad = account_for_index(iter(["a", "b", "z"]), iter(["b"]), iter(["a", "b", "c"]))
    assert bad["in_both"] == ["b"] and bad["missing"] == ["c"] and bad["extra"] == ["z"]


def noise(seed, size=(12, 10)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_row_fingerprints_find_one_colour_rows_in_every_layout():
    rng = np.random.default_rng(3)
    for shape, dtype in (((4, 8, 8, 3), np.uint8), ((4, 5, 5, 3), np.uint8), ((4, 8, 8, 3), np.float32)):
        rows = rng.random(shape).astype(dtype) if dtype is np.float32 else rng.integers(0, 256, shape, dtype=dtype)
        rows[1] = np.array([10, 200, 30], dtype=dtype)  # one colour, not grey
        rows[3] = rows[0]
        prints, constant = _row_fingerprints(rows)
        assert constant.tolist() == [False, True, False, False], (shape, dtype)
        assert (prints[0] == prints[3]).all() and len({tuple(p) for p in prints.tolist()}) == 3


def test_duplicates_blank_images_and_class_balance_are_reported_as_warnings(tmp_path):
    src = tmp_path / "src"
    for i in range(12):
        save(noise(i), src / "many" / f"{i:02d}.png")
    save(noise(0), src / "many" / "zz_copy_of_00.png")  # same pixels as many/00.png
    save(Image.new("RGB", (12, 10), (40, 90, 160)), src / "few" / "blank.png")
    (src / "gone").mkdir()
    (src / "gone" / "broken.png").write_bytes(b"not an image")  # a class whose only file fails
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    checks = {check.name: check for check in run(tmp_path, out, fail, max_failure_fraction=0.5)}
    assert checks["duplicate_images"].value["examples"] == [["many/00.png", "many/zz_copy_of_00.png"]]
    assert checks["constant_images"].value == {"images": 1, "examples": ["few/blank.png"]}
    assert checks["class_counts"].value["empty"] == ["gone"] and checks["class_counts"].value["imbalance"] is None
    assert {name for name, check in checks.items() if not check.passed} == {
        "duplicate_images",
        "constant_images",
        "class_counts",
    }
    document = json.loads((tmp_path / "v.json").read_text())
    assert document["passed"] is True
    assert set(document["warnings"]) == {"duplicate_images", "constant_images", "class_counts"}
    page = (tmp_path / "r.html").read_text()
    assert "many/zz_copy_of_00.png" in page and "few/blank.png" in page and "gone/broken.png" in page
    with pytest.raises(ValidationFailed, match="duplicate_images") as caught:
        run(tmp_path, out, fail, max_failure_fraction=0.5, fail_on=("duplicate_images",))
    assert "constant_images" not in str(caught.value) and "log.html" in str(caught.value)
    assert "Validation failed: duplicate_images" in (tmp_path / "log.html").read_text()


def test_class_imbalance_threshold(tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        save(noise(i), src / "big" / f"{i}.png")
    for i in range(2):
        save(noise(100 + i), src / "small" / f"{i}.png")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    checks = {c.name: c for c in run(tmp_path, out, fail, max_class_imbalance=3)}
    assert checks["class_counts"].passed and checks["class_counts"].value["imbalance"] == 3.0
    checks = {c.name: c for c in run(tmp_path, out, fail, max_class_imbalance=2.5)}
    assert not checks["class_counts"].passed
    checks = {c.name: c for c in run(tmp_path, out, fail, min_class_images=3)}
    assert checks["class_counts"].value["below_min"] == ["small"]


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


def test_html_report_is_self_contained_and_shows_what_was_left_out(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    run(tmp_path, out, fail)
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "red/zz_broken.png" in page and "UnidentifiedImageError" in page
    assert "Every hard check passed" in page
    assert "This run passed" in (tmp_path / "log.html").read_text()
