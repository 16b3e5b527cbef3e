"""End-to-end tests of the service's web pages (``/`` and ``/label``) in headless Chromium.

The real server (``build_app`` run by uvicorn in a thread) serves an ONNX export of the
session's briefly trained model; Playwright drives the pages as a person would.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from conftest import running_app
from PIL import Image

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser tests "
                "need it", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from captchalab.runtime import Recognizer  # noqa: E402
from captchalab.service.server import build_app  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TIMEOUT_MS = 20_000  # generous: two cores, shared with the rest of the suite
UNLABELLED = 5


@dataclass
class Served:
    url: str
    label_dir: Path
    out_dir: Path
    model: Path

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def recognizer(onnx_model) -> Recognizer:
    return Recognizer.load(onnx_model, threads=1)


@pytest.fixture(scope="module")
def rings_images(rings_test) -> list[Path]:
    return sorted(rings_test.glob("*.png"))


@pytest.fixture
def served(onnx_model, rings_images, tmp_path) -> Iterator[Served]:
    """A fresh server per test (loading it takes well under a second), so the labelling
    tests do not depend on each other's saves; unlabelled images get neutral names."""
    label_dir, out_dir = tmp_path / "unlabelled", tmp_path / "labelled"
    label_dir.mkdir()
    for i, source in enumerate(rings_images[:UNLABELLED]):
        shutil.copyfile(source, label_dir / f"img{i}.png")
    app = build_app(models=[str(onnx_model)], threads=1, label_dir=str(label_dir),
                    labelled_dir=str(out_dir))
    with running_app(app) as url:
        yield Served(url, label_dir, out_dir, onnx_model)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def _shown_file(page: Page) -> str:
    """The unlabelled image ``/label`` shows now (from ``#image``'s src)."""
    src = page.locator("#image").get_attribute("src") or ""
    assert src.startswith("/v1/label/image/"), f"no image shown (src={src!r})"
    return unquote(src.rsplit("/", 1)[1])


# ----------------------------------------------------------------------------- the / page


def _open_try_page(page: Page, served: Served, onnx_model: Path) -> None:
    page.goto(served.url + "/")
    # the model list is filled from /v1/models; wait for it so the upload names the model
    expect(page.locator("#model option")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.locator("#model")).to_have_value(onnx_model.stem)


def _check_the_image_is_shown_twice_as_large_and_uncovered(page: Page, image: Path,
                                                           tmp_path: Path) -> None:
    """By screenshot: the captcha at twice its size, crisp (its own pixels, doubled), the
    readings below it and not over it, in readable text."""
    preview = page.locator("#preview")
    expect(preview).to_be_visible()
    original = Image.open(image).convert("L")
    box = preview.bounding_box()
    assert abs(box["width"] - 2 * original.width) <= 2, box  # 1 px border each side
    chars = page.locator("#chars").bounding_box()
    assert chars["y"] >= box["y"] + box["height"] - 1, (box, chars)  # below, not over
    shot = tmp_path / "preview.png"
    preview.screenshot(path=str(shot))
    shown = Image.open(shot).convert("L")
    doubled = original.resize((2 * original.width, 2 * original.height), Image.NEAREST)
    assert abs(shown.width - doubled.width - 2) <= 1 and abs(shown.height - doubled.height - 2) <= 1
    inner = shown.crop((1, 1, 1 + doubled.width, 1 + doubled.height))  # within the border
    difference = np.abs(np.asarray(inner, np.int16) - np.asarray(doubled, np.int16)).mean()
    assert difference < 8  # the captcha itself, crisp
    size = page.locator("#chars .char").first.evaluate(
        "e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 16
    page.screenshot(path=str(tmp_path / "try_page.png"), full_page=True)


def test_try_page_shows_no_broken_image_before_an_upload(page, served, onnx_model, tmp_path):
    _open_try_page(page, served, onnx_model)
    expect(page.locator("#stage")).to_be_hidden()
    expect(page.locator("#preview")).to_be_hidden()
    assert page.locator("#stage").bounding_box() is None  # nothing drawn, no broken icon
    page.screenshot(path=str(tmp_path / "empty_try_page.png"), full_page=True)


def test_try_page_reads_an_uploaded_image(page, served, onnx_model, recognizer, rings_images,
                                          tmp_path):
    # an image the model reads as something, so an empty #result cannot pass for the answer
    image = next((p for p in rings_images if recognizer.predict(p).text), None)
    assert image is not None, "the trained model reads nothing in any rings test image"
    expected = recognizer.predict(image).text

    _open_try_page(page, served, onnx_model)
    with page.expect_response(lambda r: r.url.endswith("/v1/recognize")) as answer:
        page.set_input_files("#file", str(image))
    assert answer.value.status == 200

    expect(page.locator("#result")).to_have_text(expected, timeout=TIMEOUT_MS)
    expect(page.locator("#error")).to_have_text("")
    # below the image: one entry per character, each the character and its %
    chars = page.locator("#chars .char")
    expect(chars).to_have_count(len(expected))
    for i, c in enumerate(expected):
        text = chars.nth(i).inner_text()
        assert text.split()[0] == c, f"entry {i} is {text!r}, expected {c!r} first"
        assert text.strip().endswith("%")
    expect(page.locator("#stage")).to_be_visible()
    expect(page.locator("#details")).to_contain_text("confidence")
    _check_the_image_is_shown_twice_as_large_and_uncovered(page, image, tmp_path)


def test_try_page_shows_the_error_for_a_file_that_is_not_an_image(page, served, onnx_model):
    _open_try_page(page, served, onnx_model)
    with page.expect_response(lambda r: r.url.endswith("/v1/recognize")) as answer:
        page.set_input_files("#file", {"name": "bad.png", "mimeType": "image/png",
                                       "buffer": b"this is a text file, not a PNG\n"})
    assert answer.value.status == 400
    api_error = answer.value.json()["error"]
    assert "bad.png" in api_error and "not an image" in api_error

    expect(page.locator("#error")).to_have_text(api_error, timeout=TIMEOUT_MS)
    expect(page.locator("#result")).to_have_text("")
    expect(page.locator("#chars .char")).to_have_count(0)


# ------------------------------------------------------------------------ the /label page


def _save(page: Page, label: str, labelled_after: int) -> str:
    """Type ``label`` for the shown image, press Enter, wait for the save; the source name."""
    source = _shown_file(page)
    page.locator("#label").fill(label)
    page.locator("#label").press("Enter")
    expect(page.locator("#progress")).to_have_text(f"{labelled_after} of {UNLABELLED} labelled")
    return source


def test_label_page_saves_skips_and_undoes(page, served, recognizer):
    queue = served.get_json("/v1/label/queue")
    assert queue["total"] == UNLABELLED and queue["labelled"] == 0
    order = [item["file"] for item in queue["items"]]
    assert sorted(order) == [f"img{i}.png" for i in range(UNLABELLED)]
    # least confident first, by the server's numbers and by our own reading of the files
    confidences = [item["confidence"] for item in queue["items"]]
    assert confidences == sorted(confidences)
    ours = {name: recognizer.predict(served.label_dir / name).confidence for name in order}
    assert ours[order[0]] == pytest.approx(min(ours.values()), abs=1e-3)

    page.goto(served.url + "/label")
    expect(page.locator("#progress")).to_have_text(f"0 of {UNLABELLED} labelled")
    expect(page.locator("#image")).to_have_attribute("src", f"/v1/label/image/{order[0]}")
    expect(page.locator("#label")).to_have_value(queue["items"][0]["guess"])
    expect(page.locator("#label")).to_be_focused()
    expect(page.locator("#undo")).to_be_disabled()

    saves = [("111111", "111111.png"), ("222222", "222222.png"), ("111111", "111111_1.png")]
    sources = []
    for n, (label, _) in enumerate(saves, start=1):
        sources.append(_save(page, label, n))
    assert sources == order[:3], "the page must walk the queue in the server's order"
    expect(page.locator("#status")).to_have_text("saved 111111_1.png")
    expect(page.locator("#error")).to_have_text("")

    # on disk: the repeated label got _1 instead of overwriting, bytes are the source's
    saved = sorted(p.name for p in served.out_dir.iterdir())
    assert saved == sorted(name for _, name in saves), saved
    for (_, name), source in zip(saves, sources):
        assert (served.out_dir / name).read_bytes() == (served.label_dir / source).read_bytes()
    assert served.get_json("/v1/label/queue")["labelled"] == 3
    assert [i["file"] for i in served.get_json("/v1/label/queue")["items"]] == order[3:]

    # Escape skips: the next image is shown, nothing is written
    before = _shown_file(page)
    assert before == order[3]
    page.locator("#label").press("Escape")
    expect(page.locator("#image")).to_have_attribute("src", f"/v1/label/image/{order[4]}")
    expect(page.locator("#status")).to_have_text("skipped")
    expect(page.locator("#progress")).to_have_text(f"3 of {UNLABELLED} labelled")
    assert len(list(served.out_dir.iterdir())) == 3

    # Undo takes back the last save: the file goes, its image comes back to label
    page.locator("#undo").click()
    expect(page.locator("#progress")).to_have_text(f"2 of {UNLABELLED} labelled")
    expect(page.locator("#status")).to_have_text("took back 111111_1.png")
    assert not (served.out_dir / "111111_1.png").exists()
    assert (served.out_dir / "111111.png").exists()
    assert (served.out_dir / "222222.png").exists()
    expect(page.locator("#image")).to_have_attribute("src", f"/v1/label/image/{sources[2]}")
    assert served.get_json("/v1/label/queue")["labelled"] == 2


def test_two_tabs_saving_the_same_image_lose_nothing(browser, served):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        tabs = [context.new_page(), context.new_page()]
        first = served.get_json("/v1/label/queue")["items"][0]["file"]
        for tab in tabs:
            tab.goto(served.url + "/label")
            expect(tab.locator("#image")).to_have_attribute("src", f"/v1/label/image/{first}")
            tab.locator("#label").fill("333333")
        # both saves in flight at once: neither waits for the other's answer
        for tab in tabs:
            tab.locator("#label").press("Enter")
        for tab in tabs:
            expect(tab.locator("#status")).to_have_text(
                re.compile(r"^saved 333333(_1)?\.png$"))
            expect(tab.locator("#progress")).to_have_text(f"1 of {UNLABELLED} labelled")
            expect(tab.locator("#error")).to_have_text("")
        statuses = {tab.locator("#status").inner_text() for tab in tabs}
        assert statuses == {"saved 333333.png", "saved 333333_1.png"}
    finally:
        context.close()

    # every file in the folder (no leftover temporary files either), each a full copy
    assert sorted(p.name for p in served.out_dir.iterdir()) == ["333333.png", "333333_1.png"]
    source = (served.label_dir / first).read_bytes()
    for name in ("333333.png", "333333_1.png"):
        assert (served.out_dir / name).read_bytes() == source
    assert served.get_json("/v1/label/queue")["labelled"] == 1


def test_label_page_with_an_empty_queue_shows_no_broken_image(page, served, tmp_path):
    for path in served.label_dir.iterdir():
        path.unlink()
    app = build_app(models=[str(served.model)], threads=1, label_dir=str(served.label_dir),
                    labelled_dir=str(served.out_dir))
    with running_app(app) as url:
        page.goto(url + "/label")
        expect(page.locator("#guess")).to_have_text("Nothing left to label.")
        expect(page.locator("#image")).to_be_hidden()
        assert page.locator("#image").bounding_box() is None
        page.screenshot(path=str(tmp_path / "empty_label_page.png"), full_page=True)


def test_label_page_shows_the_captcha(page, served, tmp_path):
    page.goto(served.url + "/label")
    image = page.locator("#image")
    expect(image).to_be_visible()
    page.wait_for_function("document.getElementById('image').complete && "
                           "document.getElementById('image').naturalWidth > 0")
    box = image.bounding_box()
    assert box["height"] >= 100 and box["width"] >= 2 * 310 * 100 / 80 / 2
    shot = tmp_path / "label_image.png"
    image.screenshot(path=str(shot))
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.min() < 60 and pixels.max() > 180  # dark glyphs on a light page, not blank


def test_api_docs_work_with_the_network_off(page, served):
    """/docs loads Swagger UI from the package: with every request off this machine
    refused, the page still lists the API."""
    outside: list[str] = []

    def only_this_machine(route):
        if route.request.url.startswith(served.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_machine)
    page.goto(served.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("captchalab")
    expect(page.locator(".opblock-summary-path", has_text="/v1/recognize")).to_be_visible()
    assert outside == [], outside
