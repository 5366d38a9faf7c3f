"""merge: shards into one dataset.npz in the index order, whatever the sharding; exact stats; splits."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, DEFAULT_PIXEL, build_dataset, channel_histogram, make_tree, save
from PIL import Image

from img2npz.contract import FAILURE_HEADER, CopyCheck
from img2npz.manifests import read_manifest
from img2npz.merge import channel_stats
from img2npz.splits import assign
from img2npz.treedigest import tree_digest
from img2npz.tsv import read_tsv

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def noise(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8))


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


def test_the_tree_digest_is_a_from_scratch_one_whatever_the_sharding(tmp_path):
    """meta's digest comes from the shard jobs' row digests, no pixel read by the merge: it must be
    the tree of the rows as they lie in the file, and the same for 1 shard or many."""
    make_tree(tmp_path / "src", per_class=5)
    digests = set()
    for target, tag in ((2, "many"), (1000, "one")):
        out, _, meta, shards = build_dataset(tmp_path, target, tag)
        with np.load(out) as data:
            assert meta.images_sha256 == tree_digest(data["images"]), tag
        digests.add(meta.images_sha256)
    assert shards == 1 and len(digests) == 1


@pytest.mark.parametrize("streams", [1, 2, 3, 8])
def test_any_number_of_copy_streams_writes_the_same_bytes(tmp_path, streams):
    make_tree(tmp_path / "src", per_class=6)
    serial, *_ = build_dataset(tmp_path, 3, "serial")
    parallel, *_ = build_dataset(tmp_path, 3, "parallel", streams=streams)
    assert Path(parallel).read_bytes() == Path(serial).read_bytes()


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


def test_merged_split_key_and_dataset_selection(tmp_path):
    torch = pytest.importorskip("torch")
    from img2npz import NPZDataset

    for i in range(40):
        save(noise(i), tmp_path / "src" / ("a" if i % 2 else "b") / f"{i:02d}.png")
    out, _, meta, _ = build_dataset(tmp_path, 6, "d", splits=FRACTIONS)
    with np.load(out) as data:
        assert data["split"].dtype == np.int8 and data["splits"].tolist() == list(FRACTIONS)
        expected = assign(data["paths"].tolist(), FRACTIONS)
        assert np.array_equal(data["split"], expected)
        images = data["images"]
    assert json.loads(meta.to_json())["splits"]["counts"] == {
        name: int((expected == number).sum()) for number, name in enumerate(FRACTIONS)
    }
    table, *_ = build_dataset(tmp_path, 6, "s", splits=FRACTIONS, layout="shards")
    for number, name in enumerate(FRACTIONS):
        chosen = NPZDataset(out, split=name)
        rows = np.flatnonzero(expected == number)
        assert len(chosen) == len(rows) and chosen.split == name
        assert all(
            torch.equal(chosen[i][0], torch.from_numpy(images[row]).permute(2, 0, 1)) for i, row in enumerate(rows)
        )
        assert isinstance(chosen._array("images"), np.memmap)  # rows index the mapped file, no copy
        sharded = NPZDataset(table.parent, split=name)
        assert sharded.samples == chosen.samples and len(sharded) == len(chosen)
        assert all(torch.equal(sharded[i][0], chosen[i][0]) for i in range(len(chosen)))
    with pytest.raises(ValueError, match="no split 'holdout'"):
        NPZDataset(out, split="holdout")
    plain, _, _, _ = build_dataset(tmp_path, 6, "plain")
    with np.load(plain) as data:
        assert "split" not in data  # no splits configured: the file keeps its five keys
    with pytest.raises(ValueError, match="built without splits"):
        NPZDataset(plain, split="train")


def grow(root, step: int) -> None:
    """Step ``step`` of a tree's history: a few images added in every class folder, one replaced,
    one deleted."""
    for name in COLOURS:
        for i in range(2):
            save(noise(100 * step + 10 * len(name) + i), root / name / f"{i:02d}_{step}.png")
    victims = sorted((root / "blue").glob("*.png"))
    victims[step % len(victims)].unlink()
    save(noise(1000 + step), victims[(step + 1) % len(victims)])


@pytest.mark.parametrize("compaction", [{"compact_small": 100, "compact_dropped": 1.0}, {"compact_small": 1}])
def test_a_dataset_grown_run_by_run_is_the_bytes_of_one_built_at_once(tmp_path, compaction):
    """Rerun by rerun, shards added and never rewritten (or compacted), rows of deleted and replaced
    images dropped: the file is byte for byte a fresh build's, and the shards layout the same rows."""
    torch = pytest.importorskip("torch")
    from img2npz import NPZDataset

    make_tree(tmp_path / "src", per_class=6)
    build_dataset(tmp_path, 4, "grown", compaction=compaction, splits=FRACTIONS)
    build_dataset(tmp_path, 4, "table", compaction=compaction, splits=FRACTIONS, layout="shards")
    for step in range(4):
        grow(tmp_path / "src", step)
        grown, grown_fail, meta, _ = build_dataset(tmp_path, 4, "grown", compaction=compaction, splits=FRACTIONS)
        table, *_ = build_dataset(tmp_path, 4, "table", compaction=compaction, splits=FRACTIONS, layout="shards")
    fresh, fresh_fail, fresh_meta, _ = build_dataset(tmp_path, 4, f"fresh{step}", splits=FRACTIONS)
    assert grown.read_bytes() == fresh.read_bytes() and grown_fail.read_bytes() == fresh_fail.read_bytes()
    assert meta == fresh_meta
    files = NPZDataset(fresh)
    shards = NPZDataset(table.parent)
    assert shards.samples == files.samples and shards.meta["images_sha256"] == files.meta["images_sha256"]
    assert all(torch.equal(shards[i][0], files[i][0]) for i in range(len(files)))
    copied = [
        line for path in (tmp_path / "grown" / "manifests").iterdir() for line in read_manifest(path) if line.source
    ]
    assert bool(copied) == (compaction.get("compact_small") == 1)  # the second history compacted
    on_disk = {p.stem for p in (tmp_path / "grown").glob("*.npz")} - {"dataset"}
    assert on_disk == {p.stem for p in (tmp_path / "grown" / "manifests").glob("*.tsv")}  # the rest pruned


@pytest.mark.parametrize(("layout", "compress"), [("file", False), ("file", True), ("shards", False)])
def test_the_merge_proves_the_pixels_it_copied_where_it_read_them_back(tmp_path, layout, compress):
    """dataset.verified.json names the file layout's dataset.npz as written; nothing is proven where
    nothing was copied (the shards layout) or the bytes went through zipfile (a compressed member)."""
    make_tree(tmp_path / "src")
    out, _, meta, _ = build_dataset(
        tmp_path, 4, "d", compress=compress, layout=layout, out_check=tmp_path / "verified.json"
    )
    proof = CopyCheck.load(tmp_path / "verified.json")
    proven = layout == "file" and not compress
    assert proof.rows == (meta.images if proven else 0) and proof.holds_for(out, meta.images) == proven
    assert proof.hashed == (True if proven else None)  # every row hashed as it was read back
    if proven:  # the bench's floor: each range's CRC-32 read back, no row hashed
        again, _, _, _ = build_dataset(tmp_path, 4, "e", out_check=tmp_path / "crc.json", hash_rows=False)
        crc_only = CopyCheck.load(tmp_path / "crc.json")
        assert crc_only.holds_for(again, meta.images) and crc_only.hashed is None
        assert again.read_bytes() == out.read_bytes()


def test_a_rerun_hashes_the_rows_of_its_new_shards_only(tmp_path, caplog):
    """The proof names the shards whose rows a merge hashed, with their files' mtimes: the next
    merge hashes the new shards' rows only, and a shard file changed since has its rows hashed again."""
    import logging

    from conftest import solid

    make_tree(tmp_path / "src")
    proof = tmp_path / "verified.json"
    caplog.set_level(logging.INFO, logger="img2npz.merge")
    out, _, meta, _ = build_dataset(tmp_path, 4, "d", out_check=proof)
    first = CopyCheck.load(proof)
    assert f"rows hashed as read back: {meta.images} of {meta.images}" in caplog.text
    assert first.hashed and set(first.shards) == {p.stem for p in (tmp_path / "d").glob("*.npz")} - {"dataset"}
    for i in range(3):
        save(solid((i, 40, 80), (9, 9)), tmp_path / "src" / "red" / f"new{i}.png")
    caplog.clear()
    out, _, meta, _ = build_dataset(tmp_path, 4, "d", out_check=proof)
    assert f"rows hashed as read back: 3 of {meta.images}" in caplog.text
    again = CopyCheck.load(proof)
    assert again.hashed and set(first.shards) < set(again.shards) and again.holds_for(out, meta.images)
    shard = tmp_path / "d" / f"{sorted(first.shards)[0]}.npz"
    os.utime(shard, ns=(1, 10**18))  # a shard file touched since: its rows are hashed again
    caplog.clear()
    build_dataset(tmp_path, 4, "d", out_check=proof)
    with np.load(shard) as data:
        ok = data["ok"]
        held, gone = int(ok.sum()), str(data["paths"][ok][0])  # an image that landed, not a failure
    assert f"rows hashed as read back: {held} of {meta.images}" in caplog.text
    # an image of that shard deleted: the rows the dataset takes from it change, so they are hashed
    # again (a row it did not take before could come back the same way, unhashed)
    (tmp_path / "src" / gone).unlink()
    caplog.clear()
    build_dataset(tmp_path, 4, "d", out_check=proof)
    assert f"rows hashed as read back: {held - 1} of {meta.images - 1}" in caplog.text


def test_dropping_near_duplicates_checks_the_crops_pixels_reading_only_their_rows(tmp_path, monkeypatch):
    """``drop_duplicates: near`` drops the planted crops (their pixels checked), and the rows a crop
    pair asks for, anywhere in a shard, are read each by itself: not the span between them."""
    from conftest import plant_crops

    from img2npz import merge, npzformat

    plant_crops(tmp_path / "src")
    spans = []
    monkeypatch.setattr(
        merge, "read_span_rows", lambda *a, **k: spans.append(a[1]) or npzformat.read_span_rows(*a, **k)
    )
    rule = {"near_duplicate_bits": 24, "near_duplicate_crop_bits": 36, "min_hash_quality": 20}
    pixel = {**DEFAULT_PIXEL, "size": [48, 48]}  # rows large enough for the crops' pixel check
    out, *_ = build_dataset(tmp_path, 20, "out", pixel, min_field_quality=40, drop_duplicates="near", **rule)
    with np.load(out) as data:
        kept = sorted(data["paths"].tolist())
    assert kept == [f"a/s{n}.png" for n in range(6)]
    assert "field_hashes" in spans and "images" not in spans
