"""Fixtures of the web tests: tiny deterministic predictors, a MONOCHROME1 DICOM made from a JSRT film, and a real
batch output folder written by :class:`pipeline.inference.BatchRunner`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pipeline.dicom import make_radiograph_dicom
from pipeline.inference import BatchRunner, Predictor
from pipeline.networks import get_network

SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample" / "jsrt30" / "images"
TINY_FEATURES = (4, 4, 8, 16, 32, 4)


class TwoLungOracle(nn.Module):
    """A deterministic stand-in model: two confident lung ellipses for an upright film, one central blob (a failed
    segmentation that QC flags with ``components``) when the film is inverted (mean of the [-1, 1] input below 0)."""

    def __init__(self, size: int = 64) -> None:
        super().__init__()
        yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
        left = ((yy - 0.5) / 0.3) ** 2 + ((xx - 0.3) / 0.13) ** 2 <= 1
        right = ((yy - 0.5) / 0.3) ** 2 + ((xx - 0.7) / 0.13) ** 2 <= 1
        blob = ((yy - 0.5) / 0.3) ** 2 + ((xx - 0.5) / 0.2) ** 2 <= 1
        self.register_buffer("good", torch.where(left | right, 8.0, -8.0)[None])
        self.register_buffer("bad", torch.where(blob, 8.0, -8.0)[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upright = x.mean(dim=(1, 2, 3)) > 0
        return torch.where(upright[:, None, None, None], self.good, self.bad).expand(x.shape[0], 1, *x.shape[2:])


def tiny_unet_predictor() -> Predictor:
    """The tiny BasicUNet (seeded) at 64², on the CPU."""
    torch.manual_seed(0)
    network = get_network("basic_unet", features=TINY_FEATURES)
    return Predictor(network, image_size=64, device="cpu", model_name="tiny-test-unet", model_version="test-1")


@pytest.fixture(scope="session")
def predictor() -> Predictor:
    return tiny_unet_predictor()


@pytest.fixture(scope="session")
def jsrt_png() -> Path:
    return SAMPLE_IMAGES / "JPCLN008.png"


@pytest.fixture(scope="session")
def mono1_dicom(tmp_path_factory, jsrt_png) -> Path:
    """A 12-bit MONOCHROME1 DX made from the JSRT film (stored values inverted; 0.35 mm imager spacing)."""
    pixels = np.asarray(Image.open(jsrt_png).convert("L"))
    path = tmp_path_factory.mktemp("dicom") / "chest_mono1.dcm"
    return make_radiograph_dicom(pixels, path, photometric="MONOCHROME1", bits_stored=12, uid_seed="web-test-m1")


@pytest.fixture(scope="session")
def batch_dir(tmp_path_factory) -> Path:
    """A real ``xray-seg predict`` output folder: 3 upright films (2 PNG, 1 MONOCHROME1 DICOM) segmented cleanly, one
    inverted film (flagged, last in path order), a lateral DICOM (skipped) and a text file named ``.dcm`` (error)."""
    root = tmp_path_factory.mktemp("batch")
    inputs = root / "inputs"
    inputs.mkdir()
    films = [np.asarray(Image.open(SAMPLE_IMAGES / name).convert("L")) for name in
             ("JPCLN015.png", "JPCNN005.png", "JPCLN026.png", "JPCLN034.png", "JPCNN008.png")]
    Image.fromarray(films[0]).save(inputs / "a_film.png")
    Image.fromarray(films[1]).save(inputs / "b_film.png")
    make_radiograph_dicom(films[2], inputs / "c_mono1.dcm", photometric="MONOCHROME1", uid_seed="web-batch-c")
    make_radiograph_dicom(films[3], inputs / "d_lateral.dcm", view_position="LL", uid_seed="web-batch-d")
    (inputs / "e_notes.dcm").write_text("Patient list, not a DICOM file\n")
    Image.fromarray(255 - films[4]).save(inputs / "z_inverted.png")
    oracle = Predictor(TwoLungOracle(64), image_size=64, device="cpu", model_name="oracle", model_version="1")
    runner = BatchRunner(oracle, root / "out", outputs=("seg", "png", "overlay"), workers=0, writers=0,
                         progress=False)
    summary = runner.run([inputs])
    assert summary.counts == {"ok": 4, "skipped": 1, "error": 1}, summary.counts
    return root / "out"


@contextlib.contextmanager
def serve_in_thread(app, wait_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on a free 127.0.0.1 port in a thread; yields the base URL.

    uvicorn is started without its own logging configuration, so its records reach pytest's ``caplog``.
    """
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="info", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + wait_s
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
