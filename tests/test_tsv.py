"""tsv: escaped fields round-trip, headers are checked, tables stream and concatenate."""

import pytest

from img2npz.tsv import escape_field, format_tsv, iter_tsv, parse_tsv, unescape_field, write_tsv


@pytest.mark.parametrize("text", ["plain", "tab\there", "new\nline", "back\\slash", "\\t literal", "cr\rx", ""])
def test_escape_round_trip(text):
    escaped = escape_field(text)
    assert "\t" not in escaped and "\n" not in escaped
    assert unescape_field(escaped) == text


def test_table_round_trip_keeps_awkward_names():
    rows = [["a\tb.jpg", "decode", "x"], ["new\nline/é.png", "exif", "bad \\ thing"], ["\udcff.jpg", "decode", "y"]]
    data = format_tsv(["path", "stage", "error"], rows)
    assert data.count(b"\n") == 4
    assert parse_tsv(data, ["path", "stage", "error"]) == rows


def test_bad_header_names_the_file():
    with pytest.raises(ValueError, match=r"manifest\.tsv"):
        parse_tsv(b"wrong\n", ["path"], source="manifest.tsv")


def test_bad_escape_is_an_error():
    with pytest.raises(ValueError, match="escape"):
        unescape_field("a\\qb")


def test_tables_stream_with_their_headers_checked(tmp_path):
    write_tsv(tmp_path / "a.tsv", ["path", "n"], [["x\ty", 1], ["z", 2]])
    assert list(iter_tsv(tmp_path / "a.tsv", ["path", "n"])) == [["x\ty", "1"], ["z", "2"]]
    write_tsv(tmp_path / "bad.tsv", ["path", "stage"], [])
    with pytest.raises(ValueError, match=r"bad\.tsv: expected header"):
        list(iter_tsv(tmp_path / "bad.tsv", ["path", "n"]))


def test_the_fast_path_writes_what_the_escaping_one_does():
    rows = [["a/1.jpg", "10", "cat"], ["b/2.jpg", "20", ""]]
    assert format_tsv(["p", "s", "c"], rows, escape=False) == format_tsv(["p", "s", "c"], rows)


def test_a_table_without_escapes_reads_as_the_escaped_path_does_and_short_lines_still_fail():
    plain = [["a/1.jpg", "10", "cat"], ["b/é 2.jpg", "20", ""], ["\udcff.jpg", "3", "x"]]
    data = format_tsv(["p", "s", "c"], plain)
    assert b"\\" not in data and parse_tsv(data, ["p", "s", "c"]) == plain
    assert parse_tsv(format_tsv(["p", "s", "c"], [*plain, ["t\tab", "1", "y"]]), ["p", "s", "c"])[-1] == [
        "t\tab",
        "1",
        "y",
    ]
    with pytest.raises(ValueError, match=r"m\.tsv:3: expected 3 fields, got 2"):
        parse_tsv(b"p\ts\tc\na\t1\tx\nb\t2\n", ["p", "s", "c"], source="m.tsv")
