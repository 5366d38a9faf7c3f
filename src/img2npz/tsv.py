"""Tab-separated files whose fields may hold tabs, newlines and backslashes.

Every TSV the workflow writes has a header line and escapes ``\\t``, ``\\n``, ``\\r`` and ``\\\\``
inside fields, because file names can contain them. Text is UTF-8 with ``surrogateescape``, so a
file name that is not valid UTF-8 survives a round trip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

from img2npz.atomic import write_bytes_atomic, write_if_changed

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_SPECIAL = re.compile(r"[\\\t\n\r]")
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
ENCODING = "utf-8"
ERRORS = "surrogateescape"
TAB = "\t"


def needs_escape(text: str) -> bool:
    return _SPECIAL.search(text) is not None


def escape_field(value: object) -> str:
    text = str(value)
    if _SPECIAL.search(text) is None:
        return text
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def unescape_field(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt not in _UNESCAPES:
                raise ValueError(f"bad escape sequence \\{nxt} in TSV field {text!r}")
            out.append(_UNESCAPES[nxt])
        else:
            out.append(ch)
    return "".join(out)


def format_tsv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    lines = ["\t".join(header)]
    lines.extend("\t".join(escape_field(field) for field in row) for row in rows)
    return ("\n".join(lines) + "\n").encode(ENCODING, ERRORS)


def write_tsv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    write_bytes_atomic(path, format_tsv(header, rows))


def write_tsv_if_changed(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]) -> bool:
    return write_if_changed(path, format_tsv(header, rows))


def parse_tsv(data: bytes, expected_header: Sequence[str], source: str = "<tsv>") -> list[list[str]]:
    """Return the rows of a TSV, checking its header; ``source`` names the file in errors."""
    lines = data.decode(ENCODING, ERRORS).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0].split("\t") != list(expected_header):
        raise ValueError(f"{source}: expected header {TAB.join(expected_header)!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = [unescape_field(field) for field in line.split("\t")]
        if len(fields) != len(expected_header):
            raise ValueError(f"{source}:{number}: expected {len(expected_header)} fields, got {len(fields)}")
        rows.append(fields)
    return rows


def read_tsv(path: str | os.PathLike, expected_header: Sequence[str]) -> list[list[str]]:
    with open(path, "rb") as handle:
        return parse_tsv(handle.read(), expected_header, source=os.fspath(path))
