"""The review web application through FastAPI's TestClient: uploads, limits, content checks, batch review, errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torch import nn

from pipeline.cli import build_parser
from pipeline.dicom import read_segmentation_mask
from pipeline.inference import Predictor
from pipeline.web import create_app, display_name

TRACE_MARKERS = ("Traceback", 'File "', "site-packages", str(Path(__file__).resolve().parents[2]), "upload.bin")


def decode_data_url(url: str) -> bytes:
    header, _, payload = url.partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header[:40]
    return base64.b64decode(payload)


def png_array(url: str, mode: str | None = None) -> np.ndarray:
    picture = Image.open(io.BytesIO(decode_data_url(url)))
    return np.asarray(picture.convert(mode) if mode else picture)


def assert_clean_error(response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    for marker in TRACE_MARKERS:
        assert marker not in response.text, f"{marker!r} leaked into a {status} answer"


@pytest.fixture(scope="module")
def upload_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(predictor, batch_dir, upload_root):
    app = create_app(predictor, results_dir=batch_dir, max_upload_mb=2, upload_tmp_dir=upload_root)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def test_upload_png_returns_overlay_and_stats(client, jsrt_png, upload_root):
    response = client.post("/api/predict", files={"file": ("chest.png", jsrt_png.read_bytes(), "image/png")})
    assert response.status_code == 200, response.text[:300]
    case = response.json()
    assert case["status"] == "ok" and case["format"] == "png" and (case["rows"], case["cols"]) == (256, 256)
    for key in ("image_url", "mask_url", "contour_url", "overlay_url", "probability_url"):
        assert case[key].startswith("data:image/png;base64,"), key
    # the 8-bit film is shown exactly as stored
    assert np.array_equal(png_array(case["image_url"]), np.asarray(Image.open(jsrt_png).convert("L")))
    downloads = {d["key"]: d for d in case["downloads"]}
    assert set(downloads) == {"mask_png", "overlay_png"}  # no SEG for a PNG input
    mask = png_array(downloads["mask_png"]["href"])
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    assert case["lung_area_px"] == int((mask > 0).sum())
    assert case["lung_area_cm2"] is None and case["spacing_mm"] is None  # a PNG states no spacing
    assert png_array(downloads["overlay_png"]["href"], "RGB").shape == (256, 256, 3)
    assert 0.5 <= case["confidence"] <= 1.0 and isinstance(case["flags"], list)
    assert (case["model_name"], case["model_version"]) == ("tiny-test-unet", "test-1")
    assert list(upload_root.iterdir()) == []  # the request's temporary folder is gone

    page = client.post("/predict", files={"file": ("chest.png", jsrt_png.read_bytes(), "image/png")},
                       headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    for marker in ('id="mask-layer"', 'id="opacity"', 'id="prob-layer"', 'id="download-mask_png"', "tiny-test-unet",
                   "pixel spacing unknown"):
        assert marker in page.text, marker


def test_monochrome1_dicom_upload_gives_display_polarity_cm2_and_seg(client, mono1_dicom, jsrt_png, tmp_path):
    response = client.post("/api/predict", files={"file": ("study", mono1_dicom.read_bytes(), "application/dicom")})
    assert response.status_code == 200, response.text[:300]
    case = response.json()
    assert case["format"] == "dicom" and "MONOCHROME1" in case["window"]
    shown = png_array(case["image_url"]).astype(float)
    film = np.asarray(Image.open(jsrt_png).convert("L")).astype(float)
    assert np.corrcoef(shown.ravel(), film.ravel())[0, 1] > 0.95  # inverted back to bright = dense
    assert case["spacing_mm"] == [0.35, 0.35]
    assert case["lung_area_cm2"] == pytest.approx(case["lung_area_px"] * 0.35 * 0.35 / 100)
    downloads = {d["key"]: d for d in case["downloads"]}
    assert downloads["seg"]["filename"].endswith(".dcm")
    assert downloads["seg"]["href"].startswith("data:application/dicom")
    seg_path = tmp_path / downloads["seg"]["filename"]
    seg_path.write_bytes(decode_data_url(downloads["seg"]["href"]))
    mask = png_array(downloads["mask_png"]["href"]) > 0
    assert np.array_equal(read_segmentation_mask(seg_path) > 0, mask)


def test_oversized_upload_refused_with_413(predictor, jsrt_png, tmp_path):
    uploads = tmp_path / "uploads"
    app = create_app(predictor, max_upload_mb=0.02, upload_tmp_dir=uploads)  # 20 kB; the film is ~50 kB
    with TestClient(app, base_url="http://127.0.0.1") as small:
        body = jsrt_png.read_bytes()
        api = small.post("/api/predict", files={"file": ("chest.png", body, "image/png")})
        assert_clean_error(api, 413)
        assert "larger than the limit of 0.02 MB" in api.json()["message"]
        page = small.post("/predict", files={"file": ("chest.png", body, "image/png")}, headers={"accept": "text/html"})
        assert_clean_error(page, 413)
        assert "File too large" in page.text and "0.02 MB" in page.text

        def chunks():  # no Content-Length: the limit must hold while the body streams in
            for _ in range(40):
                yield b"x" * 1024

        streamed = small.post("/api/predict", content=chunks(),
                              headers={"content-type": "multipart/form-data; boundary=zz"})
        assert_clean_error(streamed, 413)
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_text_file_named_dcm_refused_with_a_message(client, upload_root):
    response = client.post("/api/predict", files={"file": ("scan.dcm", b"Patient list, not a DICOM file\n",
                                                             "application/dicom")})
    assert_clean_error(response, 415)
    message = response.json()["message"]
    assert "not an image" in message and "content" in message and "PNG, JPEG" in message
    empty = client.post("/api/predict", files={"file": ("empty.dcm", b"", "application/dicom")})
    assert_clean_error(empty, 400)
    assert "empty" in empty.json()["message"]
    nothing = client.post("/api/predict", data={"note": "no file"})
    assert_clean_error(nothing, 400)
    assert "No file" in nothing.json()["message"]
    page = client.post("/predict", files={"file": ("scan.dcm", b"just text", "text/plain")},
                       headers={"accept": "text/html"})
    assert_clean_error(page, 415)
    assert 'id="error"' in page.text and "Unsupported file" in page.text
    assert list(upload_root.iterdir()) == []


def test_path_like_names_are_harmless(client, jsrt_png, upload_root, tmp_path):
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("..\\..\\Windows\\win.ini") == "win.ini"
    assert display_name("") == display_name("..") == "upload"
    victim = upload_root.parent / "victim.png"
    for name in ("../../etc/passwd", "../victim.png", "/etc/passwd", "..\\..\\victim.png", "<script>x</script>.png"):
        response = client.post("/predict", files={"file": (name, jsrt_png.read_bytes(), "image/png")},
                               headers={"accept": "text/html"})
        assert response.status_code == 200, (name, response.text[:200])
        assert "<script>x" not in response.text  # escaped, never markup
    assert not victim.exists() and list(upload_root.iterdir()) == []
    # nothing the client sends is a path on the server
    for url in ("/batch/files/0/..%2F..%2Fetc%2Fpasswd", "/batch/files/0/passwd", "/batch/case/-1",
                "/batch/case/999", "/batch/case/..%2F..%2Fetc", "/static/..%2F..%2Fapp.py"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert_clean_error(response, 404)
    invalid = client.get("/batch/case/abc")
    assert_clean_error(invalid, 422)
    assert "index" in invalid.json()["message"]


def test_batch_listing_puts_the_flagged_case_first(client, batch_dir):
    listing = client.get("/api/batch").json()
    rows = listing["rows"]
    assert listing["counts"] == {"ok": 4, "skipped": 1, "error": 1, "review": 1, "total": 6}
    assert rows[0]["name"] == "z_inverted.png" and rows[0]["qc_flags"] == ["components"]  # last in path order
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["error", "skipped"]
    assert rows[-2]["code"] == "not_dicom" and rows[-2]["reason"]
    assert rows[-1]["code"] == "lateral" and "lateral" in rows[-1]["reason"].lower()

    page = client.get("/batch", headers={"accept": "text/html"})
    assert page.status_code == 200
    first_row = page.text.split('class="case-row', 1)[1].split("</tr>", 1)[0]
    assert "z_inverted.png" in first_row and 'data-flags="components"' in first_row

    assert [r["status"] for r in client.get("/api/batch?status=error").json()["rows"]] == ["error"]
    assert [r["name"] for r in client.get("/api/batch?review=true").json()["rows"]] == ["z_inverted.png"]
    assert [r["name"] for r in client.get("/api/batch?q=LATERAL").json()["rows"]] == ["d_lateral.dcm"]
    assert "not a DICOM" in client.get("/batch?status=error").text  # errors listed with their reason


def test_batch_case_pages_and_files(client, batch_dir, tmp_path):
    rows = client.get("/api/batch").json()["rows"]
    flagged, dicom = rows[0], next(r for r in rows if r["name"] == "c_mono1.dcm")
    page = client.get(f"/batch/case/{flagged['index']}")
    assert page.status_code == 200 and 'data-flag="components"' in page.text and 'id="next-case"' in page.text
    assert 'id="mask-layer"' in page.text and "recomputed by tiny-test-unet" in page.text
    seg = client.get(f"/batch/files/{dicom['index']}/seg")
    assert seg.status_code == 200 and seg.headers["content-type"] == "application/dicom"
    (tmp_path / "seg.dcm").write_bytes(seg.content)
    stored = np.asarray(Image.open(io.BytesIO(client.get(f"/batch/files/{dicom['index']}/mask").content))) > 0
    assert np.array_equal(read_segmentation_mask(tmp_path / "seg.dcm") > 0, stored)
    assert client.get(f"/batch/files/{flagged['index']}/overlay").headers["content-type"] == "image/png"
    skipped = client.get(f"/batch/case/{rows[-1]['index']}")
    assert skipped.status_code == 200 and 'id="case-reason"' in skipped.text and "lateral" in skipped.text.lower()


class _Exploding(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("secret internal detail /opt/models/x.pt")


def test_no_stack_traces_in_error_responses(jsrt_png, tmp_path):
    broken = Predictor(_Exploding(), image_size=64, device="cpu")
    app = create_app(broken, upload_tmp_dir=tmp_path / "uploads")
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        for headers in ({"accept": "application/json"}, {"accept": "text/html"}):
            response = c.post("/predict", files={"file": ("chest.png", jsrt_png.read_bytes(), "image/png")},
                              headers=headers)
            assert_clean_error(response, 500)
            assert "secret internal detail" not in response.text and "went wrong" in response.text
        assert_clean_error(c.get("/batch"), 404)  # no batch folder given
        assert_clean_error(c.get("/predict"), 405)
        assert_clean_error(c.get("/nowhere", headers={"accept": "text/html"}), 404)
    assert list((tmp_path / "uploads").iterdir()) == []


def test_serve_command_binds_localhost_and_loads_the_checkpoint(tmp_path):
    from pipeline.cli.serve import build_app
    from pipeline.networks import get_network

    parser = build_parser()
    defaults = parser.parse_args(["serve", "--model", "m.pt"])
    assert defaults.host == "127.0.0.1" and defaults.results is None
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save(get_network("basic_unet", features=(4, 4, 8, 16, 32, 4)).state_dict(), checkpoint)
    args = parser.parse_args(["serve", "--model", str(checkpoint), "--override", "image_size=64", "--override",
                              "network_kwargs={'features': [4, 4, 8, 16, 32, 4]}", "--max-upload-mb", "5"])
    with TestClient(build_app(args), base_url="http://127.0.0.1") as c:
        health = c.get("/api/health").json()
        assert health["model_version"].startswith("sha256:") and health["batch"] is False
        assert "up to 5 MB" in c.get("/").text
    with pytest.raises(ValueError):
        build_app(parser.parse_args(["serve"]))
