"""End-to-end: splits through real ``snakemake`` runs, and the change report of each run."""

import numpy as np
import pytest
from conftest import run_snakemake, save, shards_run, write_config
from PIL import Image

from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

SPLITS = {"train": 0.7, "val": 0.15, "test": 0.15}


def image(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 14, 3), dtype=np.uint8))


def splits_of(workdir):
    with np.load(workdir / "results" / "dataset.npz") as data:
        names = data["splits"].tolist()
        return {path: names[s] for path, s in zip(data["paths"].tolist(), data["split"].tolist(), strict=True)}


def changes(workdir):
    rows = read_tsv(workdir / "results" / "report" / "changes.tsv", ["what", "class", "split", "count"])
    return {(what, name, split): int(count) for what, name, split, count in rows}


def totals(rows, what):
    return sum(count for (kind, _, _), count in rows.items() if kind == what)


def test_splits_never_move_and_every_run_reports_its_changes(tmp_path):
    source = tmp_path / "src"
    for i in range(120):
        save(image(i), source / ("cats" if i % 3 else "dogs") / f"{i:03d}.png")

    def config_file(name, **extra):
        shards = {"target_images": 10, "min_images": 2, "max_images": 25}
        return write_config(
            tmp_path / name, source=str(source), image={"size": [8, 8]}, shards=shards, splits=SPLITS, **extra
        )

    config = config_file("config.yaml")
    work = tmp_path / "work"
    run_snakemake(work, config)
    before = splits_of(work)
    assert set(before.values()) == set(SPLITS)
    first = changes(work)
    assert totals(first, "added") == 120 and totals(first, "removed") == totals(first, "changed") == 0
    assert first[("shards written", "", "")] == first[("shards in total", "", "")] > 1

    for i in range(120, 132):  # 10% more images, in both classes
        save(image(i), source / ("cats" if i % 3 else "dogs") / f"{i:03d}.png")
    (source / "dogs" / "000.png").unlink()
    save(image(999), source / "cats" / "001.png")  # new pixels under an old name
    result = run_snakemake(work, config)
    after = splits_of(work)
    moved = [path for path, split in before.items() if path in after and after[path] != split]
    assert not moved  # no existing image changed split
    rows = changes(work)
    added = {key: n for key, n in rows.items() if key[0] == "added"}
    expected_added = {}
    for i in range(120, 132):
        path = f"{'cats' if i % 3 else 'dogs'}/{i:03d}.png"
        key = ("added", path.split("/")[0], after[path])
        expected_added[key] = expected_added.get(key, 0) + 1
    assert added == expected_added
    assert rows[("removed", "dogs", before["dogs/000.png"])] == 1 and totals(rows, "removed") == 1
    assert rows[("changed", "cats", before["cats/001.png"])] == 1 and totals(rows, "changed") == 1
    assert rows[("shards written", "", "")] == len(shards_run(result)) < rows[("shards in total", "", "")]
    page = (work / "results" / "report" / "index.html").read_text()
    assert "Changes since the previous dataset" in page and "Splits (images per split and class)" in page

    relaxed = config_file("relaxed.yaml", validate={"max_failure_fraction": 0.5})
    run_snakemake(work, relaxed)  # only validation reruns: the dataset did not change
    assert changes(work) == rows
