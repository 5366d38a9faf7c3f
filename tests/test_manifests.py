"""manifests: the keys cache stands in for the manifests' text only while it matches them."""

import numpy as np

from img2npz.allocation import Line
from img2npz.manifests import KEY, line_keys, read_keys, write_new_manifests
from img2npz.sharding import path_hashes


def lines_of(*paths):
    return [Line(path, 10 + n, 20 + n) for n, path in enumerate(paths)]


def test_the_keys_of_a_line_are_its_path_hash_size_and_mtime():
    keys = line_keys(lines_of("a/1.jpg", "b/2.jpg"))
    assert keys.dtype == KEY
    assert keys["hash"].tolist() == path_hashes(["a/1.jpg", "b/2.jpg"]).tolist()
    assert keys["size"].tolist() == [10, 11] and keys["mtime"].tolist() == [20, 21]


def test_keys_are_cached_when_written_read_from_the_cache_and_pruned_with_their_shard(tmp_path):
    manifests, cache = tmp_path / "m", tmp_path / "k"
    write_new_manifests({"aa": lines_of("x", "y"), "bb": lines_of("z")}, {"aa", "bb"}, manifests, cache)
    assert sorted(p.name for p in cache.iterdir()) == ["aa.npy", "bb.npy"]
    keys = read_keys(manifests, cache)
    assert keys.keys() == {"aa", "bb"} and np.array_equal(keys["aa"], line_keys(lines_of("x", "y")))
    # the cache is what is read: a cache of the right length stands for its manifest
    planted = line_keys(lines_of("p", "q"))
    np.save(cache / "aa.npy", planted)
    assert np.array_equal(read_keys(manifests, cache)["aa"], planted)
    write_new_manifests({"cc": lines_of("w")}, {"aa", "cc"}, manifests, cache)  # bb removed
    assert sorted(p.name for p in cache.iterdir()) == ["aa.npy", "cc.npy"]
    assert sorted(p.name for p in manifests.iterdir()) == ["aa.tsv", "cc.tsv"]


def test_a_cache_missing_unreadable_or_of_another_length_is_rebuilt_from_the_manifest(tmp_path):
    manifests, cache = tmp_path / "m", tmp_path / "k"
    write_new_manifests(
        {"aa": lines_of("x", "y"), "bb": lines_of("z"), "cc": lines_of("v")}, {"aa", "bb", "cc"}, manifests
    )
    assert not cache.exists()  # written without a cache
    cache.mkdir()
    np.save(cache / "aa.npy", line_keys(lines_of("x")))  # one line short
    (cache / "bb.npy").write_bytes(b"not an array")
    (cache / "cc.npy").write_bytes(b"")  # left empty by a power cut
    keys = read_keys(manifests, cache)
    for shard, lines in {"aa": lines_of("x", "y"), "bb": lines_of("z"), "cc": lines_of("v")}.items():
        assert np.array_equal(keys[shard], line_keys(lines))
        assert np.array_equal(np.load(cache / f"{shard}.npy"), line_keys(lines))  # saved again
    assert read_keys(tmp_path / "none", cache) == {}


def test_an_unreadable_manifest_is_left_out(tmp_path, caplog):
    manifests = tmp_path / "m"
    write_new_manifests({"aa": lines_of("x"), "bb": lines_of("z")}, {"aa", "bb"}, manifests)
    (manifests / "bb.tsv").write_text("another\theader\n")
    assert read_keys(manifests).keys() == {"aa"}
    assert "bb.tsv is not readable" in caplog.text
