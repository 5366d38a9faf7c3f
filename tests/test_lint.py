"""The style gates of the brief, run as tests so CI enforces them; and a test file for every module."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", "."],
        ["snakemake", "--lint", "--cores", "1"],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt", "snakemake-lint"],
)
def test_clean(command):
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_every_module_has_its_test_file():
    modules = {path.stem for path in (REPO / "src" / "img2npz").glob("*.py")} - {"__init__"}
    missing = sorted(name for name in modules if not (REPO / "tests" / f"test_{name}.py").is_file())
    assert not missing, f"modules without tests/test_<module>.py: {missing}"
