"""The contract module: its records round-trip to the bytes the writers always wrote, and the
modules keep to it (only the declared writers and readers name a member or a table's header, and
the PyTorch loader imports no workflow step)."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, build_dataset, save, solid

from img2npz import contract
from img2npz.contract import (
    DATASET_FORMAT,
    DATASET_MEMBERS,
    FILES,
    SHARD_FORMAT,
    SPLIT_MEMBERS,
    DatasetMeta,
    ShardMeta,
    ShardStats,
    member_names,
    path_sort_key,
    table_path,
)
from img2npz.npzformat import array_layout

PACKAGE = REPO / "src" / "img2npz"
MODULES = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
# npz access: read_array(path, NAME, ...), iter_chunks(path, NAME, ...), read_rows(path, NAME, ...),
# writer.add(NAME, ...), writer.stream(NAME, ...), facts.member(NAME), layouts[NAME], data[NAME]
ACCESS_CALLS = {"read_array": 1, "iter_chunks": 1, "read_rows": 1, "add": 0, "stream": 0, "member": 0}
PIXEL = {"size": [8, 8], "resize": "pad", "dtype": "uint8", "background": [1, 2, 3], "normalize": None}


def dataset_meta(**extra):
    histogram = [[1] * 256] * 3
    return DatasetMeta(DATASET_FORMAT, PIXEL, 3, 2, 1, [0.5] * 3, [0.25] * 3, histogram, "ab" * 32, **extra)


def test_dataset_meta_is_sorted_json_and_splits_appear_only_when_configured():
    meta = dataset_meta()
    assert meta.to_json() == json.dumps({k: v for k, v in vars(meta).items() if k != "splits"}, sort_keys=True)
    assert "splits" not in json.loads(meta.to_json()) and DatasetMeta.from_json(meta.to_json()) == meta
    split = {"fractions": {"train": 0.9, "val": 0.1}, "group_by": "path", "counts": {"train": 3, "val": 0}}
    with_splits = dataset_meta(splits=split)
    assert json.loads(with_splits.to_json())["splits"] == split
    assert DatasetMeta.from_json(with_splits.to_json()) == with_splits


def test_a_meta_of_another_format_or_without_a_key_is_refused_unless_lenient():
    document = json.loads(dataset_meta().to_json())
    with pytest.raises(ValueError, match=f"expected '{DATASET_FORMAT}'"):
        DatasetMeta.from_json(json.dumps({**document, "format": "img2npz/0"}))
    del document["images_sha256"]
    with pytest.raises(ValueError, match="images_sha256"):
        DatasetMeta.from_json(json.dumps(document))
    assert DatasetMeta.from_json(json.dumps(document), strict=False).images_sha256 is None
    with pytest.raises(ValueError, match="not a JSON object"):
        DatasetMeta.from_json("[1, 2]")


def test_shard_meta_and_stats_round_trip(tmp_path):
    meta = ShardMeta(SHARD_FORMAT, PIXEL, {"pillow": "x"}, 7, 5, 2)
    assert ShardMeta.from_json(meta.to_json()) == meta
    with pytest.raises(ValueError, match="not an img2npz shard"):
        ShardMeta.from_json(meta.to_json().replace(SHARD_FORMAT, "img2npz-shard/2"))
    stats = ShardStats(5, 2, 4, 3)
    stats.save(tmp_path / "s.json")
    assert (tmp_path / "s.json").read_bytes() == json.dumps(vars(stats), sort_keys=True).encode() + b"\n"
    assert ShardStats.load(tmp_path / "s.json") == stats


def test_index_order_is_by_path_components_as_in_image_folder():
    assert sorted(["cat-big/a.jpg", "cat/z.jpg", "cat/a/b.jpg"], key=path_sort_key) == [
        "cat/a/b.jpg",
        "cat/z.jpg",
        "cat-big/a.jpg",
    ]
    assert table_path("caf\udce9.jpg") == "caf\\xe9.jpg" and table_path("ok.jpg") == "ok.jpg"


def _member_names_used(tree: ast.AST):
    """(name, line) of every string literal used to access an npz member."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            position = ACCESS_CALLS.get(called)
            if position is not None and len(node.args) > position:
                arg = node.args[position]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield arg.value, node.lineno
            if called == "write_npz" and len(node.args) > 1 and isinstance(node.args[1], ast.Dict):
                yield from ((key.value, node.lineno) for key in node.args[1].keys if isinstance(key, ast.Constant))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            target = ast.unparse(node.value)
            if isinstance(node.slice.value, str) and ("layout" in target or target in ("data", "arrays")):
                yield node.slice.value, node.lineno
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and _named(node, "arrays"):
            keys = node.value.keys
            yield from ((key.value, node.lineno) for key in keys if isinstance(key, ast.Constant))


def _named(node: ast.Assign, name: str) -> bool:
    return any(isinstance(target, ast.Name) and target.id == name for target in node.targets)


def test_only_the_declared_writers_and_readers_name_a_member():
    allowed = contract.member_modules()
    found, strays = set(), []
    for module, path in MODULES.items():
        for name, line in _member_names_used(ast.parse(path.read_text())):
            found.add(name)
            if name in allowed and module not in allowed[name] and module != "contract":
                strays.append(f"{path.name}:{line}: {name!r} (contract.FILES allows {sorted(allowed[name])})")
    assert not strays, "\n".join(strays)
    assert {"images", "crc32s", "class_names", "mtimes_ns", "fingerprints", "hashes"} <= found  # the scan sees them


def test_only_the_declared_writers_and_readers_import_a_table_header():
    owners: dict[str, set[str]] = {}
    for spec in FILES:
        if spec.header:
            name = next(
                key for key, value in vars(contract).items() if key.endswith("_HEADER") and value == spec.header
            )
            owners.setdefault(name, set()).update({spec.writer, *spec.readers})
    strays = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "img2npz.contract":
                for alias in node.names:
                    if alias.name.endswith("_HEADER") and module not in owners.get(alias.name, ()):
                        strays.append(f"{path.name} imports {alias.name}")
    assert not strays and set(owners) == {k for k in vars(contract) if k.endswith("_HEADER")}


def test_every_declared_module_exists_and_imports_the_contract():
    declared = {spec.writer for spec in FILES} | {module for spec in FILES for module in spec.readers}
    assert declared <= set(MODULES), declared - set(MODULES)
    for module in declared - {"contract"}:
        assert "from img2npz.contract import" in MODULES[module].read_text(), module


def test_the_loader_imports_no_workflow_step():
    code = "import sys, img2npz.dataset; print(' '.join(sorted(m for m in sys.modules if m.startswith('img2npz'))))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert loaded <= {
        f"img2npz.{m}" for m in ("dataset", "contract", "npzformat", "crc32", "splits", "neardup", "atomic", "tsv")
    } | {"img2npz"}, loaded


def test_readme_output_table_lists_every_dataset_member():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| key |", readme.index("`results/dataset.npz` (a standard `.npz`")) :]
    table = table[: table.index("\n\n")]
    listed = [name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split("|")[1])]
    assert listed == list(member_names(DATASET_MEMBERS + SPLIT_MEMBERS))
    assert "src/img2npz/contract.py" in readme and "src/img2npz/npzformat.py" in readme


def test_every_file_the_workflow_writes_is_declared():
    rules = "\n".join(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))
    outputs = set(re.findall(r'"(results/[^"]+)"', rules))
    declared = {spec.path for spec in FILES}
    pictures_and_logs = {o for o in outputs if o.startswith(("results/logs/", "results/demo")) or o.endswith(".png")}
    folders = {"results/index/shards", "results/shards", "results/index/listing", "results/index/keys"}
    undeclared = outputs - declared - pictures_and_logs - folders - {"results/report/index.html"}
    assert not undeclared, undeclared
    assert all(Path(spec.path).name for spec in FILES)


def _specified(section: str) -> list[tuple[str, str]]:
    """(member, dtype) rows of a member table in the contract's docstring, below ``section``."""
    text = contract.__doc__[contract.__doc__.index(section) :]
    rows = re.findall(r"^``(\w+)``\s+(``[<|]\w+``(?:, ``\S+`` or ``\S+``)?|as the dataset)", text, re.M)
    names = [name for name, _ in rows]
    return rows[: names.index("meta") + 1]


def test_the_docstring_tables_are_the_member_tables_and_the_files_written(tmp_path):
    dataset = _specified("``results/dataset.npz`` (format tag")
    shard = _specified("Shards ``results/shards/{shard}.npz``")
    assert [name for name, _ in dataset] == [*member_names(DATASET_MEMBERS[:-1] + SPLIT_MEMBERS), "meta"]
    assert [name for name, _ in shard] == list(member_names(contract.SHARD_MEMBERS))
    index = _specified("The ``shards`` layout: ``results/dataset/``")
    assert [name for name, _ in index] == [*member_names(contract.INDEX_MEMBERS[:-1] + SPLIT_MEMBERS), "meta"]
    for i in range(20):
        save(solid((i, 2 * i, 3 * i), (12, 10)), tmp_path / "src" / ("a" if i % 2 else "b") / f"{i:02d}.png")
    out, _, _, _ = build_dataset(tmp_path, 6, "d", splits={"train": 0.5, "val": 0.5})
    table, _, _, _ = build_dataset(tmp_path, 6, "e", splits={"train": 0.5, "val": 0.5}, layout="shards")
    a_shard = next(p for p in (tmp_path / "d").glob("*.npz") if re.fullmatch(r"[0-9a-f]{16}", p.stem))
    for path, spec in ((out, dataset), (a_shard, shard), (table, index)):
        layouts = array_layout(path)
        assert list(layouts) == [name for name, _ in spec]  # the members, in the file's order
        for name, dtype in spec:
            written = layouts[name].dtype.str
            assert (
                (dtype.startswith("``<U") and written.startswith("<U")) or written in dtype or dtype == "as the dataset"
            )
