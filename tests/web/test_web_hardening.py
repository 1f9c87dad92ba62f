"""Issue 14, review page items 12-16, against a real uvicorn server on 127.0.0.1 with hostile files made here.

12 pixel limit before decoding and 503 beyond capacity; 13 Host allow-list and cross-origin POST refusal; 14 security
headers on 500 answers on a kept-alive connection; 15 quiet logs (no UIDs at INFO, a client disconnect is no error);
16 a clean error for a bad ``--port`` and for a busy port (nothing says "serving" first).
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pipeline.dicom import make_radiograph_dicom
from pipeline.inference import Predictor
from pipeline.web import create_app
from tests.web.conftest import serve_in_thread

REPO = Path(__file__).resolve().parents[2]
SECURITY = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy")


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def request(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, dict, bytes]:
    parts = urlsplit(base)
    own = conn is None
    conn = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        if own:
            conn.close()


def upload(base: str, name: str, data: bytes, headers: dict | None = None) -> tuple[int, dict, bytes]:
    body, ctype = multipart(name, data)
    return request(base, "POST", "/api/predict", body, {"Content-Type": ctype, **(headers or {})})


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SlowNet(nn.Module):
    """A real network that takes ``seconds`` per call (holds the upload slot)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.conv(x)


class BrokenNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("weights went missing")


@pytest.fixture(scope="module")
def live(predictor, batch_dir):
    app = create_app(predictor, results_dir=batch_dir, max_upload_mb=8)
    with serve_in_thread(app) as base:
        yield base


# ---- 12: pixel limit before decoding, bounded concurrency ------------------------------------------------------------
def test_12000_square_png_is_refused_before_decoding(live, tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buffer, format="PNG", compress_level=9)
    data = buffer.getvalue()
    assert len(data) < 400_000  # a tiny file claiming 144 Mpx
    before = max_rss_mb()
    t0 = time.perf_counter()
    status, headers, body = upload(live, "huge.png", data)
    assert status == 413, body[:300]
    assert b"Mpx" in body and b"Nothing was decoded" in body
    assert time.perf_counter() - t0 < 10
    assert max_rss_mb() - before < 120, "the server decoded the 144 Mpx image (or more) despite the limit"
    assert all(h in headers for h in SECURITY)


def test_deflated_10000_by_10500_dicom_is_refused_before_decoding(live, tmp_path):
    path = make_radiograph_dicom(np.zeros((10000, 10500), np.uint16), tmp_path / "big.dcm", transfer_syntax="deflate",
                                 raw=True, uid_seed="hostile-deflate")
    data = path.read_bytes()
    assert len(data) < 1_000_000
    before = max_rss_mb()
    status, _, body = upload(live, "big.dcm", data)
    assert status == 413, body[:300]
    assert b"64 Mpx" in body or b"Mpx" in body
    assert max_rss_mb() - before < 120, "the 105 Mpx DICOM was decoded despite the limit"


def test_uploads_beyond_capacity_get_503_not_an_out_of_memory_kill(jsrt_png):
    slow = Predictor(SlowNet(3.0), image_size=32, device="cpu", model_name="slow", model_version="1")
    app = create_app(slow, upload_slots=1, upload_wait_s=0.3)
    data = jsrt_png.read_bytes()
    with serve_in_thread(app) as base:
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(result=upload(base, "a.png", data)))
        worker.start()
        time.sleep(1.0)  # the first upload holds the only slot inside the slow network
        status, headers, body = upload(base, "b.png", data)
        worker.join(timeout=60)
        assert status == 503, body[:300]
        assert headers.get("retry-after") == "5" and b"busy" in body
        assert first["result"][0] == 200
        assert upload(base, "c.png", data)[0] == 200  # the slot is free again


# ---- 13: Host allow-list, cross-origin POST --------------------------------------------------------------------------
def test_only_the_allowed_host_names_are_answered(live):
    port = urlsplit(live).port
    for host in ("evil.example", f"rebind.attacker.test:{port}", "127.0.0.1.nip.io"):
        status, headers, body = request(live, "GET", "/api/batch", headers={"Host": host})
        assert status == 400, host
        assert b"a_film" not in body and all(h in headers for h in SECURITY)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST"):
        status, _, body = request(live, "GET", "/api/batch", headers={"Host": host})
        assert status == 200 and b"a_film.png" in body, host


def test_extra_host_names_only_when_allowed(predictor):
    app = create_app(predictor, allowed_hosts=["127.0.0.1", "review.hospital.internal"])
    with serve_in_thread(app) as base:
        assert request(base, "GET", "/api/health", headers={"Host": "review.hospital.internal:8000"})[0] == 200
        assert request(base, "GET", "/api/health", headers={"Host": "localhost"})[0] == 400


def test_cross_origin_post_is_refused(live, jsrt_png):
    data = jsrt_png.read_bytes()
    port = urlsplit(live).port
    for hostile in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": f"http://localhost:{port}"},  # another origin than the Host the page came from
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site", "Origin": "null"}):
        status, headers, body = upload(live, "x.png", data, hostile)
        assert status == 403, (hostile, body[:200])
        assert all(h in headers for h in SECURITY)
    status, _, _ = upload(live, "x.png", data, {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})
    assert status == 200
    # the page's own form under Referrer-Policy: no-referrer (Chromium sends Origin: null and says same-origin)
    assert upload(live, "x.png", data, {"Origin": "null", "Sec-Fetch-Site": "same-origin"})[0] == 200


# ---- 14: 500 answers keep the security headers and the connection ---------------------------------------------------
def test_a_500_answer_has_the_security_headers_and_keeps_the_connection(jsrt_png, caplog):
    broken = Predictor(BrokenNet(), image_size=32, device="cpu", model_name="broken", model_version="1")
    app = create_app(broken)
    body, ctype = multipart("chest.png", jsrt_png.read_bytes())
    with serve_in_thread(app) as base, caplog.at_level(logging.INFO):
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        status, headers, text = request(base, "POST", "/api/predict", body,
                                        {"Content-Type": ctype, "Accept": "application/json"}, conn=conn)
        assert status == 500
        assert all(h in headers for h in SECURITY), headers
        assert headers.get("cache-control") == "no-store" and headers.get("connection", "") != "close"
        assert b"Traceback" not in text and b"weights went missing" not in text
        status, _, _ = request(base, "GET", "/api/health", conn=conn)  # same connection, still open
        assert status == 200
        conn.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None, [r.getMessage() for r in errors]


# ---- 15: quiet logs ----------------------------------------------------------------------------------------------------
def test_logs_hold_no_identifiers_and_a_disconnect_is_not_an_error(live, mono1_dicom, caplog):
    import pydicom

    header = pydicom.dcmread(mono1_dicom, stop_before_pixels=True)
    secrets = [str(header.SOPInstanceUID), str(header.StudyInstanceUID), str(header.PatientID),
               str(header.PatientName)]
    parts = urlsplit(live)
    with caplog.at_level(logging.DEBUG):
        status, _, body = upload(live, "chest.dcm", mono1_dicom.read_bytes())
        assert status == 200, body[:200]
        # a client that sends half an upload and goes away
        data, ctype = multipart("half.png", os.urandom(400_000))
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.sendall((f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{parts.port}\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:100_000])
        time.sleep(0.5)
        sock.close()
        time.sleep(1.0)
    info = [r for r in caplog.records if r.levelno >= logging.INFO]
    text = "\n".join(r.getMessage() for r in info)
    for secret in secrets:
        assert secret not in text, "an identifier reached the log at INFO"
    assert not [r for r in info if r.name.startswith("highdicom")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], text
    assert "Traceback" not in caplog.text


# ---- 16: --port -----------------------------------------------------------------------------------------------------
def serve_command(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)


def test_bad_port_and_busy_port_give_one_clear_line(batch_dir):
    bad = serve_command("--results", str(batch_dir), "--port", "99999")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "99999 is not a port number" in bad.stderr

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        busy = serve_command("--results", str(batch_dir), "--port", str(taken.getsockname()[1]))
    finally:
        taken.close()
    assert busy.returncode == 1
    output = busy.stdout + busy.stderr
    assert "Traceback" not in output and "serving on" not in output
    assert "already in use" in output and "--port" in output


def test_an_image_beyond_the_memory_budget_is_refused_before_decoding(predictor, jsrt_png, tmp_path):
    """With 50 MB for uploads, a 2000² film (about 360 MB at 90 bytes per pixel) gets 413, a 256² film passes."""
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((2000, 2000), np.uint8)).save(big)
    app = create_app(predictor, upload_memory_mb=50)
    with serve_in_thread(app) as base:
        status, _, body = upload(base, "big.png", big.read_bytes())
        assert status == 413 and b"GB" in body, body[:300]
        assert upload(base, "small.png", jsrt_png.read_bytes())[0] == 200
