"""rowsource: a compaction's row is copied only under the same key, from a readable shard of this kind."""

import numpy as np
from conftest import DEFAULT_PIXEL, make_tree

from img2npz.allocation import Line
from img2npz.filters import NO_FILTERS
from img2npz.manifests import manifest_bytes
from img2npz.preprocess import decoder_key, process_shard
from img2npz.rowsource import CopiedFailure, CopiedRow, RowSources


def test_rows_are_found_only_where_the_key_and_the_decoder_hold(tmp_path):
    src = tmp_path / "src"
    make_tree(src, per_class=1)
    paths = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    lines = [Line(p, (src / p).stat().st_size, (src / p).stat().st_mtime_ns) for p in paths]
    (tmp_path / "m.tsv").write_bytes(manifest_bytes(lines))
    shards = tmp_path / "shards"
    shards.mkdir()
    process_shard(tmp_path / "m.tsv", src, DEFAULT_PIXEL, shards / "aaaa.npz", shards / "aaaa.failures.tsv")
    decoder = decoder_key(DEFAULT_PIXEL, 89478485, NO_FILTERS)

    def copy(line: Line, row: int, shard="aaaa", key=decoder):
        with RowSources(shards, key, DEFAULT_PIXEL) as sources:
            return sources.find(Line(line.path, line.size, line.mtime, f"{shard}:{row}"))

    found = copy(lines[0], 0)
    assert isinstance(found, CopiedRow) and found.counts.sum() == 3 * 8 * 8
    with np.load(shards / "aaaa.npz") as shard:
        assert found.data == shard["images"][0].tobytes() and found.values["crc32s"] == shard["crc32s"][0]
    broken = paths.index("red/zz_broken.png")
    failure = copy(lines[broken], broken)
    assert isinstance(failure, CopiedFailure) and failure.stage == "decode"
    assert copy(lines[0], 1) is None  # another image's row
    assert copy(Line(lines[0].path, lines[0].size, lines[0].mtime + 1), 0) is None  # the file changed since
    assert copy(lines[0], 99) is None and copy(lines[0], 0, shard="bbbb") is None  # no such row, no such shard
    assert copy(lines[0], 0, key={**decoder, "pillow": "0.0"}) is None  # built under another key
    (shards / "aaaa.npz").write_bytes(b"truncated")
    assert copy(lines[0], 0) is None
