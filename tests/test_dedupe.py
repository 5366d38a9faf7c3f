"""dedupe: the merge drops every copy but the first, lists each, and the rest is the same bytes."""

import numpy as np
from conftest import build_dataset, channel_histogram, run_validation, save
from scenes import VARIANTS, scene

from img2npz.tsv import read_tsv


def _tree(src):
    for number in range(6):
        original = scene(np.random.default_rng([9, number]), (96, 72))
        save(original, src / "b" / f"s{number}.png")
        if number < 2:
            save(original, src / "a" / f"copy{number}.png")  # the same pixels, earlier in the index order
        if number == 3:
            save(VARIANTS["jpeg60"](original), src / "c" / "s3_recoded.png")


def _rows(out):
    with np.load(out) as data:
        return dict(zip(data["paths"].tolist(), data["images"], strict=True)), data["meta"]


def test_exact_and_near_copies_are_dropped_after_the_first_and_listed(tmp_path):
    _tree(tmp_path / "src")
    whole, _, _, _ = build_dataset(tmp_path, 4, "all")
    every, _ = _rows(whole)
    for mode, dropped in (
        ("exact", {"b/s0.png": "a/copy0.png", "b/s1.png": "a/copy1.png"}),
        ("near", {"b/s0.png": "a/copy0.png", "b/s1.png": "a/copy1.png", "c/s3_recoded.png": "b/s3.png"}),
    ):
        out, fail, meta, _ = build_dataset(tmp_path, 4, mode, drop_duplicates=mode, near_duplicate_bits=24)
        kept, _ = _rows(out)
        assert sorted(kept) == sorted(set(every) - set(dropped)), mode
        assert all(np.array_equal(kept[path], every[path]) for path in kept)  # the same bytes
        lines = {path: (stage, error) for path, stage, error in read_tsv(fail, ["path", "stage", "error"])}
        assert set(lines) == set(dropped) and all(stage == "filter" for stage, _ in lines.values())
        assert all(
            f"{copy_of} (filters.drop_duplicates: {mode})" in lines[path][1] for path, copy_of in dropped.items()
        )
        assert meta.histogram == channel_histogram(np.stack(list(kept.values()))).tolist()
        assert meta.images == len(kept) and meta.failures == len(dropped)
        checks = {c.name: c for c in run_validation(tmp_path, out, fail, max_failure_fraction=0.0)}
        assert all(c.passed for name, c in checks.items() if c.severity == "hard"), mode
        assert not checks["duplicate_images"].value["groups"]
