"""facts: the path lists walked together in index order."""

import os

from conftest import DEFAULT_PIXEL, build_dataset, make_tree, thresholds

from img2npz import facts as facts_module
from img2npz.facts import Facts, account_for_index


def test_accounting_finds_missing_extra_and_doubled_paths():
    ok = account_for_index(iter(["a", "c"]), iter(["b"]), iter(["a", "b", "c"]))
    assert ok["problems"] == 0 and ok["indexed"] == 3
    bad = account_for_index(iter(["a", "b", "z"]), iter(["b"]), iter(["a", "b", "c"]))
    assert bad["in_both"] == ["b"] and bad["missing"] == ["c"] and bad["extra"] == ["z"]


def facts_of(tmp_path, out, fail, label_mode="folder", pixel=DEFAULT_PIXEL):
    return Facts(str(out), str(fail), str(out.parent / "images.parquet"), pixel, label_mode)


def test_a_file_name_that_is_not_utf8_is_accounted_for(tmp_path):
    """The dataset holds the name as it is, images.parquet with its bytes escaped: still one path."""
    import os

    make_tree(tmp_path / "src")
    odd = os.path.join(os.fsencode(tmp_path / "src" / "blue"), b"caf\xe9.png")
    os.rename(tmp_path / "src" / "blue" / "00.png", odd)
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    facts = facts_of(tmp_path, out, fail)
    assert "blue/caf\udce9.png" in facts.paths_of(range(7))
    assert facts.accounting["problems"] == 0 and facts.accounting["indexed"] == 22
    assert facts.path_order == (0, None)


def test_the_pixels_are_read_once_whatever_asks_for_them(tmp_path, monkeypatch):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    calls = []
    real = facts_module.scan_images
    monkeypatch.setattr(facts_module, "scan_images", lambda *args: calls.append(args) or real(*args))
    facts = facts_of(tmp_path, out, fail)
    assert not calls  # nothing read before it is asked for
    assert facts.pixels.sha256 and len(facts.duplicates) == 3 and len(facts.constant_paths) == 21  # solid colours
    assert len(calls) == 1


def test_labels_classes_paths_and_the_accounting(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    facts = facts_of(tmp_path, out, fail)
    assert facts.classes == ["blue", "red", "red-ish"] and facts.class_counts == [7, 7, 7] and facts.bad_labels == 0
    assert facts.path_order == (0, None) and facts.split is None and facts.split_names == []
    assert facts.accounting["failures"] == 1 and facts.accounting["indexed"] == 22
    assert facts.paths_of([0, 20]) == ["blue/00.png", "red-ish/06.png"]
    unlabelled = facts_of(tmp_path, out, fail, label_mode="none")
    assert unlabelled.bad_labels == 21  # labelled rows in a dataset that should have none
    assert unlabelled.class_counts == [0, 0, 0]  # counts that cannot be trusted are not given


def test_the_shards_layout_reads_only_the_shards_not_verified_before(tmp_path, monkeypatch):
    """The same facts as the file's; with every shard verified before (the catalogue's record of
    a passed run), no pixel is read but the rows shown; a shard rewritten since is read again."""
    import os

    from img2npz import pixelpass

    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    table, table_fail, _, _ = build_dataset(tmp_path, 4, "s", layout="shards")
    whole = facts_of(tmp_path, out, fail)

    def sharded(verified):
        return Facts(str(table), str(table_fail), str(table.parent.parent / "images.parquet"), DEFAULT_PIXEL,
                     "folder", layout="shards", verified=verified)  # fmt: skip

    files = sorted((table.parent / "shards").glob("*.npz"))
    read = []
    real = pixelpass.scan_images
    monkeypatch.setattr(pixelpass, "scan_images", lambda path, *args: read.append(path) or real(path, *args))
    fresh = sharded({})
    assert fresh.pixels.sha256 == whole.pixels.sha256 == fresh.meta.images_sha256 and len(read) == len(files)
    assert fresh.duplicates == whole.duplicates and fresh.pixels.constant == whole.pixels.constant
    assert fresh.rows([0, 20]).tolist() == whole.rows([0, 20]).tolist() and fresh.count == whole.count == 21
    read.clear()
    verified = {path.stem: path.stat().st_mtime_ns for path in files}
    again = sharded(verified)
    assert again.pixels.sha256 == whole.pixels.sha256 and not read and again.pixels.low is None
    os.utime(files[0], ns=(1, 1))  # that shard file is not the one verified
    assert sharded(verified).pixels.sha256 == whole.pixels.sha256 and read == [str(files[0])]


def test_a_rerun_looks_up_only_its_new_rows_and_finds_what_a_whole_search_finds(tmp_path):
    """With the previous run's pairs, the search looks up the new rows and those whose pair lost a
    row; the pairs, distances and groups are those of a search of the whole."""
    import numpy as np
    from conftest import save
    from scenes import VARIANTS, scene

    from img2npz.changes import Catalogue

    src = tmp_path / "src"
    originals = [scene(np.random.default_rng([3, n]), (96, 72)) for n in range(8)]
    for n, original in enumerate(originals):
        save(original, src / "a" / f"s{n}.png")
        if n < 3:
            save(VARIANTS["jpeg60"](original), src / "b" / f"s{n}_q60.png")
    save(originals[4], src / "b" / "s4_copy1.png")  # two copies of s4, joined through it
    save(originals[4], src / "b" / "s4_copy2.png")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    rule = thresholds().near_rule  # crops and hash quality too
    first = facts_of(tmp_path, out, fail)
    found = first.near_duplicates(rule)
    assert len(found.groups) == 4 and first.searched == first.count
    previous = Catalogue.of(
        "x", first.iter_paths(), [""] * first.count, [""] * first.count, first.pixels.fingerprints, {}
    )
    previous.near_bits, previous.near_pairs = rule.key(), np.stack([found.first, found.second], axis=1)
    (src / "a" / "s4.png").unlink()  # the copies' pairs went through it
    save(VARIANTS["jpeg60"](originals[6]), src / "b" / "s6_q60.png")  # a new pair
    save(scene(np.random.default_rng(99), (96, 72)), src / "c" / "new.png")  # a new row alone
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    again = Facts(str(out), str(fail), str(out.parent / "images.parquet"), DEFAULT_PIXEL, "folder", previous=previous)
    whole = facts_of(tmp_path, out, fail).near_duplicates(rule)
    searched = again.near_duplicates(rule)
    assert again.searched == 4  # the 2 new rows, and the 2 copies that lost their pair
    for name in ("first", "second", "distance"):
        assert np.array_equal(getattr(searched, name), getattr(whole, name)), name
    assert searched.groups == whole.groups and len(whole.groups) == 5


def test_the_file_layout_hashes_only_the_rows_the_last_passed_validation_did_not_see(tmp_path, monkeypatch):
    """With the last catalogue, a rerun's pass hashes the new rows and takes the others' recorded
    sha256s, with the same results as hashing all; a known row damaged in dataset.npz still fails."""
    from dataclasses import replace

    import numpy as np
    from conftest import save, solid

    from img2npz import checks, pixelpass
    from img2npz.changes import Catalogue
    from img2npz.contract import CopyCheck
    from img2npz.npzformat import array_layout

    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    first = facts_of(tmp_path, out, fail)
    assert first.pixels.sha256 == first.meta.images_sha256 and first.hashed_rows == (21, 21)
    previous = Catalogue.of("x", first.iter_paths(), [""] * 21, [""] * 21, first.pixels.fingerprints, {})
    save(solid((1, 2, 3), (9, 9)), tmp_path / "src" / "blue" / "03b.png")
    save(solid((4, 5, 6), (9, 9)), tmp_path / "src" / "red" / "99.png")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d", out_check=tmp_path / "verified.json")
    proof = CopyCheck.load(tmp_path / "verified.json")
    assert proof.rows == 23 and proof.holds_for(out, 23) and not proof.holds_for(out, 22)
    hashed, read = [], []
    real = pixelpass.row_digests
    monkeypatch.setattr(pixelpass, "row_digests", lambda flat: hashed.append(len(flat)) or real(flat))
    real_read = pixelpass.read_rows
    monkeypatch.setattr(pixelpass, "read_rows", lambda *args: read.extend(args[2]) or real_read(*args))
    table = str(out.parent / "images.parquet")
    assert proof.hashed and proof.finite and proof.low is None  # uint8: no range to prove
    # without a proof every row is read, the 2 new ones hashed; with a proof of an earlier release
    # (each range's CRC-32, no row hashed) only the new rows are read; with this one, none
    for copied, hashes, reads in ((None, 2, 0), (replace(proof, hashed=None), 2, 2), (proof, 0, 0)):
        hashed.clear()
        read.clear()
        again = Facts(str(out), str(fail), table, DEFAULT_PIXEL, "folder", previous=previous, copied=copied)
        assert again.pixels.sha256 == again.meta.images_sha256 and again.hashed_rows == (hashes, 23)
        assert sum(hashed) == hashes and again.merge_hashed == (hashes == 0)
        assert again.copy_proven == (copied is not None) and len(read) == reads
        whole = facts_of(tmp_path, out, fail)
        assert np.array_equal(again.pixels.digests, whole.pixels.digests)
        assert again.pixels.constant == whole.pixels.constant and checks.images_crc32(again, None).passed
    # the proof was written after the file, a second ago, say: a change since makes it void
    then = os.stat(tmp_path / "verified.json").st_mtime_ns - 10**9
    os.utime(out, ns=(then, then))
    os.utime(tmp_path / "verified.json", ns=(then, then))
    proof = CopyCheck.load(tmp_path / "verified.json")
    assert proof.holds_for(out, 23)
    layout = array_layout(out)["images"]
    with open(out, "r+b") as handle:  # a known row's bytes change after it was verified
        handle.seek(layout.offset + 5 * (layout.nbytes // 23))
        handle.write(b"\x7f")
    damaged = Facts(str(out), str(fail), table, DEFAULT_PIXEL, "folder", previous=previous, copied=proof)
    assert damaged.pixels.sha256 != damaged.meta.images_sha256 and damaged.hashed_rows == (2, 23)
    assert not damaged.copy_proven
    assert not checks.images_sha256(damaged, None).passed
    crc = checks.images_crc32(damaged, None)
    assert not crc.passed and crc.value["rows"] == 1 and crc.value["examples"] == [damaged.paths_of([5])[0]]


def test_a_row_is_taken_as_verified_only_with_its_whole_digest_from_a_passed_validation(tmp_path):
    """The catalogue's whole sha256 must match the dataset's: damage in the second half of a recorded
    digest makes its row hashed again (and the digest check fail); a failed validation's catalogue
    verifies nothing."""
    import numpy as np

    from img2npz import checks
    from img2npz.changes import Catalogue

    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    first = facts_of(tmp_path, out, fail)
    previous = Catalogue.of("x", first.iter_paths(), [""] * 21, [""] * 21, first.pixels.fingerprints, {})

    def again(catalogue):
        table = str(out.parent / "images.parquet")
        return Facts(str(out), str(fail), table, DEFAULT_PIXEL, "folder", previous=catalogue)

    trusted = again(previous)
    assert trusted.pixels.sha256 == first.meta.images_sha256 and trusted.hashed_rows == (0, 21)
    previous.passed = False
    distrusted = again(previous)
    assert distrusted.pixels.sha256 == first.meta.images_sha256 and distrusted.hashed_rows == (21, 21)
    previous.passed = True
    # a recorded digest wrong in its second half, and meta made from it (as a faulty copy of the
    # members would make it): only hashing that row again shows it
    import json

    from img2npz.npzformat import write_npz
    from img2npz.treedigest import TreeDigest

    with np.load(out) as data:
        members = {name: data[name] for name in data.files}
    members["sha256s"] = members["sha256s"].copy()
    members["sha256s"][3, 20] ^= 1
    meta = json.loads(str(members["meta"]))
    tree = TreeDigest()
    tree.update(members["sha256s"])
    meta["images_sha256"] = tree.hexdigest()
    members["meta"] = np.array(json.dumps(meta, sort_keys=True))
    with open(out, "wb") as handle:
        write_npz(handle, members)
    damaged = again(previous)
    assert damaged.pixels and damaged.hashed_rows == (1, 21)
    assert not checks.images_sha256(damaged, None).passed
    assert checks.images_crc32(damaged, None).passed  # the pixels themselves are whole


def test_a_compressed_dataset_finds_the_crops_a_stored_one_does_inflating_its_members_once(tmp_path, monkeypatch):
    from dataclasses import replace

    import numpy as np
    from conftest import plant_crops

    from img2npz import cropcheck, npzformat

    plant_crops(tmp_path / "src")
    rule = thresholds().near_rule
    pixel = {**DEFAULT_PIXEL, "size": [48, 48]}  # rows large enough for the crops' pixel check
    stored_facts = facts_of(tmp_path, *build_dataset(tmp_path, 4, "stored", pixel)[:2], pixel=pixel)
    stored = stored_facts.near_duplicates(rule)
    rows_only = stored_facts.near_duplicates(replace(rule, crop_bits=None))
    assert len(stored.groups) >= 2 and len(rows_only.groups) < len(stored.groups)  # crops among them
    out, fail, _, _ = build_dataset(tmp_path, 4, "packed", pixel, compress=True)
    reads, chunks = [], npzformat.iter_chunks
    for module in (facts_module, npzformat):
        monkeypatch.setattr(module, "iter_chunks", lambda *a, **k: reads.append(a[1]) or chunks(*a, **k))
    monkeypatch.setattr(cropcheck, "ROWS_AT_ONCE", 2)  # the crops' rows read a few at a time
    packed = facts_of(tmp_path, out, fail, pixel=pixel).near_duplicates(rule)
    assert reads.count("field_hashes") == 1
    assert reads.count("images") == 1  # the pixel check's rows: not the whole member for each few
    for name in ("first", "second", "distance"):
        assert np.array_equal(getattr(packed, name), getattr(stored, name)), name
