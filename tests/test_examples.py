"""Every example the project prints runs as printed: README.md's commands and Python, config.yaml's
commented examples, and the docstring examples of the public API.

The README's commands run in order, top to bottom, in one copy of the repository (as a user follows
the README in a clone), on small generated trees where the README names placeholders. What is
substituted, and what cannot run here, is listed below with the reason; an entry that no longer
matches anything in the README fails, so the lists cannot go stale. A failure names the line.
"""

from __future__ import annotations

import doctest
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, run_snakemake, snakemake_env, write_config
from doc_examples import Example, classify, config_examples, markdown_examples, nested, schema_keys
from PIL import Image
from snakemake.cli import parse_config

from img2npz.config import ConfigError, load_schema, validate_config

SCHEMA = load_schema()
KEYS = schema_keys(SCHEMA)
README = markdown_examples((REPO / "README.md").read_text(encoding="utf-8"), "README.md", KEYS)
CONFIG = config_examples(REPO / "config.yaml", KEYS)
EXAMPLES = README + CONFIG

# (printed text, what runs instead, why). {data} is the folder of generated inputs.
SUBSTITUTIONS = [
    (
        "python3 -m venv .venv && . .venv/bin/activate && ",
        "",
        "the tests run in the environment that .ci/run made with this same command",
    ),
    (
        "pip install ",
        "pip install --dry-run --no-index --no-build-isolation ",
        "checks that this environment holds what the command asks for, without changing it",
    ),
    ("/data/pets", "{data}/pets", "a small generated tree that has the README's example paths"),
    ("/data/imgs", "{data}/pets", "the same generated tree"),
    ("/data/labels.csv", "{data}/labels.csv", "a generated path,label CSV for that tree"),
    ("bench/corpus.py OUT --images 20000", "bench/corpus.py {data}/corpus --images 40", "a 40-image bench tree"),
    (
        "bench/index_scale.py [--files 1000000] [--full]",
        "bench/index_scale.py --files 3000 --full --dir {data}/index-scale",
        "3,000 files, with the optional flag",
    ),
    (
        "bench/incremental.py [--images 20000] [--classes 100] [--out FILE]",
        "bench/incremental.py --images 200 --classes 4 --dir {data}/incremental --out {data}/INCREMENTAL.md",
        "200 images in 4 folders (its own checks still apply); the report outside the clone",
    ),
    (
        "bench/neardup.py [--scenes 1000] [--size 256] [--search 1000000]",
        "bench/neardup.py --scenes 6 --size 64 --search 20000 --rounds 1",
        "6 scenes, 20,000 hashes, one timed shard job",
    ),
    (
        "bench/scale.py [--sizes 100000 1000000] [--out FILE]",
        "bench/scale.py --sizes 300 600 --dir {data}/scale --out {data}/SCALE.md",
        "300 and 600 images (its 1% reruns add 3 and 6); the report outside the clone",
    ),
    (
        "bench/throughput.py [--images 20000] [--naive-python PYTHON_WITH_TORCH] [--out FILE]",
        "bench/throughput.py --images 60 --naive 20 --dir {data}/throughput --out {data}/RESULTS.md",
        "60 images; the default --naive-python, this python, has torch; the report outside the clone",
    ),
]
# (kind, pattern, why it is not run)
SKIPS = [
    ("shell", r"(^|&& )pytest\b", "runs this suite: .ci/run runs README command 2 (see test_ci_runs_readme_command_2)"),
    ("shell", r"^sacctmgr ", "lists a real site's SLURM accounts; the test cluster keeps no accounting"),
    ("expression", r"\.\.\.", "a placeholder (...), not code"),
]
# SLURM commands run on the one-node test cluster. It keeps no accounting, so they get the flags the
# README gives for such a cluster; and it answers at once, so Snakemake polls every second instead
# of every 40 (a real site's pace, which would make each job here last 40 s or more).
SLURM = re.compile(r"profiles/slurm|tests/slurm/|slurmctld")
NO_ACCOUNTING = " --slurm-status-command squeue --slurm-no-account"
FAST_POLLING = " --slurm-init-seconds-before-status-checks 1"
PRELUDE = "import numpy as np\nimport img2npz.npzformat\nfrom img2npz import NPZDataset, normalizer\n"


def skip_reason(example: Example) -> str | None:
    for kind, pattern, why in SKIPS:
        if kind == example.kind and re.search(pattern, example.text):
            return why
    return None


def substituted(text: str, data: Path) -> str:
    for printed, instead, _ in SUBSTITUTIONS:
        text = text.replace(printed, instead.format(data=data))
    if "--profile profiles/slurm" in text:
        text += ("" if "--slurm-status-command" in text else NO_ACCOUNTING) + FAST_POLLING
    return text


def make_pets(root: Path) -> None:
    """The README's example paths (cat/0001.jpg, dog/park/0002.png, readme.jpg) and a few more."""
    rng = np.random.default_rng(0)
    names = ["cat/0001.jpg", "cat/0004.jpg", "cat/0005.png", "dog/park/0002.png", "dog/0003.jpg", "dog/0006.jpg"]
    for name in [*names, "readme.jpg"]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), np.uint8)).save(path)
    rows = [f"{name},{'indoor' if name.startswith('cat') else 'outdoor'}" for name in names]
    (root.parent / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A copy of the repository as a clone has it (tracked and new files), and the generated inputs."""
    base = tmp_path_factory.mktemp("readme")
    clone, data = base / "clone", base / "data"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    make_pets(data / "pets")
    return clone, data


def run(example: Example, command: list[str], cwd: Path, shown: str) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=snakemake_env(), timeout=900)
    if result.returncode != 0:
        pytest.fail(
            f"{example.where}: `{example.text.splitlines()[0]}` failed with exit code {result.returncode}"
            f" (run as: {shown})\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}",
            pytrace=False,
        )


RUNNABLE = [e for e in EXAMPLES if e.kind in ("shell", "python", "expression")]


@pytest.mark.slow
@pytest.mark.parametrize("example", RUNNABLE, ids=[e.where for e in RUNNABLE])
def test_printed_example_runs(example, workspace, request):
    clone, data = workspace
    if reason := skip_reason(example):
        pytest.skip(f"{example.where}: {reason}")
    text = substituted(example.text, data)
    if SLURM.search(text):
        request.getfixturevalue("slurm_cluster")
    if example.kind == "shell":
        run(example, ["bash", "-e", "-o", "pipefail", "-c", text], clone, text)
    elif example.kind == "python":
        script = data / f"{example.file}_line_{example.line}.py"  # not in the clone, whose lint it would fail
        script.write_text(text)
        run(example, [sys.executable, str(script)], clone, f"python {script}")
    else:
        run(example, [sys.executable, "-c", f"{PRELUDE}print(repr({text}))"], clone, text)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "config-args"], ids=lambda e: e.where)
def test_printed_config_arguments_are_valid(example):
    """Parsed by Snakemake's own --config parser, then validated as the workflow does."""
    words = example.text.split(" ", 1)[1]
    try:
        validate_config(parse_config(shlex.split(words)))
    except ConfigError as error:
        pytest.fail(f"{example.where}: `{example.text}`: {error}", pytrace=False)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "config-value"], ids=lambda e: e.where)
def test_printed_config_values_are_valid(example):
    """Each value alone, or else with the examples beside it in the same map, as a user uncommenting
    them would (``normalize`` needs the float ``dtype`` shown above it)."""
    dotted, value = example.text.split(": ", 1)
    parent = dotted.rpartition(".")[0]
    config = nested(dotted, value)
    try:
        checked = validate_config(config)
    except ConfigError as alone:
        for other in EXAMPLES:
            sibling = other.text.split(": ", 1)[0]
            if other.kind == "config-value" and other.file == example.file and sibling.rpartition(".")[0] == parent:
                _merge(config, nested(*other.text.split(": ", 1)))
        try:
            checked = validate_config(config)
        except ConfigError:
            pytest.fail(f"{example.where}: `{example.text}`: {alone}", pytrace=False)
    assert _get(checked, dotted) == _get(nested(dotted, value), dotted), example.where


def _merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _get(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def test_ci_runs_readme_command_2():
    """The brief: .ci/run calls exactly the test command README.md gives users (its command 2)."""
    command_2 = [e for e in README if e.kind == "shell"][1].text
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "pytest" in command_2 and command_2 in ci_lines


def test_every_substitution_and_skip_is_used():
    for printed, _, why in SUBSTITUTIONS:
        assert any(printed in e.text for e in EXAMPLES), f"substitution {printed!r} ({why}) matches no example"
    for kind, pattern, why in SKIPS:
        assert any(e.kind == kind and re.search(pattern, e.text) for e in EXAMPLES), f"skip {pattern!r} ({why})"


def test_every_bench_example_runs_at_a_test_size():
    """A bench printed without its options would run at full size here (one took 12 minutes of
    this suite): every runnable example that starts a bench has a substitution that shrinks it."""
    demo_sized = {"bench/loader.py"}  # reads the demo's results/dataset.npz: it has no size to shrink
    for example in RUNNABLE:
        bench = re.search(r"\bbench/\w+\.py", example.text)
        if bench and bench.group() not in demo_sized and not skip_reason(example):
            shrunk = any(printed in example.text for printed, _, _ in SUBSTITUTIONS if printed.startswith("bench/"))
            assert shrunk, f"{example.where}: `{example.text}` would run the bench at full size"


def test_the_examples_found_include_what_users_copy():
    """A guard on the extraction itself: the README's own first commands and blocks are found."""
    shell = [e.text for e in README if e.kind == "shell"]
    assert shell[0].endswith("pip install -e . && snakemake --cores all")
    assert "snakemake --cores all --config 'splits={train: 0.8, val: 0.1, test: 0.1}'" in shell
    assert "snakemake --unlock" in shell  # inline, in a sentence
    assert any(e.kind == "python" and "DataLoader" in e.text for e in README)
    assert {e.kind for e in CONFIG} == {"shell", "config-value"}
    assert classify("merge_npz", KEYS) is None and classify("snakemake", KEYS) is None
    assert classify("image.size: [8, 8]", KEYS) == "config-value" and classify("scheduler: greedy", KEYS) is None


def _configuration_table() -> dict[str, tuple[str, str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def _schema_of(dotted: str) -> dict:
    schema = SCHEMA
    for part in dotted.split("."):
        schema = schema["properties"][part]
    return schema


def test_readme_configuration_table_gives_every_key_with_its_default_and_values():
    rows = _configuration_table()
    with_defaults = {
        key for key in KEYS if "default" in _schema_of(key) and not isinstance(_schema_of(key)["default"], dict)
    }
    assert set(rows) == with_defaults
    for key, (default, meaning) in rows.items():
        schema = _schema_of(key)
        assert yaml.safe_load(re.match(r"`([^`]*)`", default).group(1)) == schema["default"], key
        allowed = schema.get("enum") or schema.get("items", {}).get("enum") or []
        documented = set(re.findall(r"`([^`]+)`", meaning))
        assert set(allowed) <= documented, f"README table row {key}: {set(allowed) - documented} not named"


def test_config_yaml_names_every_fail_on_value():
    text = (REPO / "config.yaml").read_text()
    for value in _schema_of("validate.fail_on")["items"]["enum"]:
        assert re.search(rf"#.*\b{value}\b", text), value


@pytest.mark.slow
def test_public_api_docstring_examples(tmp_path, monkeypatch):
    """The examples in NPZDataset's and normalizer's docstrings, on the demo
    dataset that README command 1 builds (the default config)."""
    import img2npz.dataset

    run_snakemake(tmp_path / "work", write_config(tmp_path / "defaults.yaml"))
    monkeypatch.chdir(tmp_path / "work")
    tests = [t for t in doctest.DocTestFinder().find(img2npz.dataset) if t.examples]
    assert {t.name.rsplit(".", 1)[1] for t in tests} >= {"NPZDataset", "normalizer"}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
