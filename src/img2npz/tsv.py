"""Every tab-separated file the workflow reads or writes goes through here.

The tables have a header line (:mod:`img2npz.contract` names each one) and escape ``\\t``, ``\\n``,
``\\r`` and ``\\\\`` inside fields, because file names can contain them. Text is UTF-8 with
``surrogateescape``, so a file name that is not valid UTF-8 survives a round trip. Reading
streams (:func:`iter_tsv`), so a failure list of 10^6 lines costs a line of memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

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


def format_tsv(header: Sequence[str], rows: Iterable[Sequence[object]], escape: bool = True) -> bytes:
    """The table's bytes. ``escape=False`` is the fast path for rows of strings that the caller
    knows hold no tab, newline or backslash (:func:`needs_escape`, checked once for many rows)."""
    lines = [TAB.join(header)]
    if escape:
        lines.extend(TAB.join(escape_field(field) for field in row) for row in rows)
    else:
        lines.extend(map(TAB.join, rows))
    return ("\n".join(lines) + "\n").encode(ENCODING, ERRORS)


def write_tsv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    write_bytes_atomic(path, format_tsv(header, rows))


def write_tsv_if_changed(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]) -> bool:
    return write_if_changed(path, format_tsv(header, rows))


def _fields(line: str, width: int, source: str, number: int) -> list[str]:
    fields = [unescape_field(field) for field in line.split(TAB)]
    if len(fields) != width:
        raise ValueError(f"{source}:{number}: expected {width} fields, got {len(fields)}")
    return fields


def _check_header(line: str, expected: Sequence[str], source: str) -> None:
    if line.split(TAB) != list(expected):
        raise ValueError(f"{source}: expected header {TAB.join(expected)!r}")


def parse_tsv(data: bytes, expected_header: Sequence[str], source: str = "<tsv>") -> list[list[str]]:
    """Return the rows of a TSV held in memory, checking its header; ``source`` names it in errors.

    A table with no backslash has no escaped field: its lines are split as they are (the index
    reads every manifest on each run, 10^6 lines at 10^6 images, three times faster so)."""
    text = data.decode(ENCODING, ERRORS)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    _check_header(lines[0] if lines else "", expected_header, source)
    width = len(expected_header)
    if "\\" not in text:
        rows = [line.split(TAB) for line in lines[1:]]
        if all(len(row) == width for row in rows):
            return rows
    return [_fields(line, width, source, number) for number, line in enumerate(lines[1:], start=2)]


def _body(handle: BinaryIO, expected_header: Sequence[str], source: str) -> BinaryIO:
    """``handle`` past its header line, once that is checked."""
    _check_header(handle.readline().decode(ENCODING, ERRORS).removesuffix("\n"), expected_header, source)
    return handle


def iter_tsv(path: str | os.PathLike, expected_header: Sequence[str]) -> Iterator[list[str]]:
    """The rows of a TSV file, one at a time, checking its header."""
    source = os.fspath(path)
    with open(path, "rb") as handle:
        for number, line in enumerate(_body(handle, expected_header, source), start=2):
            yield _fields(line.decode(ENCODING, ERRORS).removesuffix("\n"), len(expected_header), source, number)


def read_tsv(path: str | os.PathLike, expected_header: Sequence[str]) -> list[list[str]]:
    return list(iter_tsv(path, expected_header))
