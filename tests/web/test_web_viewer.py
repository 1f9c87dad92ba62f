"""The review page as a radiologist uses it (issue 18), in headless Chromium against uvicorn on 127.0.0.1.

Window/level on the full bit depth of a 12-bit DICOM (canvas pixel values), 1:1 zoom at native pixels, a brush
stroke saved as the corrected mask at the original size plus a SEG revision that highdicom reads back, review
decisions that survive a server restart, and a phone-size batch page without horizontal overflow.
"""

from __future__ import annotations

import csv
import http.client
import io
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from pipeline.dicom import make_radiograph_dicom
from pipeline.web import create_app
from tests.web.conftest import serve_in_thread
from tests.web.test_web_browser import browser, css, upload, wait  # noqa: F401 - the browser fixture

ROWS, COLS = 480, 640  # larger than the fitted view at 1400 x 1000, so 1:1 enlarges


def canvas_pixels(driver, selector: str, points: list[tuple[int, int]]) -> list[int]:
    """Red channel of the canvas at (row, col) points."""
    return driver.execute_script(
        "const c = document.querySelector(arguments[0]).getContext('2d');"
        "return arguments[1].map(p => c.getImageData(p[1], p[0], 1, 1).data[0]);", selector, points)


def viewer_attr(driver, name: str) -> str | None:
    return css(driver, "#viewer").get_attribute(name)


@pytest.fixture(scope="module")
def ramp_dicom(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 12-bit MONOCHROME2 DX whose stored values run 0..4095 along the columns (every row the same)."""
    values = np.tile(np.rint(np.linspace(0, 4095, COLS)).astype(np.uint16), (ROWS, 1))
    path = tmp_path_factory.mktemp("ramp") / "ramp12.dcm"
    make_radiograph_dicom(values, path, bits_stored=12, raw=True, uid_seed="viewer-ramp",
                          extra={"SeriesDescription": "PA chest ramp", "StudyDate": "20240131"})
    return path, values


@pytest.fixture(scope="module")
def review_dir(batch_dir, tmp_path_factory) -> Path:
    """A private copy of the batch folder (decisions and corrections are written into it)."""
    target = tmp_path_factory.mktemp("review") / "out"
    shutil.copytree(batch_dir, target)
    return target


@pytest.fixture(scope="module")
def review_server(predictor, review_dir):
    with serve_in_thread(create_app(predictor, results_dir=review_dir)) as base:
        yield base


def test_window_level_uses_the_full_12_bits_and_1_to_1_shows_native_pixels(browser, review_server, ramp_dicom):
    driver, _ = browser
    path, values = ramp_dicom
    upload(driver, review_server, path)
    wait(driver, lambda d: viewer_attr(d, "data-ready") == "1")
    context = css(driver, "#study-context").text
    assert "SYN-0001" in context and "2024-01-31" in context and "DX" in context and "PA chest ramp" in context

    # a narrow window of 40 values around 2000: 12-bit steps of ~6.4 values become distinct grey levels
    center, width = css(driver, "#wl-center"), css(driver, "#wl-width")
    for field, value in ((center, "2000"), (width, "40")):
        field.clear()
        field.send_keys(value + "\t")
    wait(driver, lambda d: viewer_attr(d, "data-window") == "1980,2020,0")
    cols = [c for c in range(COLS) if 1975 <= values[0, c] <= 2025]
    shown = canvas_pixels(driver, "#xray-canvas", [(ROWS // 2, c) for c in cols])
    expected = [int(np.clip(np.rint((values[0, c] - 1980) / 40 * 255), 0, 255)) for c in cols]
    assert shown == expected and len(set(shown)) >= 5

    css(driver, "#invert").click()
    wait(driver, lambda d: viewer_attr(d, "data-window") == "1980,2020,1")
    assert canvas_pixels(driver, "#xray-canvas", [(ROWS // 2, cols[1])])[0] == 255 - expected[1]
    css(driver, "#invert").click()

    driver.find_element("css selector", "body").send_keys("a")  # full-range preset
    wait(driver, lambda d: viewer_attr(d, "data-window") == "0,4095,0")
    assert canvas_pixels(driver, "#xray-canvas", [(0, 0), (0, COLS - 1)]) == [0, 255]

    css(driver, "#zoom-native").click()
    dpr = driver.execute_script("return window.devicePixelRatio")
    rect = driver.execute_script("return document.querySelector('#xray-canvas').getBoundingClientRect().toJSON()")
    assert rect["width"] * dpr == pytest.approx(COLS, abs=0.5) and rect["height"] * dpr == pytest.approx(ROWS, abs=0.5)
    assert driver.execute_script("const c = document.querySelector('#xray-canvas'); return [c.width, c.height]") == \
        [COLS, ROWS]
    mask_rect = driver.execute_script("return document.querySelector('#mask-canvas').getBoundingClientRect().toJSON()")
    assert mask_rect == rect  # the overlay follows the same view


def test_brush_stroke_is_saved_as_corrected_mask_and_seg_revision(browser, review_server, review_dir):
    import highdicom as hd
    import pydicom
    from selenium.webdriver.common.action_chains import ActionChains

    driver, _ = browser
    rows = [r for r in _manifest(review_dir) if r["path"].endswith("c_mono1.dcm")]
    index = rows[0]["_index"]
    driver.get(f"{review_server}/batch/case/{index}")
    wait(driver, lambda d: viewer_attr(d, "data-mask-ready") == "1" and viewer_attr(d, "data-ready") == "1")
    before = np.asarray(Image.open(review_dir / rows[0]["mask_png"])) > 0
    height, width = before.shape

    css(driver, "[data-tool='brush']").click()
    size = css(driver, "#brush-size")
    size.clear()
    size.send_keys("12\t")
    canvas = css(driver, "#xray-canvas")
    rect = driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()", canvas)
    # a horizontal stroke near the top of the film, where the model found no lung
    y_img, x0_img, x1_img = 12, 40, 200
    assert not before[y_img, x0_img:x1_img].any()

    def offset(x: float, y: float) -> tuple[int, int]:  # from the canvas centre, in CSS pixels
        return (round(x * rect["width"] / width - rect["width"] / 2),
                round(y * rect["height"] / height - rect["height"] / 2))

    chain = ActionChains(driver)
    chain.move_to_element_with_offset(canvas, *offset(x0_img, y_img)).click_and_hold()
    for x in range(x0_img, x1_img + 1, 20):
        chain.move_to_element_with_offset(canvas, *offset(x, y_img))
    chain.release().perform()
    wait(driver, lambda d: viewer_attr(d, "data-dirty") == "1")
    css(driver, "#save-correction").click()
    wait(driver, lambda d: viewer_attr(d, "data-saved") == "1")

    uid = rows[0]["sop_instance_uid"]
    corrected = np.asarray(Image.open(review_dir / "corrections" / "masks" / f"{uid}.png"))
    assert corrected.shape == (height, width) and set(np.unique(corrected)) <= {0, 255}
    changed = (corrected > 0) != before
    assert (corrected[y_img, x0_img + 8 : x1_img - 8] > 0).all()  # the stroke, at the film's resolution
    ys, xs = np.nonzero(changed)
    assert abs(int(ys.mean()) - y_img) <= 3 and xs.min() >= x0_img - 12 and xs.max() <= x1_img + 12
    image = np.asarray(Image.open(review_dir / "corrections" / "images" / f"{uid}.png"))
    assert image.shape == (height, width) and image.dtype == np.uint16  # the 12-bit film, losslessly

    seg_path = review_dir / "corrections" / "seg" / f"{uid}_r1.dcm"
    seg = hd.seg.segread(str(seg_path))
    batch_seg = pydicom.dcmread(review_dir / rows[0]["seg"], stop_before_pixels=True)
    assert seg.SOPInstanceUID != batch_seg.SOPInstanceUID
    assert seg.SeriesInstanceUID == batch_seg.SeriesInstanceUID
    assert "corrected by reviewer" in seg.ContentDescription
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    assert referenced == uid
    from pipeline.dicom import read_segmentation_mask

    assert np.array_equal(read_segmentation_mask(seg_path) > 0, corrected > 0)

    driver.get(f"{review_server}/batch")
    row = css(driver, f"#batch-table tr.case-row[data-index='{index}']")
    assert row.get_attribute("data-corrected") == "1" and "corrected" in row.text


def test_decisions_survive_a_restart_and_export_as_csv(browser, predictor, review_dir):
    from selenium.webdriver.support.ui import Select

    driver, _ = browser
    rows = _manifest(review_dir)
    index = next(r["_index"] for r in rows if r["path"].endswith("z_inverted.png"))
    with serve_in_thread(create_app(predictor, results_dir=review_dir)) as base:
        driver.get(f"{base}/batch/case/{index}")
        css(driver, "#decision-reject").click()
        css(driver, "#review-comment").send_keys("mask is one blob across the mediastinum")
        css(driver, "#review-save").click()
        wait(driver, lambda d: "saved=1" in d.current_url)
        assert css(driver, "#case-decision").text == "rejected"
    before = (review_dir / "manifest.csv").read_bytes() if (review_dir / "manifest.csv").exists() else b""
    with serve_in_thread(create_app(predictor, results_dir=review_dir)) as base:  # a new server process state
        driver.get(f"{base}/batch")
        row = css(driver, f"#batch-table tr.case-row[data-index='{index}']")
        assert row.get_attribute("data-decision") == "reject" and "mediastinum" in row.text
        Select(css(driver, "#filter-decision")).select_by_value("reject")
        wait(driver, lambda d: "decision=reject" in d.current_url)
        listed = driver.find_elements("css selector", "#batch-table tbody tr.case-row")
        assert [r.get_attribute("data-index") for r in listed] == [str(index)]
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", "/batch/reviews.csv")
        response = conn.getresponse()
        assert response.status == 200 and "attachment" in response.getheader("content-disposition")
        exported = list(csv.DictReader(io.StringIO(response.read().decode())))
        conn.close()
    mine = [r for r in exported if r["index"] == str(index)]
    assert mine and mine[0]["decision"] == "reject" and "mediastinum" in mine[0]["comment"]
    if before:
        assert (review_dir / "manifest.csv").read_bytes() == before  # the manifest is never edited


def test_phone_size_batch_page_has_no_horizontal_overflow(browser, review_server):
    driver, _ = browser
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True})
    try:
        for path in ("/batch", "/batch/case/0", "/"):
            driver.get(review_server + path)
            widths = driver.execute_script(
                "return [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
            assert max(widths[:2]) <= widths[2] == 390, (path, widths)
        driver.get(review_server + "/batch")
        first_header = css(driver, "#batch-table thead th").text
        assert first_header == "File"  # key columns first; the rest scrolls inside the table's box
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _manifest(folder: Path) -> list[dict]:
    import json

    jsonl = folder / "manifest.jsonl"
    if jsonl.is_file():
        rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    else:
        with open(folder / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["_index"] = i
    return rows
