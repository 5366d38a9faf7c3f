"""End-to-end: the report a person opens. Real ``snakemake`` runs; the HTML page is opened in a real
headless browser (Debian's ``chromium``, installed by ``.ci/run``), its screenshot inspected and its
layout measured in a window 1280 px wide."""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import run_snakemake, save, write_config
from PIL import Image

from img2npz import pictures as report

pytestmark = pytest.mark.slow

CLASSES = {"apples": 14, "bananas": 9, "cherries": 5}
GRID_BACKGROUND = report.BACKGROUND


def make_tree(root, broken=2):
    rng = np.random.default_rng(7)
    for number, (name, count) in enumerate(CLASSES.items()):
        for i in range(count):
            base = np.zeros((40, 48, 3), np.uint8)
            base[..., number] = 200  # a dominant channel per class, with texture
            image = np.clip(base + rng.integers(0, 55, base.shape), 0, 255).astype(np.uint8)
            save(Image.fromarray(image), root / name / f"{i:02d}.png")
    for i in range(broken):
        (root / "apples" / f"broken_{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")


def browser() -> str | None:
    found = next(
        (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
    )
    if found is None and os.environ.get("IMG2NPZ_REQUIRE_BROWSER"):
        pytest.fail("no chromium on PATH, and IMG2NPZ_REQUIRE_BROWSER is set (.ci/run installs it with apt-get)")
    if found is None:
        pytest.skip("needs chromium (apt-get install chromium); .ci/run installs it")
    return found


def screenshot(page, out, size=(1280, 2400)):
    subprocess.run(
        [
            browser(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return np.asarray(Image.open(out).convert("RGB"))


# Injected into a copy of the page (the page itself has no scripts): once laid out, it writes what the
# test reads into the page, which chromium prints (--dump-dom); "wide": what sticks out, should it fail.
MEASURE = """<script>addEventListener("load", () => {
  const root = document.documentElement, samples = document.querySelector("img#picture-samples");
  const wide = [...document.body.querySelectorAll("*")].filter(e => e.getBoundingClientRect().right > root.clientWidth);
  const found = {scroll: root.scrollWidth, client: root.clientWidth, shown: samples.width,
    natural: samples.naturalWidth, wide: wide.slice(0, 5).map(e => e.tagName + " " + e.textContent.slice(0, 60))};
  document.body.insertAdjacentHTML("beforeend", "<pre id=measured></pre>");
  document.getElementById("measured").textContent = JSON.stringify(found);
});</script>"""


def measured_in_browser(page, copy, width=1280):
    """How ``page`` lays out in a window ``width`` px wide: the page's width against the window's, and the
    samples picture's shown width against its own."""
    copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    command = [browser(), "--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},1000"]
    dom = subprocess.run(
        [*command, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    make_tree(base / "src")
    config = write_config(
        base / "config.yaml",
        source=str(base / "src"),
        image={"size": [32, 32]},
        shards={"target_images": 8, "min_images": 2, "max_images": 20},
        validate={"max_failure_fraction": 0.1, "samples": 12},
    )
    run_snakemake(base / "work", config)
    return base, config, base / "work" / "results"


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """The same images without labels: one class-less run of samples (64 asked, 28 there); and an
    unreadable file whose long name has nowhere to break, for the page to wrap anyway."""
    base = tmp_path_factory.mktemp("unlabelled")
    make_tree(base / "src", broken=0)
    (base / "src" / "apples" / f"{'x' * 200}.png").write_bytes(b"not an image")
    config = write_config(base / "config.yaml", source=str(base / "src"), labels="none", image={"size": [32, 32]})
    run_snakemake(base / "work", config)
    return base, config, base / "work" / "results"


def test_report_pictures_have_their_expected_sizes(built):
    results = built[2]
    cell = report.TILE + report.GAP
    samples = Image.open(results / "report" / "samples.png")  # 12 samples, 3 classes: a row of 4 each
    assert samples.size == (report.LABEL_WIDTH + 4 * cell + report.GAP, 3 * cell + report.GAP)
    counts = Image.open(results / "report" / "class_counts.png")
    assert counts.size == (
        report.LABEL_WIDTH + report.BAR_WIDTH + 90,
        report.GAP + 3 * (report.BAR_HEIGHT + report.GAP),
    )
    histograms = Image.open(results / "report" / "histograms.png")
    histograms.load()
    assert histograms.size[0] == 3 * (report.AXIS + report.PANEL[0] + 2 * report.GAP) + report.GAP
    validation = json.loads((results / "validation.json").read_text())
    assert validation["passed"] is True
    assert {"class_counts", "duplicate_images", "constant_images"} <= {c["name"] for c in validation["checks"]}
    assert all({"name", "passed", "value", "threshold", "severity"} <= set(c) for c in validation["checks"])


def test_the_page_opens_in_a_browser_and_shows_the_sample_grid(built):
    base, _, results = built
    page = results / "report" / "index.html"
    html = page.read_text()
    assert "apples/broken_0.jpg" in html and "Every hard check passed" in html
    shot = screenshot(page, base / "shot.png")
    assert shot.std() > 20  # not a blank page
    dark = np.all(shot == GRID_BACKGROUND, axis=2)
    assert dark.sum() > 5000  # the grid's dark background is on screen: the page drew samples.png
    rows, columns = np.nonzero(dark)
    grid = shot[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    dominant = grid.reshape(-1, 3).argmax(axis=1)[grid.reshape(-1, 3).max(axis=1) > 150]
    assert set(np.unique(dominant).tolist()) == {0, 1, 2}  # tiles of all three classes (red, green, blue)


@pytest.mark.parametrize("build", ["built", "unlabelled"])
def test_the_page_fits_a_1280_px_window_and_shows_sample_tiles_of_64_px_or_more(build, request):
    base, _, results = request.getfixturevalue(build)
    found = measured_in_browser(results / "report" / "index.html", base / "measured.html")
    assert 1200 <= found["client"] <= 1280, found  # the window's width, less any scrollbar
    assert found["scroll"] <= found["client"], found  # nothing to scroll sideways
    assert found["wide"] == [], found  # nor in a table's own box (long names wrap)
    assert found["natural"] == Image.open(results / "report" / "samples.png").width
    assert report.TILE * found["shown"] / found["natural"] >= 64, found  # each tile as shown on the page


def test_an_unlabelled_page_has_no_images_per_class_section(unlabelled):
    page = (unlabelled[2] / "report" / "index.html").read_text()
    assert "Every hard check passed" in page and 'id="samples"' in page
    assert "Images per class" not in page and 'id="class_counts"' not in page
    samples = Image.open(unlabelled[2] / "report" / "samples.png")  # 28 images, COLUMNS a line
    cell = report.TILE + report.GAP
    lines = -(-28 // report.COLUMNS)
    assert samples.size == (report.LABEL_WIDTH + report.COLUMNS * cell + report.GAP, lines * cell + report.GAP)


def test_snakemake_report_bundles_the_pictures(built):
    base, config, results = built
    run_snakemake(base / "work", config, "--report", "results/report.html")
    bundled = (results / "report.html").read_text(errors="replace")
    assert "samples.png" in bundled and "class_counts.png" in bundled and "index.html" in bundled


def test_too_many_unreadable_files_fail_the_run_naming_the_check(tmp_path):
    make_tree(tmp_path / "src", broken=6)
    config = write_config(
        tmp_path / "config.yaml",
        source=str(tmp_path / "src"),
        image={"size": [16, 16]},
        validate={"max_failure_fraction": 0.1},
    )
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if line.startswith("img2npz error:")]
    assert message and "failure_fraction" in message[0] and "images_sha256" not in message[0]
    kept = tmp_path / "work" / "results" / "logs" / "validate_report.html"
    assert "results/logs/validate_report.html" in message[0]
    assert "Validation failed: failure_fraction" in kept.read_text()
    assert "apples/broken_0.jpg" in kept.read_text()  # the failures table, with examples
    assert (tmp_path / "work" / "results" / "dataset.npz").exists()  # written before the check failed
