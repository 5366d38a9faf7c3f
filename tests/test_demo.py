"""demo: the embedded demo tree is deterministic and holds what the README says."""

import hashlib

from PIL import Image

from img2npz.demo import CLASSES, make_demo_tree


def digest_tree(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_demo_tree_is_deterministic_and_has_what_it_promises(tmp_path):
    assert make_demo_tree(tmp_path / "a", per_class=8) == 5 * 8 + 3
    make_demo_tree(tmp_path / "b", per_class=8)
    first = digest_tree(tmp_path / "a")
    assert first == digest_tree(tmp_path / "b")
    assert {name.split("/")[0] for name in first} == set(CLASSES)
    suffixes = {name.rsplit(".", 1)[1] for name in first}
    assert {"jpg", "png", "bmp"} <= suffixes
    rotated = [
        n
        for n in first
        if n.endswith(".jpg") and "broken" not in n and Image.open(tmp_path / "a" / n).getexif().get(0x0112, 1) != 1
    ]
    assert rotated
    with_alpha = [
        n for n in first if n.endswith(".png") and "broken" not in n and Image.open(tmp_path / "a" / n).mode == "RGBA"
    ]
    assert with_alpha
    assert sum("broken" in name for name in first) == 3


def test_regenerating_replaces_the_tree_with_the_same_files_to_the_index(tmp_path):
    def listing():
        return {p.relative_to(tmp_path): (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.*")}

    make_demo_tree(tmp_path / "a", per_class=2)
    before = listing()
    (tmp_path / "a" / "stray.jpg").write_bytes(b"x")
    make_demo_tree(tmp_path / "a", per_class=2)
    assert not (tmp_path / "a" / "stray.jpg").exists()
    assert listing() == before  # sizes and mtimes: what the index keys a file by
