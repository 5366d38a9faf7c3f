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
    """Headings (id, text), links, images and text of a page."""

    def __init__(self, page: str):
        super().__init__()
        self.headings, self.ids, self.links, self.images, self.text = [], set(), [], [], []
        self._in_heading = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
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
        if self._in_heading is not None:
            self.headings.append((self._in_heading, data))


def png(path, colour):
    Image.new("RGB", (6, 4), colour).save(path)
    return path


def full_page(tmp_path):
    changes = Catalogue.of("x", [], [], [], np.zeros((0, 2), np.uint64), {}, [("added", "cat", "train", 3)])
    changes.examples = {"added": ["cat/<b>new</b>.jpg"]}
    return Page(
        checks=[
            {"name": "members", "passed": True, "value": ["images"], "threshold": None, "severity": "hard"},
            {"name": "failure_fraction", "passed": False, "value": 0.5, "threshold": 0.05, "severity": "hard"},
            {"name": "duplicate_images", "passed": False, "value": {"groups": 1}, "threshold": 0, "severity": "soft"},
        ],
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
        assert shown.tobytes() == Image.open(page.pictures[image["id"]]).tobytes()  # the file it names


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
