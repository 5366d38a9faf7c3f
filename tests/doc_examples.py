"""Find the examples that README.md and config.yaml print, each with the line it stands on.

What counts as an example, so that one added to either file is tested without anyone writing a test:

- README: every line of a ```bash block (a command; ``\\`` continues it), every ```python block,
  and inline code that is a command (a known command word and an argument: ``snakemake --unlock``),
  ``--config`` arguments, a ``key: value`` of the config schema, or a call of the public API
  (``NPZDataset(...)``, ``np.load(...)``). Everything else in backticks is a name, not an example.
- config.yaml: a command in a comment (``#   snakemake ...``) and a commented ``# key: value`` line
  just above the same key (an example value of that key).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

SHELL_WORDS = {"snakemake", "python", "python3", "pip", "pytest", "bash", "ruff", "snakefmt", "apt-get", "sacctmgr"}
API_CALL = re.compile(r"^(NPZDataset|normalizer|np\.\w+|img2npz\.[\w.]+)\(")
SHELL_FENCES = {"bash", "sh", "shell"}


@dataclass(frozen=True)
class Example:
    file: str
    line: int
    kind: str  # shell | python | expression | config-args | config-value
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def markdown_examples(text: str, file: str = "README.md", schema_keys: set[str] = frozenset()) -> list[Example]:
    """The examples of a Markdown text, in the order they appear."""
    examples: list[Example] = []
    paragraph: list[tuple[int, str]] = []
    fence: str | None = None
    block: list[tuple[int, str]] = []

    def flush() -> None:
        examples.extend(_inline_examples(paragraph, file, schema_keys))
        paragraph.clear()

    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if fence is None:
                flush()
                fence, block = line[3:].strip(), []
            else:
                examples.extend(_block_examples(fence, block, file))
                fence = None
        elif fence is not None:
            block.append((number, line))
        elif line.strip():
            paragraph.append((number, line))
        else:
            flush()
    flush()
    return examples


def _block_examples(fence: str, block: list[tuple[int, str]], file: str) -> list[Example]:
    if fence == "python" and block:
        return [Example(file, block[0][0], "python", "\n".join(line for _, line in block) + "\n")]
    if fence not in SHELL_FENCES:
        return []
    commands, pending, start = [], "", 0
    for number, line in block:
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        start = start if pending else number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(Example(file, start, "shell", (pending + line).strip()))
        pending = ""
    return commands


def _inline_examples(paragraph: list[tuple[int, str]], file: str, schema_keys: set[str]) -> list[Example]:
    """Code spans may run over line breaks: search the joined paragraph, then count back the line."""
    if not paragraph:
        return []
    joined = "\n".join(line for _, line in paragraph)
    found = []
    for match in re.finditer(r"(`+)(.+?)\1", joined, re.DOTALL):
        span = " ".join(match.group(2).split())
        kind = classify(span, schema_keys)
        if kind:
            found.append(Example(file, paragraph[joined.count("\n", 0, match.start())][0], kind, span))
    return found


def classify(span: str, schema_keys: set[str]) -> str | None:
    """What an inline code span is an example of, or None for a name."""
    try:
        words = shlex.split(span)
    except ValueError:
        return None
    if len(words) >= 2 and words[0] in SHELL_WORDS:
        return "shell"
    if words and words[0] in ("--config", "--configfile"):
        return "config-args"
    if API_CALL.match(span):
        return "expression"
    key, colon, _ = span.partition(": ")
    if colon and key in schema_keys:
        return "config-value"
    return None


def config_examples(path: Path, schema_keys: set[str]) -> list[Example]:
    """Commands in config.yaml's comments, and its commented ``# key: value`` examples.

    An example value is given as ``dotted.key: value`` (its place in the file made explicit)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    examples, parents = [], []  # parents: (indent, key) of the maps enclosing the current line
    for number, line in enumerate(lines, 1):
        comment = re.match(r"^(\s*)#\s*(.*)$", line)
        if comment:
            text = comment.group(2)
            if text.split(" ", 1)[0] in SHELL_WORDS and " " in text:
                examples.append(Example(path.name, number, "shell", text))
                continue
            value = re.match(r"^([\w-]+): (.+)$", text)
            key_line = _next_key(lines, number)
            if value and key_line and key_line == (len(comment.group(1)), value.group(1)):
                dotted = _dotted(parents, *key_line)
                if dotted in schema_keys:
                    examples.append(Example(path.name, number, "config-value", f"{dotted}: {value.group(2)}"))
            continue
        key = re.match(r"^(\s*)([\w-]+):", line)
        if key:
            indent = len(key.group(1))
            while parents and parents[-1][0] >= indent:
                parents.pop()
            parents.append((indent, key.group(2)))
    return examples


def _next_key(lines: list[str], number: int) -> tuple[int, str] | None:
    """(indent, key) of the first line after line ``number`` (1-based) that is not a comment."""
    for line in lines[number:]:
        if line.strip() and not line.lstrip().startswith("#"):
            key = re.match(r"^(\s*)([\w-]+):", line)
            return (len(key.group(1)), key.group(2)) if key else None
    return None


def _dotted(parents: list[tuple[int, str]], indent: int, key: str) -> str:
    return ".".join([name for level, name in parents if level < indent] + [key])


def schema_keys(schema: dict, prefix: str = "") -> set[str]:
    """Dotted names of every named key of the config schema."""
    keys = set()
    for key, sub in schema.get("properties", {}).items():
        keys.add(prefix + key)
        keys |= schema_keys(sub, f"{prefix}{key}.")
    return keys


def nested(dotted: str, value_text: str) -> dict:
    """``image.size: [8, 8]`` -> ``{"image": {"size": [8, 8]}}``."""
    value = yaml.safe_load(value_text)
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value
