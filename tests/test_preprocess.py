"""preprocess: one shard job, without torch or pyarrow; files that changed since the index are failures."""

import json
import os
import subprocess
import sys

import numpy as np
from conftest import DEFAULT_PIXEL, channel_histogram, make_tree, save
from PIL import Image

from img2npz.contract import FAILURE_HEADER
from img2npz.tsv import read_tsv


def test_shard_job_imports_no_torch_and_no_pyarrow():
    code = "import sys, img2npz.preprocess; print(sorted(m for m in ('torch', 'pyarrow') if m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


def test_files_deleted_or_replaced_after_indexing_fail_and_the_shard_completes(tmp_path):

    from img2npz.index import build_index, class_names, write_manifests
    from img2npz.preprocess import process_shard
    from img2npz.scan import scan_tree

    make_tree(tmp_path / "src", per_class=2)
    listing = scan_tree(tmp_path / "src", [".png"])
    index = build_index(listing, class_names(listing.paths, "folder"), 1000, 500, 4000)
    write_manifests(index, tmp_path / "m")
    os.remove(tmp_path / "src" / "blue" / "00.png")
    replaced = tmp_path / "src" / "red" / "01.png"
    replaced.write_bytes(replaced.read_bytes() + b"extra")
    [manifest] = (tmp_path / "m").iterdir()
    stats = process_shard(manifest, tmp_path / "src", DEFAULT_PIXEL, tmp_path / "s.npz", tmp_path / "f.tsv")
    stored, failed = stats.images, stats.failures
    rows = {row[0]: row for row in read_tsv(tmp_path / "f.tsv", FAILURE_HEADER)}
    assert stored == 4 and failed == 3
    with np.load(tmp_path / "s.npz") as shard:  # a row per manifest line, zeros where it failed
        paths = shard["paths"].tolist()
        assert shard["images"].shape[0] == len(paths) == 7 and json.loads(str(shard["meta"]))["images"] == 4
        failed_rows = [paths.index(path) for path in rows]
        assert not shard["ok"][failed_rows].any() and shard["ok"].sum() == 4
        assert shard["images"][shard["ok"]].any(axis=(1, 2, 3)).all() and not shard["images"][~shard["ok"]].any()
        assert not shard["sha256s"][~shard["ok"]].any() and shard["sha256s"][shard["ok"]].any(axis=1).all()
    assert "No such file" in rows["blue/00.png"][2]
    assert "changed since it was indexed" in rows["red/01.png"][2]


def test_pillow_histogram_equals_numpy_counts(tmp_path):

    from img2npz.decode import load_rgb

    rng = np.random.default_rng(0)
    path = save(Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)), tmp_path / "n.png")
    counts = np.zeros((3, 256), np.int64)
    pixels = load_rgb(path, (16, 12), "stretch", (0, 0, 0), None, counts)
    assert np.array_equal(counts, channel_histogram(pixels))


def test_a_compaction_copies_rows_and_their_members_and_decodes_nothing(tmp_path):
    """Manifest lines naming a source row are copied with every row member (and a failure stays one,
    with its reason); a source that is gone, or whose key no longer holds, is decoded instead."""
    from img2npz.allocation import Line
    from img2npz.contract import ROW_MEMBERS
    from img2npz.manifests import manifest_bytes, read_manifest
    from img2npz.preprocess import process_shard

    make_tree(tmp_path / "src", per_class=2)
    make_tree_lines = sorted(p.relative_to(tmp_path / "src").as_posix() for p in (tmp_path / "src").rglob("*.png"))
    lines = [Line(p, (tmp_path / "src" / p).stat().st_size, (tmp_path / "src" / p).stat().st_mtime_ns)
             for p in make_tree_lines]  # fmt: skip
    shards = tmp_path / "shards"
    shards.mkdir()
    (tmp_path / "a.tsv").write_bytes(manifest_bytes(lines))
    first = process_shard(
        tmp_path / "a.tsv", tmp_path / "src", DEFAULT_PIXEL, shards / "a.npz", shards / "a.failures.tsv"
    )
    copied = [Line(line.path, line.size, line.mtime, f"a:{row}") for row, line in enumerate(lines)][::-1]
    changed = next(n for n, line in enumerate(copied) if line.path == "blue/00.png")
    line = copied[changed]
    copied[changed] = Line(line.path, line.size + 1, line.mtime, line.source)  # its key no longer holds
    (tmp_path / "b.tsv").write_bytes(manifest_bytes(copied))
    os.remove(tmp_path / "src" / "blue" / "01.png")  # copied from its row, never opened
    second = process_shard(
        tmp_path / "b.tsv", tmp_path / "src", DEFAULT_PIXEL, shards / "b.npz", shards / "b.failures.tsv"
    )
    assert (second.copied, second.decoded) == (len(lines) - 1, 1) and first.decoded == len(lines)
    assert read_manifest(tmp_path / "b.tsv") == copied
    order = [make_tree_lines.index(line.path) for line in copied]
    kept = [n for n in range(len(copied)) if n != changed]
    with np.load(shards / "a.npz") as a, np.load(shards / "b.npz") as b:
        for name in ("images", "ok", *(member.name for member in ROW_MEMBERS)):
            assert np.array_equal(b[name][kept], a[name][[order[n] for n in kept]]), name
        assert not b["ok"][changed]  # decoded: it fails, since the file is not the size the line says
        lost = channel_histogram(a["images"][order[changed]])
        assert np.array_equal(b["histogram"], a["histogram"] - lost)
    failures = read_tsv(shards / "b.failures.tsv", FAILURE_HEADER)
    assert [f[0] for f in failures] == ["red/zz_broken.png", "blue/00.png"]  # copied, and decoded
    assert failures[0] == read_tsv(shards / "a.failures.tsv", FAILURE_HEADER)[0]
    assert "changed since it was indexed" in failures[1][2]
    (shards / "a.npz").unlink()
    third = process_shard(
        tmp_path / "b.tsv", tmp_path / "src", DEFAULT_PIXEL, shards / "c.npz", shards / "c.failures.tsv"
    )
    assert third.copied == 0 and third.decoded == len(lines)  # the source is gone: all decoded
