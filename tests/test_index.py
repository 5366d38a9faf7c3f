"""index: labels, manifests rewritten only when changed, the parquet table and classes."""

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from img2npz.contract import IndexSummary, read_classes
from img2npz.index import (
    build_index,
    class_names,
    folder_label,
    run_index,
    write_manifests,
)
from img2npz.manifests import read_keys, read_manifest
from img2npz.scan import Listing
from img2npz.sharding import sort_paths

EXTS = [".jpg", ".png"]


def read_indexed_paths(table):
    return pq.read_table(table, columns=["path"]).column("path").to_pylist()


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_labels_and_order_match_imagefolder():
    assert folder_label("cat/x/y.jpg") == "cat"
    assert folder_label("top.jpg") == ""
    index = index_of(["cat-big/a.jpg", "cat/z.jpg", "cat/a/b.jpg", "top.jpg"], 1000, 1, 4000)
    assert index.listing.paths == ["cat/a/b.jpg", "cat/z.jpg", "cat-big/a.jpg", "top.jpg"]
    assert index.classes == ["cat", "cat-big"]


def listing_of(paths):
    paths = sort_paths(paths)
    return Listing(paths, np.ones(len(paths), np.int64), np.ones(len(paths), np.int64))


def index_of(paths, target, low, high, existing=None):
    listing = listing_of(paths)
    return build_index(listing, class_names(listing.paths, "folder"), target, low, high, existing)


def test_manifests_are_written_once_and_an_addition_gets_its_own(tmp_path):
    paths = [f"c{i % 3}/img{i:04d}.jpg" for i in range(300)]
    index = index_of(paths, 20, 5, 80)
    out = tmp_path / "shards"
    written, removed = write_manifests(index, out)
    assert written == len(index.shards) == 15 and removed == 0
    for path in out.iterdir():
        os.utime(path, ns=(1, 1))
    grown = index_of([*paths, "c1/img0150x.jpg"], 20, 5, 80, read_keys(out))
    written, removed = write_manifests(grown, out)
    assert (written, removed) == (1, 0) and grown.allocation.written == {"shards": 1, "decode": 1, "copy": 0}
    untouched = [p for p in out.iterdir() if p.stat().st_mtime_ns == 1]
    assert len(untouched) == 15  # every earlier manifest as it was: its shard is not run again
    rows = [line.path for p in sorted(out.iterdir()) for line in read_manifest(p)]
    assert sorted(rows) == sorted([*paths, "c1/img0150x.jpg"])


def test_labels_csv(tmp_path, caplog):
    src = tmp_path / "src"
    for name in ["a.jpg", "b.jpg", "c.jpg"]:
        touch(src / name)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\n./a.jpg,dog\nb.jpg,cat\nghost.jpg,cat\n")
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        index = run_index(
            src, EXTS, "csv", csv_path, (1000, 1, 4000), out / "m", out / "images.parquet", out / "classes.tsv"
        )
    assert index.class_names == ["dog", "cat", ""] and read_classes(out / "classes.tsv") == ["cat", "dog"]
    assert "ghost.jpg" in caplog.text and "1 indexed images have no row" in caplog.text


def test_a_labels_csv_with_absolute_paths_under_source_labels_them(tmp_path, caplog):
    src = tmp_path / "src"
    for name in ["a.jpg", "b.jpg", "c.jpg"]:
        touch(src / name)
    os.symlink(src, tmp_path / "alias")
    csv_path = tmp_path / "labels.csv"
    rows = [f"{src}/a.jpg,dog", f"{tmp_path}/alias/b.jpg,cat", "/elsewhere/c.jpg,cat"]
    csv_path.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        index = run_index(
            tmp_path / "alias",
            EXTS,
            "csv",
            csv_path,
            (1000, 1, 4000),
            out / "m",
            out / "i.parquet",
            out / "c.tsv",
            summary=out / "s.json",
        )
    assert index.class_names == ["dog", "cat", ""]
    warnings = IndexSummary.load(out / "s.json").warnings
    assert warnings[0].startswith("1 paths in ") and "/elsewhere/c.jpg" in warnings[0]
    assert "paths must be relative to source, or absolute under it" in warnings[0]
    assert warnings[1].endswith("1 indexed images have no row in " + str(csv_path) + ": their label is -1")
    assert all(line in caplog.text for line in warnings)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\n")
    with pytest.raises(ValueError, match=r"bad\.csv"):
        run_index(src, EXTS, "csv", bad, (1000, 1, 4000), out / "m", out / "images.parquet", out / "classes.tsv")


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
    assert index.listing.paths == ["cl\udce9/caf\udce9.jpg"]
    assert read_indexed_paths(out / "images.parquet") == ["cl\\xe9/caf\\xe9.jpg"]
    assert read_classes(out / "classes.tsv") == ["cl\udce9"]
    [manifest] = (out / "m").iterdir()
    assert read_manifest(manifest)[0].path == "cl\udce9/caf\udce9.jpg"


def test_run_beside_returns_the_foreground_and_reports_a_failing_background(tmp_path):
    from img2npz.index import run_beside

    marker = tmp_path / "background-ran"
    assert run_beside(lambda: marker.write_text("yes"), lambda: 42) == 42
    assert marker.read_text() == "yes"

    def broken():
        raise OSError("disk full")

    with pytest.raises(RuntimeError, match="parquet"):
        run_beside(broken, lambda: None)


def test_run_index_derives_the_shard_size_from_the_tree_and_says_so(tmp_path, monkeypatch):
    from img2npz import sharding
    from img2npz.contract import IndexSummary

    src = tmp_path / "src"
    for n in range(60):
        touch(src / f"c{n % 3}" / f"{n:03d}.jpg")
    out = tmp_path / "out"
    monkeypatch.setattr(sharding, "AUTO_TARGETS", ((50, 2), (None, 8)))  # 60 images: the second tier

    def index_it():
        return run_index(
            src,
            EXTS,
            "folder",
            None,
            (None, None, None),
            out / "m",
            out / "i.parquet",
            out / "c.tsv",
            summary=out / "s.json",
        )

    index = index_it()
    written = {"shards": 8, "decode": 60, "copy": 0}
    assert IndexSummary.load(out / "s.json") == IndexSummary(60, 8, 8, 4, 16, {}, [], written)
    assert sorted(len(lines) for lines in index.allocation.lines.values()) == [7, 7, 7, 7, 8, 8, 8, 8]
    index_it()  # nothing new: no shard written
    assert IndexSummary.load(out / "s.json").written == {"shards": 0, "decode": 0, "copy": 0}
    before = (out / "s.json").stat().st_mtime_ns
    index_it()
    assert (out / "s.json").stat().st_mtime_ns == before  # unchanged: not rewritten
