"""scan: the walk in index order, what it skips, its fingerprint and the saved listing."""

import os

import numpy as np
import pytest

from img2npz import scan
from img2npz.scan import Listing, scan_tree, tree_fingerprint
from img2npz.sharding import sort_paths

EXTS = [".jpg", ".png"]


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_walk_keeps_images_and_skips_the_rest(tmp_path):
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
    os.symlink(tmp_path, tmp_path / "dog" / "deep" / "up")
    os.symlink("self.jpg", tmp_path / "dog" / "self.jpg")
    os.mkfifo(tmp_path / "dog" / "pipe.jpg")
    touch(tmp_path / "top.webp")
    touch(tmp_path / "cat" / "c.WebP")
    touch(tmp_path / "dog" / "scan.tif")
    touch(tmp_path / "dog" / "README")
    listing = scan_tree(tmp_path, EXTS)
    assert listing.paths == ["cat/B.JPG", "cat/a.jpg", "dog/deep/er/d.png", "dog/folder.jpg/inside.png"]
    assert listing.sizes.tolist() == [1, 1, 1, 1]
    # other files are counted by extension; hidden ones, links to nowhere, pipes and folders are not
    assert listing.skipped == {".webp": 2, ".tif": 1, ".txt": 1, "": 1}


def test_skipped_files_are_described_images_first():
    lines = scan.describe_skipped({".webp": 10, ".tif": 2, ".txt": 3, "": 1})
    assert lines == [
        "12 files skipped by extension: .webp 10, .tif 2; add them to `extensions` to index them",
        "4 other files skipped (no image extension): .txt 3, (no extension) 1",
    ]
    assert scan.describe_skipped({}) == []


def test_a_tree_of_other_files_says_what_it_holds(tmp_path):
    touch(tmp_path / "a" / "x.webp")
    with pytest.raises(
        scan.EmptyTreeError, match=r"no images with extensions \.jpg \.png.*1 file skipped by extension: \.webp 1"
    ):
        tree_fingerprint(tmp_path, EXTS)


def test_a_skipped_image_changes_the_fingerprint_another_file_does_not(tmp_path):
    touch(tmp_path / "src" / "a" / "x.jpg")
    before = tree_fingerprint(tmp_path / "src", EXTS, save_to=tmp_path / "listings")
    touch(tmp_path / "src" / "a" / "notes.txt")
    assert tree_fingerprint(tmp_path / "src", EXTS, save_to=tmp_path / "listings") == before
    touch(tmp_path / "src" / "a" / "y.webp")
    after = tree_fingerprint(tmp_path / "src", EXTS, save_to=tmp_path / "listings")
    assert after != before
    assert scan.saved_listing(tmp_path / "listings", after).skipped == {".txt": 1, ".webp": 1}


def test_numbered_and_long_suffixes_are_no_extension():
    assert [
        scan.extension(name) for name in ("a.WebP", "frame.000123", "1.2.840.10008", "x.verylongsuffix", "README")
    ] == [
        ".webp",
        "",
        "",
        "",
        "",
    ]


def test_the_pillow_extensions_are_pillows():
    from PIL import Image

    Image.init()
    opened = {ext for ext, name in Image.registered_extensions().items() if name in Image.OPEN}
    assert opened == scan.PILLOW_EXTENSIONS  # Pillow's version changed: copy its list into scan.py


def test_walk_order_is_component_order(tmp_path):
    names = ["cat-big/a.jpg", "cat/z.jpg", "cat/a/b.jpg", "top.jpg", "cat/b.jpg", "a b/ü.jpg", "cat.d/x.jpg"]
    for name in names:
        touch(tmp_path / name)
    assert scan_tree(tmp_path, EXTS).paths == sort_paths(names)


def test_links_to_folders_are_followed_but_loops_are_cut(tmp_path):
    touch(tmp_path / "real" / "a.jpg")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    os.symlink(tmp_path / "real", tmp_path / "real" / "again")
    assert scan_tree(tmp_path, EXTS).paths == ["alias/a.jpg", "real/a.jpg"]


def test_parallel_walk_equals_serial(tmp_path, monkeypatch):
    for i in range(300):
        touch(tmp_path / f"c{i % 7}" / f"sub{i % 3}" / f"{i:04d}.{'jpg' if i % 10 else 'webp'}", b"x" * (i % 11))
    touch(tmp_path / "flat.png")
    serial = scan_tree(tmp_path, EXTS, workers=1)
    monkeypatch.setattr(scan, "PARALLEL_MIN_FILES", 10)
    monkeypatch.setattr(scan, "PARALLEL_MIN_FOLDERS", 2)
    parallel = scan_tree(tmp_path, EXTS, workers=3)
    assert parallel.paths == serial.paths and len(serial) == 271
    assert parallel.skipped == serial.skipped == {".webp": 30}
    assert np.array_equal(parallel.sizes, serial.sizes) and np.array_equal(parallel.mtimes, serial.mtimes)
    assert parallel.hashes is None and serial.hashes is None  # the index hashes the paths, once a tree changed


def test_fingerprint_sees_additions_and_changes_and_saves_the_listing(tmp_path):
    tree = tmp_path / "tree"
    image = touch(tree / "cat" / "a.jpg")
    saved = tmp_path / "listings"
    first = tree_fingerprint(tree, EXTS, save_to=saved)
    assert tree_fingerprint(tree, EXTS) == first
    touch(tree / "cat" / "deep" / "b.jpg")
    second = tree_fingerprint(tree, EXTS, save_to=saved)
    assert second != first
    os.utime(image, ns=(1, 1))
    assert tree_fingerprint(tree, EXTS) != second
    assert tree_fingerprint(tmp_path / "absent", EXTS) == "missing"
    assert [p.stem for p in saved.iterdir()] == [second]
    loaded = Listing.load(saved / f"{second}.npz")
    assert loaded.paths == ["cat/a.jpg", "cat/deep/b.jpg"] and loaded.fingerprint() == second


def test_scan_log_counts_walks(tmp_path, monkeypatch):
    touch(tmp_path / "t" / "a.jpg")
    monkeypatch.setenv(scan.SCAN_LOG_ENV, str(tmp_path / "walks.log"))
    scan_tree(tmp_path / "t", EXTS)
    scan_tree(tmp_path / "t", EXTS)
    assert len((tmp_path / "walks.log").read_text().splitlines()) == 2


def test_empty_listing_round_trip(tmp_path):
    empty = Listing([], np.zeros(0, np.int64), np.zeros(0, np.int64))
    empty.save(tmp_path / "e.npz")
    assert Listing.load(tmp_path / "e.npz").paths == []


def test_a_folder_with_an_image_name_is_walked_and_other_entries_are_kept_out(tmp_path):
    """The walk stats an image-named entry once: a file is listed, a folder (or a link to one) walked,
    anything else (a broken link) left out."""
    touch(tmp_path / "odd.jpg" / "inner.png")
    touch(tmp_path / "c" / "real.jpg")
    os.symlink(tmp_path / "c", tmp_path / "c" / "link.jpg")  # a link back up: not followed again
    os.symlink(tmp_path / "gone.jpg", tmp_path / "c" / "broken.jpg")
    os.symlink(tmp_path / "odd.jpg", tmp_path / "c" / "folder.jpg")
    assert scan_tree(tmp_path, EXTS).paths == ["c/folder.jpg/inner.png", "c/real.jpg", "odd.jpg/inner.png"]


def test_the_walkers_follow_the_usable_cores_where_the_platform_says(monkeypatch):
    monkeypatch.setattr(scan.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert scan._usable_cores() == 3
    monkeypatch.delattr(scan.os, "sched_getaffinity")  # macOS, Windows
    monkeypatch.setattr(scan.os, "cpu_count", lambda: 5)
    assert scan._usable_cores() == 5
