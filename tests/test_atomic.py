"""atomic: a final name only ever holds a whole file; unchanged files keep their mtime."""

import errno

import pytest

from img2npz.atomic import atomic_output, write_if_changed


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.npz"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_output(target) as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


def test_a_full_disk_is_named_with_the_file(tmp_path):
    target = tmp_path / "dataset.npz"
    with pytest.raises(OSError) as caught, atomic_output(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.errno == errno.ENOSPC and "dataset.npz" in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_write_if_changed_keeps_the_mtime_of_an_unchanged_file(tmp_path):
    target = tmp_path / "m.tsv"
    assert write_if_changed(target, b"a\n")
    before = target.stat().st_mtime_ns
    assert not write_if_changed(target, b"a\n")
    assert target.stat().st_mtime_ns == before
    assert write_if_changed(target, b"b\n") and target.read_bytes() == b"b\n"
