"""The real pages in headless Chromium (Debian's ``chromium`` + ``chromium-driver``) against a uvicorn server.

Outside CI the module skips when no browser is installed; under ``CI`` (any non-empty value) a missing browser fails,
so a CI image that lost its browser cannot pass silently. ``.ci/run`` installs it with
``apt-get install -y chromium chromium-driver``. ``XRAY_SEG_CHROMIUM`` / ``XRAY_SEG_CHROMEDRIVER`` name other binaries.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.web import create_app
from tests.web.conftest import serve_in_thread

BROWSER_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
# without these a sandbox-less, offline machine floods refused connections (component updates, sync, QUIC, ...)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT_S = 60


def _first(candidates: tuple[str, ...], name: str, env: str) -> str | None:
    """``$env`` when set (and only it), else the first executable candidate, else ``name`` on the PATH."""
    if os.environ.get(env):
        return os.environ[env] if os.access(os.environ[env], os.X_OK) else None
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    if _under_ci():
        pytest.fail(f"{reason}; under CI the browser tests must run (.ci/run installs chromium chromium-driver).")
    pytest.skip(f"{reason} (install with: apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    chromium = _first(BROWSER_CANDIDATES, "chromium", "XRAY_SEG_CHROMIUM")
    driver_path = _first(DRIVER_CANDIDATES, "chromedriver", "XRAY_SEG_CHROMEDRIVER")
    if chromium is None or driver_path is None:
        _unavailable("no Chromium browser or chromedriver found")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("the selenium package is not installed")
    profile = tempfile.mkdtemp(prefix="xray-seg-chromium-")
    downloads = Path(tempfile.mkdtemp(prefix="xray-seg-downloads-"))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver, downloads
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)


@pytest.fixture(scope="module")
def server(predictor, batch_dir, tmp_path_factory):
    """The application under uvicorn on a free localhost port, in a thread."""
    uploads = tmp_path_factory.mktemp("browser-uploads")
    with serve_in_thread(create_app(predictor, results_dir=batch_dir, upload_tmp_dir=uploads), WAIT_S) as base:
        yield {"url": base, "uploads": uploads}


def wait(driver, condition, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def image_loaded(driver, selector: str) -> bool:
    return bool(driver.execute_script(
        "const im = document.querySelector(arguments[0]); return !!im && im.complete && im.naturalWidth > 0;",
        selector))


def opacity(driver, selector: str) -> float:
    return float(driver.execute_script("return getComputedStyle(document.querySelector(arguments[0])).opacity;",
                                       selector))


def data_url_array(url: str, mode: str | None = None) -> np.ndarray:
    """The picture of a ``data:`` URL, converted to ``mode`` (e.g. ``RGBA`` for an indexed PNG with transparency)."""
    header, _, payload = url.partition(",")
    assert header.endswith(";base64"), header[:40]
    picture = Image.open(io.BytesIO(base64.b64decode(payload)))
    return np.asarray(picture.convert(mode) if mode else picture)


def upload(driver, base_url: str, path: Path) -> None:
    driver.get(base_url + "/")
    css(driver, "#file-input").send_keys(str(path))
    css(driver, "#submit-button").click()
    wait(driver, lambda d: d.find_elements("css selector", "#case, #error"))
    assert not driver.find_elements("css selector", "#error"), css(driver, "#error").text


def downloaded(folder: Path, name: str) -> Path:
    target = folder / name
    wait(None, lambda _: target.is_file() and not list(folder.glob("*.crdownload")) and target.stat().st_size > 0)
    return target


def test_upload_jsrt_png_shows_overlay_and_the_slider_sets_its_opacity(browser, server, jsrt_png):
    from selenium.webdriver.common.keys import Keys

    driver, _ = browser
    upload(driver, server["url"], jsrt_png)
    wait(driver, lambda d: image_loaded(d, "#xray") and css(d, "#viewer").get_attribute("data-mask-ready") == "1")
    assert css(driver, "#case-title").text == jsrt_png.name
    assert "tiny-test-unet" in css(driver, "#case-model").text
    assert "px" in css(driver, "#lung-area").text and css(driver, "#confidence").text
    assert image_loaded(driver, "#prob-layer") and image_loaded(driver, "#contour-layer")
    assert opacity(driver, "#mask-canvas") == pytest.approx(0.35)

    slider = css(driver, "#opacity")
    slider.send_keys(Keys.END)  # keyboard moves fire the same input events as a drag
    wait(driver, lambda d: opacity(d, "#mask-canvas") == pytest.approx(1.0))
    for _ in range(20):
        slider.send_keys(Keys.ARROW_LEFT)
    wait(driver, lambda d: opacity(d, "#mask-canvas") == pytest.approx(0.8))
    assert css(driver, "#opacity-value").text == "80%"
    slider.send_keys(Keys.HOME)
    wait(driver, lambda d: opacity(d, "#mask-canvas") == pytest.approx(0.0))
    assert list(server["uploads"].iterdir()) == []


def test_upload_monochrome1_dicom_and_download_its_seg(browser, server, mono1_dicom, jsrt_png):
    import highdicom as hd

    from pipeline.dicom import read_segmentation_mask

    driver, downloads = browser
    upload(driver, server["url"], mono1_dicom)
    wait(driver, lambda d: image_loaded(d, "#mask-layer"))
    shown = data_url_array(css(driver, "#xray").get_attribute("src")).astype(float)
    film = np.asarray(Image.open(jsrt_png).convert("L")).astype(float)
    assert np.corrcoef(shown.ravel(), film.ravel())[0, 1] > 0.95  # MONOCHROME1 displayed bright = dense
    assert "cm²" in css(driver, "#lung-area").text

    seg_link = css(driver, "#download-seg")
    seg_name = seg_link.get_attribute("download")
    seg_link.click()
    css(driver, "#download-mask_png").click()
    seg_path = downloaded(downloads, seg_name)
    mask_png = np.asarray(Image.open(downloaded(downloads, "chest_mono1_lung_mask.png"))) > 0
    seg = hd.seg.segread(str(seg_path))
    assert "not for clinical use" in seg.SeriesDescription
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"  # lung
    assert np.array_equal(read_segmentation_mask(seg_path) > 0, mask_png)
    displayed = data_url_array(css(driver, "#mask-layer").get_attribute("src"), "RGBA")[..., 3] > 0
    assert np.array_equal(displayed, mask_png)  # display size == original size for this 256² film


def test_batch_review_lists_the_flagged_case_first_and_opens_it(browser, server):
    from selenium.webdriver.support.ui import Select

    driver, _ = browser
    driver.get(server["url"] + "/batch")
    rows = driver.find_elements("css selector", "#batch-table tbody tr.case-row")
    assert len(rows) == 6
    first = rows[0]
    assert first.get_attribute("data-flags") == "components" and "z_inverted.png" in first.text
    assert [r.get_attribute("data-status") for r in rows] == ["ok"] * 4 + ["error", "skipped"]
    assert all(r.get_attribute("data-flags") == "" for r in rows[1:])
    wait(driver, lambda d: image_loaded(d, "#batch-table tbody tr.case-row img.thumb"))

    first.find_element("css selector", "a.case-link").click()
    wait(driver, lambda d: d.find_elements("css selector", "#case") and image_loaded(d, "#mask-layer")
         and css(d, "#viewer").get_attribute("data-ready") == "1")
    assert css(driver, "#case").get_attribute("data-origin") == "batch"
    assert css(driver, "#qc-flags").text.startswith("components")
    assert driver.find_elements("css selector", "#next-case")

    driver.get(server["url"] + "/batch")
    Select(css(driver, "#filter-status")).select_by_value("error")  # auto-submits
    wait(driver, lambda d: "status=error" in d.current_url)
    rows = driver.find_elements("css selector", "#batch-table tbody tr.case-row")
    assert [r.get_attribute("data-status") for r in rows] == ["error"]
    assert "not_dicom" in rows[0].text
