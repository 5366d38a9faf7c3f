import json
import subprocess
import sys

import numpy as np
from conftest import COLOURS, DEFAULT_PIXEL, build_dataset, channel_histogram, make_tree
from PIL import Image

from img2npz.contract import FAILURE_HEADER
from img2npz.merge import channel_stats
from img2npz.tsv import read_tsv


def test_merged_dataset_is_ordered_labelled_and_independent_of_sharding(tmp_path):
    make_tree(tmp_path / "src")
    one, one_fail, _meta, shards_one = build_dataset(tmp_path, 1000, "one")
    many, many_fail, _, shards_many = build_dataset(tmp_path, 3, "many")
    assert shards_one == 1 and shards_many > 3
    assert one.read_bytes() == many.read_bytes()
    assert one_fail.read_bytes() == many_fail.read_bytes()
    with np.load(one) as data:
        assert data["classes"].tolist() == ["blue", "red", "red-ish"]
        assert data["paths"].tolist() == sorted(data["paths"].tolist(), key=lambda p: p.split("/"))
        assert len(data["paths"]) == 21
        for path, label, image in zip(data["paths"], data["labels"], data["images"], strict=True):
            name = path.split("/")[0]
            assert data["classes"][label] == name
            assert np.abs(image.astype(int) - COLOURS[name]).max() <= 1
        assert json.loads(str(data["meta"]))["images"] == 21
    assert read_tsv(one_fail, FAILURE_HEADER) == [
        ["red/zz_broken.png", "decode", read_tsv(one_fail, FAILURE_HEADER)[0][2]]
    ]
    assert "zz_broken.png" in read_tsv(one_fail, FAILURE_HEADER)[0][2]
    assert str(tmp_path) not in one_fail.read_text()


def test_meta_stats_are_exact(tmp_path):
    make_tree(tmp_path / "src", per_class=3)
    out, _, meta, _ = build_dataset(tmp_path, 2, "x")
    with np.load(out) as data:
        pixels = data["images"].reshape(-1, 3).astype(np.float64) / 255
    assert np.allclose(meta.mean, pixels.mean(0), atol=1e-12)
    assert np.allclose(meta.std, pixels.std(0), atol=1e-12)
    import hashlib

    with np.load(out) as data:
        assert meta.images_sha256 == hashlib.sha256(data["images"].tobytes()).hexdigest()


def test_float_dtype_with_normalisation(tmp_path):
    make_tree(tmp_path / "src", per_class=2)
    norm = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    pixel = {**DEFAULT_PIXEL, "dtype": "float16", "normalize": norm}
    out, _, meta, _ = build_dataset(tmp_path, 1000, "f", pixel=pixel)
    with np.load(out) as data:
        images = data["images"]
        assert images.dtype == np.float16
        blue = images[data["labels"] == 0][0, 0, 0].astype(float)
        assert np.allclose(blue, [(0 - 0.5) / 0.25, (0 - 0.5) / 0.25, (1 - 0.5) / 0.25], atol=1e-2)
    assert meta.pixel["dtype"] == "float16"


def test_channel_histogram_and_stats():
    pixels = np.array([[[0, 10, 255], [2, 10, 255]]], np.uint8)
    histogram = channel_histogram(pixels)
    assert histogram.sum() == 6 and histogram[0, 0] == 1 and histogram[2, 255] == 2
    mean, std = channel_stats(histogram)
    assert mean == [1 / 255, 10 / 255, 1.0] and std[1] == 0.0


def test_shard_job_imports_no_torch_and_no_pyarrow():
    code = "import sys, img2npz.preprocess; print(sorted(m for m in ('torch', 'pyarrow') if m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


def test_files_deleted_or_replaced_after_indexing_fail_and_the_shard_completes(tmp_path):
    import os

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
    from conftest import save

    from img2npz.decode import load_rgb

    rng = np.random.default_rng(0)
    path = save(Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)), tmp_path / "n.png")
    counts = np.zeros((3, 256), np.int64)
    pixels = load_rgb(path, (16, 12), "stretch", (0, 0, 0), None, counts)
    assert np.array_equal(counts, channel_histogram(pixels))
