import pytest

from img2npz.tsv import escape_field, format_tsv, parse_tsv, unescape_field


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
