#!/usr/bin/env python
"""Speed of the one inference road through each entry point, at the sizes users feed it.

Times, with the same model file:

* ``Predictor.predict_file`` on a 256² PNG and on a 2048² 16-bit DICOM (median of ``--repeats`` calls after a
  warm-up): a large film should cost little more than a small one, since the network sees the same square;
* the batch runner (``xray-seg predict`` with its default outputs: SEG, mask PNG, overlay) on ``--n`` copies of the
  2048² film: seconds per image (wall clock / images) in the same process;
* a web upload of the 2048² DICOM (``POST /api/predict`` to ``xray-seg serve``'s application under uvicorn on
  127.0.0.1): median request time.

Example (the ``make train`` checkpoint)::

    python scripts/benchmark_entry_points.py --checkpoint bundles/chest_xray_lung_segmentation/models/model.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.runtime import configure_openmp

configure_openmp()  # as the xray-seg commands do, before torch loads: time what users run

import torch  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="model.pt (with its model artifact)")
    parser.add_argument("--size", type=int, default=2048, help="side of the large DICOM film (default 2048)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per measurement (default 10)")
    parser.add_argument("--n", type=int, default=16, help="films in the batch run (default 16)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return parser.parse_args(argv)


def _median_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up (first batch also chooses the inference path)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_upload_seconds(checkpoint: Path, device: str, film: Path, repeats: int) -> float:
    """Median time of ``POST /api/predict`` with ``film`` against a real uvicorn server on 127.0.0.1."""
    import requests
    import uvicorn

    from pipeline.inference import load_predictor
    from pipeline.web import create_app

    port = _free_port()
    app = create_app(load_predictor(checkpoint, device=device))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    data = film.read_bytes()
    url = f"http://127.0.0.1:{port}/api/predict"

    def upload() -> None:
        response = requests.post(url, files={"file": (film.name, data, "application/dicom")}, timeout=120)
        response.raise_for_status()

    try:
        return _median_seconds(upload, repeats)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements; prints a Markdown table; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("highdicom").setLevel(logging.ERROR)
    args = parse_args(argv)
    from pipeline.dicom import FixtureVariant, make_fixture_set
    from pipeline.inference import BatchRunner, Predictor
    from pipeline.io import read_image
    from pipeline.io.writers import write_png

    work = Path(tempfile.mkdtemp(prefix="bench_entry_"))
    films = make_fixture_set(work / "films", size=args.size, variants=[
        FixtureVariant(f"film{i:03d}", {"bits_stored": 16, "photometric": "MONOCHROME1" if i % 2 else "MONOCHROME2"},
                       source=i) for i in range(args.n)])
    film = next(iter(films.values()))
    small = work / "small.png"
    big = read_image(film).pixels
    step = max(1, big.shape[0] // 256)
    write_png(small, (255 * (big[::step, ::step][:256, :256] - big.min()) / (big.max() - big.min())).astype("uint8"))

    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    results: dict[str, Any] = {
        "predict_file_png_256_s": _median_seconds(lambda: predictor.predict_file(small), args.repeats),
        "predict_file_dicom_s": _median_seconds(lambda: predictor.predict_file(film), args.repeats),
        "path": predictor.acceleration.get("chosen", "fp32"),
    }
    runner = BatchRunner(predictor, work / "batch", progress=False, resume=False)  # default outputs and workers
    t0 = time.perf_counter()
    summary = runner.run([work / "films"])
    results["batch_s_per_image"] = (time.perf_counter() - t0) / max(1, summary.n_segmented)
    results["batch_images_per_second"] = summary.images_per_second
    results["web_upload_dicom_s"] = web_upload_seconds(args.checkpoint, args.device, film, args.repeats)
    results["ratio_dicom_to_png"] = results["predict_file_dicom_s"] / results["predict_file_png_256_s"]
    results["ratio_predict_file_to_batch"] = results["predict_file_dicom_s"] / results["batch_s_per_image"]

    machine = f"{platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__} " \
              f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.1f}"
    print(f"machine: {machine}")
    print(f"model: {args.checkpoint} ({predictor.artifact.describe()}), path {results['path']}")
    print("| measurement | seconds |")
    print("|---|---|")
    print(f"| predict_file, 256² PNG | {results['predict_file_png_256_s']:.3f} |")
    print(f"| predict_file, {args.size}² 16-bit DICOM | {results['predict_file_dicom_s']:.3f} "
          f"({results['ratio_dicom_to_png']:.1f}x the PNG; target <= 5x) |")
    print(f"| batch runner per image, default outputs, {summary.n_segmented} films | {results['batch_s_per_image']:.3f} "
          f"(predict_file / batch = {results['ratio_predict_file_to_batch']:.2f}; target <= 1.5) |")
    print(f"| web upload POST /api/predict, {args.size}² DICOM (median) | {results['web_upload_dicom_s']:.3f} "
          "(target <= 0.6 s) |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
