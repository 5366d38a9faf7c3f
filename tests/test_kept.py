"""kept: the second names of finished shards, their versions, the prune and the dataset stamp."""

import os
import shutil

import numpy as np
from test_reuse import NAMES, build
from test_reuse import make_tree as make_named_tree

from img2npz.kept import candidates, keep, kept_dir, merged_images, prune


def test_kept_files_are_hard_links_or_else_copies(tmp_path, monkeypatch):
    npz = tmp_path / "0123456789abcdef.npz"
    npz.write_bytes(b"shard")
    assert keep(npz) == "link"
    [linked] = kept_dir(tmp_path).iterdir()
    assert linked.stat().st_ino == npz.stat().st_ino
    npz.unlink()
    npz.write_bytes(b"newer")

    def no_links(*args):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert keep(npz) == "copy"
    versions = [path for path, _ in candidates(tmp_path, npz.stem, "a", "b")]
    assert [p.read_bytes() for p in versions] == [b"newer", b"shard"]  # a new version, newest first
    assert sorted(kept_dir(tmp_path).iterdir()) == sorted(versions)  # no staging file left


def test_prune_keeps_the_newest_version_of_current_shards_only(tmp_path):
    shards = tmp_path / "shards"
    kept = kept_dir(shards)
    kept.mkdir(parents=True)
    old, new = "0" * 16, "f" * 16
    names = [f"{old}.npz", f"{old}.failures.tsv", f"{old}.stats.json", f"{new}.npz", f"{new}.stats.json"]
    for name in [*names, "notes.txt", "dataset.npz"]:
        (shards / name).write_text("x")
    for name in (f"{old}.5.npz", f"{new}.7.npz", f"{new}.12.npz", f".{new}.npz.99.tmp", "mine.npz"):
        (kept / name).write_text("x")
    assert prune(shards, [(new, "a/1", "b/9", 0)], None) == 6
    assert sorted(p.name for p in shards.iterdir()) == sorted(
        [".kept", f"{new}.npz", f"{new}.stats.json", "notes.txt", "dataset.npz"]
    )
    assert sorted(p.name for p in kept.iterdir()) == sorted([f"{new}.12.npz", "dataset.json", "layout.tsv", "mine.npz"])
    neighbour = "1" * 16
    assert candidates(shards, neighbour, "a/5", "c/1") == [(kept / f"{new}.12.npz", 0)]  # overlaps a/1..b/9
    assert candidates(shards, neighbour, "c/1", "d/1") == []


def test_another_dataset_file_is_not_read(tmp_path):
    src = tmp_path / "src"
    make_named_tree(src, NAMES[:10])
    build(src, tmp_path / "out", merge=True)
    shards = tmp_path / "out" / "shards"
    folder = kept_dir(shards)
    assert merged_images(folder, np.dtype("uint8"), (8, 8, 3)) is not None
    assert merged_images(folder, np.dtype("uint8"), (6, 6, 3)) is None  # another pixel config
    os.utime(tmp_path / "out" / "dataset.npz", ns=(1, 10**18))  # touched (as Snakemake does): still that file
    assert merged_images(folder, np.dtype("uint8"), (8, 8, 3)) is not None
    make_named_tree(src, NAMES[10:12])
    build(src, tmp_path / "other", merge=True)
    shutil.copyfile(tmp_path / "other" / "dataset.npz", tmp_path / "out" / "dataset.npz")  # another dataset
    assert merged_images(folder, np.dtype("uint8"), (8, 8, 3)) is None
