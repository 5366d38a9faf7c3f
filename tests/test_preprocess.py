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
    index = build_index(listing, class_names(listing.paths, "folder"), 1000, 1, 4000)
    write_manifests(index, tmp_path / "m")
    os.remove(tmp_path / "src" / "blue" / "00.png")
    replaced = tmp_path / "src" / "red" / "01.png"
    replaced.write_bytes(replaced.read_bytes() + b"extra")
    [manifest] = (tmp_path / "m").iterdir()
    stats = process_shard(manifest, tmp_path / "src", DEFAULT_PIXEL, tmp_path / "s.npz", tmp_path / "f.tsv")
    stored, failed = stats.images, stats.failures
    rows = {row[0]: row for row in read_tsv(tmp_path / "f.tsv", FAILURE_HEADER)}
    assert stored == 4 and failed == 3
    with np.load(tmp_path / "s.npz") as shard:  # a row per manifest line: decoded ones, then zero padding
        assert shard["images"].shape[0] == 7 and len(shard["paths"]) == 4
        assert json.loads(str(shard["meta"]))["images"] == 4
        assert shard["images"][:4].any(axis=(1, 2, 3)).all() and not shard["images"][4:].any()
    assert "No such file" in rows["blue/00.png"][2]
    assert "changed since it was indexed" in rows["red/01.png"][2]


def test_pillow_histogram_equals_numpy_counts(tmp_path):

    from img2npz.decode import load_rgb

    rng = np.random.default_rng(0)
    path = save(Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)), tmp_path / "n.png")
    counts = np.zeros((3, 256), np.int64)
    pixels = load_rgb(path, (16, 12), "stretch", (0, 0, 0), None, counts)
    assert np.array_equal(counts, channel_histogram(pixels))
