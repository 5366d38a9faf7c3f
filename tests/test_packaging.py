"""What an install brings: README command 1 installs the package without extras and without ``-e``
on some machines (``pip install .``); everything the README then asks for must work."""

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from img2npz.config import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[1]


def base_closure() -> set[str]:
    """Names of every distribution the plain install (no extras of ours) pulls in, extras included."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pending = [(Requirement(text), "") for text in project["dependencies"]]
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        names.add(name)
        for wanted in requirement.extras or {""}:
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            for text in importlib.metadata.requires(name) or []:
                pending.append((Requirement(text), wanted))
    return names


def test_the_plain_install_brings_what_snakemake_report_needs():
    # README: `snakemake --report results/report.html` after command 1 (`pip install -e .`, no extras)
    assert "pygments" in base_closure()


def test_the_workflow_reads_the_schema_the_package_ships():
    assert (REPO / "workflow" / "schemas" / "config.schema.yaml").resolve() == SCHEMA_PATH.resolve()
    assert SCHEMA_PATH.parent == REPO / "src" / "img2npz"


def test_an_installed_wheel_validates_a_config_without_the_source_tree(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, REPO],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("img2npz-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = "import img2npz, img2npz.config as c; print(img2npz.__file__); print(c.validate_config({})['image']['size'])"
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    where, size = done.stdout.splitlines()
    assert Path(where).is_relative_to(site) and size == "[256, 256]"
