"""htmlreport: the page itself. Every section is there, in order, with its contents list; every link
resolves to a section and every picture is the PNG it names, inlined; names are escaped; nothing is
fetched from anywhere."""

import base64
import html.parser
import io

import numpy as np
from PIL import Image

from img2npz.changes import Catalogue
from img2npz.htmlreport import SECTIONS, Page, anchor, render, write_html


class Parsed(html.parser.HTMLParser):
    """Headings (id, text), links, images, text and table rows (the text of each cell) of a page."""

    def __init__(self, page: str):
        super().__init__()
        self.headings, self.ids, self.links, self.images, self.text, self.rows = [], set(), [], [], [], []
        self._in_heading = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self.rows[-1].append("")
        if tag == "h2":
            self._in_heading = attrs.get("id")
        elif tag == "a":
            self.links.append(attrs.get("href"))
        elif tag == "img":
            self.images.append(attrs)
        elif tag in ("script", "link", "iframe"):
            raise AssertionError(f"the page has a <{tag}>")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data
        if self._in_heading is not None:
            self.headings.append((self._in_heading, data))


MEMBERS = ["images", "labels", "classes", "paths", "crc32s", "phashes", "mean_rgb", "meta"]
MANY = [f"cat/{n:02d}_with_a_rather_long_name_that_does_not_break_anywhere_by_itself.jpg" for n in range(12)]
CHECKS = [
    {"name": "members", "passed": True, "value": MEMBERS, "threshold": MEMBERS, "severity": "hard"},
    {
        "name": "failure_fraction",
        "passed": False,
        "value": {"failures": 1, "indexed": 2, "fraction": 0.5},
        "threshold": 0.05,
        "severity": "hard",
    },
    {
        "name": "duplicate_images",
        "passed": False,
        "value": {"groups": 1, "images": 12, "examples": [MANY]},
        "threshold": 0,
        "severity": "soft",
    },
]


def png(path, colour):
    Image.new("RGB", (6, 4), colour).save(path)
    return path


def full_page(tmp_path):
    changes = Catalogue.of("x", [], [], [], np.zeros((0, 2), np.uint64), {}, [("added", "cat", "train", 3)])
    changes.examples = {"added": ["cat/<b>new</b>.jpg"]}
    return Page(
        checks=CHECKS,
        summary=[("images in the dataset", "3")],
        pictures={
            "samples": png(tmp_path / "samples.png", (255, 0, 0)),
            "class_counts": png(tmp_path / "class_counts.png", (0, 255, 0)),
            "histograms": png(tmp_path / "histograms.png", (0, 0, 255)),
        },
        class_counts=[("cat", 2), ("dog", 1)],
        failure_groups=[
            {"stage": "decode", "reason": "OSError", "count": 1, "examples": ["dog/bad.jpg"], "message": "OSError: x"}
        ],
        listed={"duplicate_images": [["cat/a.jpg", "cat/<script>.jpg"]], "constant_images": [["dog/blank.png"]]},
        splits=(["split", "images", "cat", "dog"], [("train", 3, 2, 1)]),
        changes=changes,
    )


def test_every_section_in_order_with_links_that_resolve_and_inlined_pictures(tmp_path):
    page = full_page(tmp_path)
    write_html(tmp_path / "index.html", render(page))
    parsed = Parsed((tmp_path / "index.html").read_text(encoding="utf-8"))
    assert [text for _, text in parsed.headings] == [title for title, _ in SECTIONS]
    assert [f"#{anchor(title)}" for title, _ in SECTIONS] == parsed.links  # the contents list, in order
    assert all(link[1:] in parsed.ids for link in parsed.links)
    assert len(parsed.images) == 3
    for image in parsed.images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix) and image["alt"]
        shown = Image.open(io.BytesIO(base64.b64decode(image["src"][len(prefix) :])))
        assert shown.tobytes() == Image.open(page.pictures[image["id"].removeprefix("picture-")]).tobytes()
    assert not {image["id"] for image in parsed.images} & {anchor(title) for title, _ in SECTIONS}  # ids unique


def test_verdict_checks_and_names_are_shown_escaped(tmp_path):
    text = render(full_page(tmp_path))
    assert "Validation failed: failure_fraction" in text and "Warnings: duplicate_images" in text
    assert "cat/&lt;script&gt;.jpg" in text and "<script>" not in text and "cat/&lt;b&gt;new&lt;/b&gt;.jpg" in text
    words = " ".join(Parsed(text).text)
    for expected in ("dog/bad.jpg", "OSError", "dog/blank.png", "train", "added", "images in the dataset"):
        assert expected in words
    assert "http://" not in text and "https://" not in text


def test_a_file_that_is_no_dataset_gets_the_checks_alone():
    failed = {"name": "members", "passed": False, "value": ["x"], "threshold": ["images"], "severity": "hard"}
    parsed = Parsed(render(Page(checks=[failed])))
    shown = [text for _, text in parsed.headings]
    assert "Checks" in shown and "Samples" not in shown and "Pixel values" not in shown and not parsed.images
    assert "Splits (images per split and class)" not in shown
    assert "Validation failed: members" in " ".join(parsed.text)


def test_the_checks_table_shows_short_text_and_the_keys_that_set_thresholds_not_json():
    rows = {row[0]: row[1:] for row in Parsed(render(Page(checks=CHECKS))).rows if row}
    assert rows["failure_fraction"] == [
        "FAIL",
        "hard",
        "1 of 2 files failed (50%)",
        "at most 5% (set by validate.max_failure_fraction)",
    ]
    assert rows["members"][2:] == [
        "all present (8 members in the file)",
        "8 members: images, labels, classes and 5 more",
    ]
    assert rows["duplicate_images"][2] == f"1 group, 12 images, e.g. {MANY[0]}, {MANY[1]} and 10 more"
    assert not any(mark in cell for row in rows.values() for cell in row for mark in '{}[]"')


def test_an_unlabelled_dataset_gets_no_images_per_class_section(tmp_path):
    page = full_page(tmp_path)
    page.class_counts = []
    parsed = Parsed(render(page))
    assert "Images per class" not in [text for _, text in parsed.headings]
    assert "#images-per-class" not in parsed.links and "class_counts" not in {image["id"] for image in parsed.images}
    assert [text for _, text in parsed.headings][:2] == ["Summary", "Samples"]
