import os

import pytest

from img2npz.index import (
    build_index,
    folder_label,
    make_labeller,
    read_classes,
    read_indexed_paths,
    read_manifest,
    run_index,
    scan_tree,
    tree_fingerprint,
    write_manifests,
)

EXTS = [".jpg", ".png"]


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_scan_keeps_images_and_skips_the_rest(tmp_path):
    touch(tmp_path / "cat" / "a.jpg")
    touch(tmp_path / "cat" / "B.JPG")
    touch(tmp_path / "cat" / "notes.txt")
    touch(tmp_path / "cat" / ".hidden.jpg")
    touch(tmp_path / "cat" / "._a.jpg")
    touch(tmp_path / ".cache" / "c.jpg")
    touch(tmp_path / "dog" / "deep" / "er" / "d.png")
    (tmp_path / "dog" / "folder.jpg").mkdir()
    touch(tmp_path / "dog" / "folder.jpg" / "inside.png")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dog" / "dangling.jpg")
    os.symlink(tmp_path / "dog", tmp_path / "dog" / "loop")
    found = sorted(entry.path for entry in scan_tree(tmp_path, EXTS))
    assert found == ["cat/B.JPG", "cat/a.jpg", "dog/deep/er/d.png", "dog/folder.jpg/inside.png"]


def test_fingerprint_sees_additions_and_changes(tmp_path):
    image = touch(tmp_path / "cat" / "a.jpg")
    first = tree_fingerprint(tmp_path, EXTS)
    assert tree_fingerprint(tmp_path, EXTS) == first
    touch(tmp_path / "cat" / "deep" / "b.jpg")
    second = tree_fingerprint(tmp_path, EXTS)
    assert second != first
    os.utime(image, ns=(1, 1))
    assert tree_fingerprint(tmp_path, EXTS) != second
    assert tree_fingerprint(tmp_path / "absent", EXTS) == "missing"


def test_folder_labels_and_order_match_imagefolder():
    assert folder_label("cat/x/y.jpg") == "cat"
    assert folder_label("top.jpg") == ""
    entries = scan_like(["cat-big/a.jpg", "cat/z.jpg", "cat/a/b.jpg", "top.jpg"])
    index = build_index(entries, folder_label, 1000, 1, 4000)
    assert [e.path for e in index.entries] == ["cat/a/b.jpg", "cat/z.jpg", "cat-big/a.jpg", "top.jpg"]
    assert index.classes == ["cat", "cat-big"]


def scan_like(paths):
    from img2npz.index import Entry

    return [Entry(path, 1, 1) for path in paths]


def test_manifests_are_rewritten_only_when_changed(tmp_path):
    paths = [f"c{i % 3}/img{i:04d}.jpg" for i in range(300)]
    index = build_index(scan_like(paths), folder_label, 20, 5, 80)
    out = tmp_path / "shards"
    written, removed = write_manifests(index, out)
    assert written == len(index.shards) > 3 and removed == 0
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    for path in out.iterdir():
        os.utime(path, ns=(1, 1))
    grown = build_index(scan_like([*paths, "c1/img0150x.jpg"]), folder_label, 20, 5, 80)
    written, removed = write_manifests(grown, out)
    assert 1 <= written <= 2 and removed <= 1
    untouched = [p for p in out.iterdir() if p.stat().st_mtime_ns == 1]
    assert len(untouched) >= len(mtimes) - 2
    rows = [row for p in sorted(out.iterdir()) for row in read_manifest(p)]
    assert len(rows) == 301 and {row[3] for row in rows} == {"c0", "c1", "c2"}


def test_labels_csv(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\n./a.jpg,dog\nb.jpg,cat\nghost.jpg,cat\n")
    labeller = make_labeller("csv", csv_path)
    assert [labeller(p) for p in ["a.jpg", "b.jpg", "c.jpg"]] == ["dog", "cat", ""]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\n")
    with pytest.raises(ValueError, match=r"bad\.csv"):
        make_labeller("csv", bad)


def test_run_index_writes_all_outputs_and_refuses_an_empty_tree(tmp_path):
    src = tmp_path / "src"
    for name in ["cat/a.jpg", "dog/b.png", "dog/c.png"]:
        touch(src / name)
    out = tmp_path / "out"
    run_index(src, EXTS, "folder", None, (1000, 1, 4000), out / "shards", out / "images.parquet", out / "classes.tsv")
    assert read_indexed_paths(out / "images.parquet") == ["cat/a.jpg", "dog/b.png", "dog/c.png"]
    assert read_classes(out / "classes.tsv") == ["cat", "dog"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        run_index(empty, EXTS, "folder", None, (10, 1, 40), out / "s2", out / "i2.parquet", out / "c2.tsv")


def test_names_that_are_not_utf8_survive(tmp_path):
    src = tmp_path / "src"
    folder = os.path.join(os.fsencode(src), b"cl\xe9")
    os.makedirs(folder)
    with open(os.path.join(folder, b"caf\xe9.jpg"), "wb") as handle:
        handle.write(b"x")
    out = tmp_path / "out"
    index = run_index(src, EXTS, "folder", None, (10, 1, 40), out / "m", out / "images.parquet", out / "classes.tsv")
    assert [e.path for e in index.entries] == ["cl\udce9/caf\udce9.jpg"]
    assert read_indexed_paths(out / "images.parquet") == ["cl\\xe9/caf\\xe9.jpg"]
    assert read_classes(out / "classes.tsv") == ["cl\udce9"]
    [manifest] = (out / "m").iterdir()
    assert read_manifest(manifest)[0][0] == "cl\udce9/caf\udce9.jpg"
