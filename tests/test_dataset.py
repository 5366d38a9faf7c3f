"""dataset: the PyTorch loader maps the file, works with DataLoader workers, and matches ImageFolder."""

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import DEFAULT_PIXEL, REPO, build_dataset, make_tree, save, solid

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from img2npz import NPZDataset, normalizer  # noqa: E402
from img2npz.dataset import DatasetFormatError  # noqa: E402
from img2npz.npzformat import NpzWriter, write_npz  # noqa: E402
from img2npz.tsv import write_tsv  # noqa: E402


@pytest.fixture
def built(tmp_path):
    make_tree(tmp_path / "src", per_class=5)
    out, _, meta, _ = build_dataset(tmp_path, 4, "d")
    with np.load(out) as data:
        arrays = {key: data[key] for key in data}
    write_tsv(
        tmp_path / "d" / "classes.tsv",
        ["index", "class", "images"],
        [(i, name, 0) for i, name in enumerate(arrays["classes"].tolist())],
    )
    return out, arrays, meta


def test_items_are_chw_uint8_views_with_labels(built):
    out, arrays, _ = built
    ds = NPZDataset(out, root="/data")
    assert len(ds) == len(arrays["paths"]) == 15
    for i in (0, 7, -1):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 8, 8)
        assert torch.equal(image, torch.from_numpy(arrays["images"][i]).permute(2, 0, 1))
        assert label == arrays["labels"][i]
    assert isinstance(ds._array("images"), np.memmap)
    assert ds.classes == arrays["classes"].tolist() and ds.class_to_idx == {"blue": 0, "red": 1, "red-ish": 2}
    assert ds.targets == arrays["labels"].tolist()
    assert ds.samples[0] == (os.path.join("/data", arrays["paths"][0]), arrays["labels"][0])
    with pytest.raises(IndexError):
        ds[15]
    image, _ = ds[0]
    image[0, 0, 0] = 7  # copy-on-write: the file is never changed
    assert np.array_equal(np.load(out)["images"], arrays["images"])


def test_transforms_apply(built):
    from torchvision.transforms import v2

    ds = NPZDataset(built[0], transform=lambda x: x.float() / 255, target_transform=lambda y: y + 100)
    image, label = ds[3]
    assert image.dtype == torch.float32 and label >= 99
    pipeline = v2.Compose(
        [v2.RandomResizedCrop(4, antialias=True), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)]
    )
    image, _ = NPZDataset(built[0], transform=pipeline)[3]
    assert tuple(image.shape) == (3, 4, 4) and float(image.max()) <= 1.0


def test_compressed_and_foreign_files_get_a_clear_error(built, tmp_path):
    _, arrays, _ = built
    with open(tmp_path / "c.npz", "wb") as handle:
        write_npz(handle, arrays, compress=True)
    with pytest.raises(DatasetFormatError, match="compressed"):
        NPZDataset(tmp_path / "c.npz")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(DatasetFormatError, match="not an img2npz dataset"):
        NPZDataset(tmp_path / "foreign.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DatasetFormatError):
        NPZDataset(tmp_path / "text.npz")


def test_pickles_small_and_works_with_dataloader_workers(built):
    out, arrays, _ = built
    ds = NPZDataset(out)
    ds[0]
    assert len(pickle.dumps(ds)) < 5000
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)
    seen = []
    for images, labels in loader:
        assert images.shape[1:] == (3, 8, 8)
        seen.extend(zip(labels.tolist(), images.sum(dim=(1, 2, 3)).tolist(), strict=True))
    expected = [(int(label), int(image.sum())) for label, image in zip(arrays["labels"], arrays["images"], strict=True)]
    assert sorted(seen) == sorted(expected)


def test_the_shards_layout_reads_as_the_file_and_travels_whole(built, tmp_path):
    """NPZDataset on the shards layout's folder: the same rows, labels, paths and meta digest as the
    file; pickled small for workers; a copy of the folder elsewhere reads the same; a missing shard
    file is named."""
    out, _arrays, _ = built
    table, *_ = build_dataset(tmp_path, 2, "layout", layout="shards")
    moved = tmp_path / "moved"
    shutil.copytree(table.parent, moved)
    merged = NPZDataset(out)
    for shards in (NPZDataset(table.parent), NPZDataset(moved)):
        assert shards.sharded and len(shards) == len(merged) and shards.classes == merged.classes
        assert shards.samples == merged.samples and shards.meta["images_sha256"] == merged.meta["images_sha256"]
        for i in range(len(merged)):
            assert torch.equal(shards[i][0], merged[i][0]) and shards[i][1] == merged[i][1]
        assert torch.equal(shards[-1][0], merged[-1][0])
        assert len(pickle.dumps(shards)) < 5000
        assert len(list(DataLoader(shards, batch_size=5, num_workers=2))) == 3
    next((moved / "shards").glob("*.npz")).unlink()
    with pytest.raises(DatasetFormatError, match="missing"):
        NPZDataset(moved)


def test_normalizer_uses_the_dataset_statistics(built):
    out, arrays, _ = built
    meta = NPZDataset(out).meta
    normalise = normalizer(meta)
    batch = torch.from_numpy(arrays["images"][:4]).permute(0, 3, 1, 2)
    out = normalise(batch)
    mean, std = np.array(meta["mean"]), np.array(meta["std"])
    expected = (arrays["images"][:4].astype(np.float64) / 255 - mean) / std
    assert out.dtype == torch.float32
    assert np.allclose(out.permute(0, 2, 3, 1).numpy(), expected, atol=1e-4)


IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
STORED = {
    "uint8": DEFAULT_PIXEL,
    "float16": {**DEFAULT_PIXEL, "dtype": "float16"},
    "float32": {**DEFAULT_PIXEL, "dtype": "float32"},
    "float16-normalize": {**DEFAULT_PIXEL, "dtype": "float16", "normalize": IMAGENET},
    "float32-normalize": {**DEFAULT_PIXEL, "dtype": "float32", "normalize": IMAGENET},
}


@pytest.mark.parametrize("stored", list(STORED))
def test_normalizer_gives_every_channel_mean_0_std_1_whatever_the_stored_dtype(tmp_path, stored):
    pixel = STORED[stored]
    make_tree(tmp_path / "src", per_class=5)
    out, _, _, _ = build_dataset(tmp_path, 4, "d", pixel=pixel)
    dataset = NPZDataset(out)
    batch = torch.stack([image for image, _ in dataset])
    assert batch.dtype == getattr(torch, pixel["dtype"])
    normalise = normalizer(dataset.meta)
    x = normalise(batch)
    tolerance = 2e-3 if pixel["dtype"] == "float16" else 1e-4  # float16 rounds the stored 0..1 values
    assert x.dtype == torch.float32
    assert x.mean(dim=(0, 2, 3)).abs().max() < tolerance
    assert (x.std(dim=(0, 2, 3), correction=0) - 1).abs().max() < tolerance
    other = torch.float32 if pixel["dtype"] == "uint8" else torch.uint8
    with pytest.raises(TypeError, match=f"stores {pixel['dtype']} pixels, the batch is {other}"):
        normalise(batch.to(other))


def test_normalizer_refuses_a_channel_that_cannot_be_scaled(built):
    meta = NPZDataset(built[0]).meta
    with pytest.raises(ValueError, match="channel G has std 0"):
        normalizer({**meta, "std": [0.3, 0.0, 0.2]})


def test_opening_a_large_dataset_costs_little_memory(tmp_path):
    path = tmp_path / "big.npz"
    rows = 3000
    with open(path, "wb") as handle:
        writer = NpzWriter(handle)
        chunk = np.full((100, 128, 128, 3), 9, np.uint8)
        with writer.stream("images", np.uint8, (rows, 128, 128, 3)) as member:
            for _ in range(rows // 100):
                member.write(chunk)
        writer.add("labels", np.zeros(rows, np.int64))
        writer.add("classes", np.array(["a"]))
        writer.add("paths", np.array([f"a/{i:06d}.jpg" for i in range(rows)]))
        writer.add("crc32s", np.zeros(rows, np.uint32))
        writer.add("meta", np.array('{"format": "img2npz/1", "mean": [0, 0, 0], "std": [1, 1, 1]}'))
        writer.close()
    code = (
        "import resource, sys; from img2npz import NPZDataset; import torch;"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "ds = NPZDataset(sys.argv[1]); x = ds[len(ds) - 1]; n = len(ds);"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)"
    )
    grown_mb = float(
        subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    )
    assert path.stat().st_size > 140 * 2**20 and grown_mb < 50


@pytest.mark.slow
def test_train_demo_learns_the_demo_classes(tmp_path, repo):
    from conftest import run_snakemake

    run_snakemake(tmp_path / "work", repo / "config.yaml")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "train_demo.py"),
            "--epochs",
            "6",
            "--workers",
            "2",
            "--dataset",
            str(tmp_path / "work" / "results" / "dataset.npz"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    accuracy = float(result.stdout.split("validation accuracy:")[1].split()[0])
    assert accuracy >= 0.45, result.stdout  # chance is 0.2


def run_train_demo(dataset) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "examples" / "train_demo.py"), "--epochs", "1", "--workers", "0"]
    return subprocess.run([*command, "--dataset", str(dataset)], capture_output=True, text=True, timeout=300)


def test_train_demo_leaves_out_unlabelled_images(tmp_path):
    make_tree(tmp_path / "src", per_class=5)
    for name in ("loose-a.png", "loose-b.png"):  # top-level files: label -1
        save(solid((0, 255, 0)), tmp_path / "src" / name)
    out, _, _, _ = build_dataset(tmp_path, 4, "d", pixel={**DEFAULT_PIXEL, "size": [32, 32]})
    assert NPZDataset(out).targets.count(-1) == 2
    result = run_train_demo(out)
    assert result.returncode == 0, result.stderr
    assert "left out 2 unlabelled images (label -1) of 17" in result.stdout
    assert "validation accuracy:" in result.stdout and "(3 images, 3 classes" in result.stdout


def test_train_demo_stops_with_one_line_when_nothing_is_labelled(tmp_path):
    for name in ("a.png", "b.png"):
        save(solid((0, 255, 0)), tmp_path / "src" / name)
    out, _, _, _ = build_dataset(tmp_path, 4, "d", pixel={**DEFAULT_PIXEL, "size": [32, 32]})
    result = run_train_demo(out)
    assert result.returncode == 1
    assert result.stderr == f"train_demo: {out} has 0 labelled images of 2: too few to train on\n"


def test_row_order_equals_imagefolder_for_a_flat_class_tree(tmp_path):
    from torchvision.datasets import ImageFolder

    from img2npz.scan import scan_tree

    make_tree(tmp_path / "src", per_class=4)
    for name in ("cat", "cat-big", "cat.d"):
        (tmp_path / "src" / name).mkdir()
        for stem in ("b", "a", "A"):
            (tmp_path / "src" / name / f"{stem}.png").write_bytes((tmp_path / "src" / "red" / "00.png").read_bytes())
    folder = ImageFolder(tmp_path / "src")
    expected = [os.path.relpath(path, tmp_path / "src") for path, _ in folder.samples]
    assert scan_tree(tmp_path / "src", [".png"]).paths == expected
