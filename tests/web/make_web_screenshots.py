"""Take the screenshots of ``docs/web.md`` in headless Chromium (not a test; run it by hand).

It segments a small batch made from the committed JSRT sample (PNG films, a MONOCHROME1 DICOM, an inverted film, a
lateral DICOM and a text file named ``.dcm``) with the given model, serves the review page on a free localhost
port, uploads the MONOCHROME1 DICOM and saves ``web_upload.png`` and ``web_batch.png``.

Usage::

    python tests/web/make_web_screenshots.py --model bundles/chest_xray_lung_segmentation/models/model.pt \\
        --out docs/figures
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample" / "jsrt30" / "images"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--force-device-scale-factor=1")


def make_batch(predictor, root: Path) -> Path:
    """Segment a small, varied batch into ``root/results``."""
    from pipeline.dicom import make_radiograph_dicom
    from pipeline.inference import BatchRunner

    inputs = root / "export"
    inputs.mkdir(parents=True)
    images = sorted(SAMPLE.glob("*.png"))
    for i, path in enumerate(images[:9]):
        Image.open(path).save(inputs / f"CXR_{i:03d}.png")
    film = np.asarray(Image.open(images[10]).convert("L"))
    make_radiograph_dicom(film, inputs / "CR_0001.dcm", photometric="MONOCHROME1", modality="CR", uid_seed="shot-1")
    make_radiograph_dicom(np.asarray(Image.open(images[11]).convert("L")), inputs / "DX_0002.dcm",
                          view_position="LL", uid_seed="shot-2")
    Image.fromarray(255 - np.asarray(Image.open(images[12]).convert("L"))).save(inputs / "CXR_inverted.png")
    half = np.asarray(Image.open(images[13]).convert("L")).copy()
    half[:, 128:] = 0  # a film with one side blanked out (collimation gone wrong)
    Image.fromarray(half).save(inputs / "CXR_blanked.png")
    (inputs / "worklist.dcm").write_text("Patient list exported by mistake\n")
    BatchRunner(predictor, root / "results", workers=0, writers=0, progress=False).run([inputs])
    return root / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint (model.pt) of the lung bundle")
    parser.add_argument("--out", default="docs/figures", type=Path)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from pipeline.cli.predict import parse_overrides
    from pipeline.dicom import make_radiograph_dicom
    from pipeline.inference import load_predictor
    from pipeline.web import create_app

    predictor = load_predictor(args.model, overrides=parse_overrides(args.override), device="cpu",
                               model_name="chest-xray-lung-seg")
    work = Path(tempfile.mkdtemp(prefix="xray-seg-shots-"))
    results = make_batch(predictor, work)
    upload = make_radiograph_dicom(np.asarray(Image.open(SAMPLE / "JPCLN008.png").convert("L")),
                                   work / "upload.dcm", photometric="MONOCHROME1", modality="CR", uid_seed="shot-up")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, results_dir=results), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={work / 'profile'}", "--window-size=1360,860"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 60)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(url + "/")
        driver.find_element(By.ID, "file-input").send_keys(str(upload))
        driver.find_element(By.ID, "submit-button").click()
        wait.until(lambda d: d.find_elements(By.ID, "viewer")
                   and d.find_element(By.ID, "viewer").get_attribute("data-mask-ready") == "1")
        driver.execute_script("const s = document.getElementById('opacity'); s.value = 45;"
                              "s.dispatchEvent(new Event('input'));")
        time.sleep(0.5)
        driver.save_screenshot(str(args.out / "web_upload.png"))
        driver.get(url + "/batch/case/0")
        wait.until(lambda d: d.find_element(By.ID, "viewer").get_attribute("data-ready") == "1")
        driver.find_element(By.ID, "decision-needs_correction").click()
        driver.find_element(By.ID, "review-comment").send_keys("right costophrenic angle cut off")
        driver.find_element(By.ID, "review-save").click()
        wait.until(lambda d: "saved=1" in d.current_url)
        wait.until(lambda d: d.find_element(By.ID, "viewer").get_attribute("data-ready") == "1")
        driver.find_element(By.CSS_SELECTOR, "body").send_keys("l")  # lung window
        driver.find_element(By.CSS_SELECTOR, "[data-tool='brush']").click()
        time.sleep(0.5)
        driver.save_screenshot(str(args.out / "web_case.png"))
        driver.get(url + "/batch")
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0);"))
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(1360, min(int(height) + 140, 2000))  # the whole list, errors and skipped included
        time.sleep(0.5)
        driver.save_screenshot(str(args.out / "web_batch.png"))
        driver.set_window_size(1360, 860)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        for page, name in (("/batch", "web_phone_batch.png"), ("/batch/case/0", "web_phone_case.png")):
            driver.get(url + page)
            time.sleep(1.5)
            driver.save_screenshot(str(args.out / name))
    finally:
        driver.quit()
        server.should_exit = True
    print(f"wrote web_upload.png, web_case.png, web_batch.png, web_phone_batch.png, web_phone_case.png in {args.out} "
          f"(work folder {work})")


if __name__ == "__main__":
    main()
