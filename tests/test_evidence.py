"""evidence: the path lists walked together in index order."""

from conftest import DEFAULT_PIXEL, build_dataset, make_tree

from img2npz import evidence
from img2npz.evidence import Evidence, account_for_index


def test_accounting_finds_missing_extra_and_doubled_paths():
    ok = account_for_index(iter(["a", "c"]), iter(["b"]), iter(["a", "b", "c"]))
    assert ok["problems"] == 0 and ok["indexed"] == 3
    bad = account_for_index(iter(["a", "b", "z"]), iter(["b"]), iter(["a", "b", "c"]))
    assert bad["in_both"] == ["b"] and bad["missing"] == ["c"] and bad["extra"] == ["z"]


def evidence_of(tmp_path, out, fail, label_mode="folder"):
    return Evidence(str(out), str(fail), str(out.parent / "images.parquet"), DEFAULT_PIXEL, label_mode)


def test_the_pixels_are_read_once_whatever_asks_for_them(tmp_path, monkeypatch):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    calls = []
    real = evidence.scan_images
    monkeypatch.setattr(evidence, "scan_images", lambda *args: calls.append(args) or real(*args))
    facts = evidence_of(tmp_path, out, fail)
    assert not calls  # nothing read before it is asked for
    assert facts.pixels.sha256 and len(facts.duplicates) == 3 and len(facts.constant_paths) == 21  # solid colours
    assert len(calls) == 1


def test_labels_classes_paths_and_the_accounting(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    facts = evidence_of(tmp_path, out, fail)
    assert facts.classes == ["blue", "red", "red-ish"] and facts.class_counts == [7, 7, 7] and facts.bad_labels == 0
    assert facts.path_order == (0, None) and facts.split is None and facts.split_names == []
    assert facts.accounting["failures"] == 1 and facts.accounting["indexed"] == 22
    assert facts.paths_of([0, 20]) == ["blue/00.png", "red-ish/06.png"]
    unlabelled = evidence_of(tmp_path, out, fail, label_mode="none")
    assert unlabelled.bad_labels == 21  # labelled rows in a dataset that should have none
    assert unlabelled.class_counts == [0, 0, 0]  # counts that cannot be trusted are not given
