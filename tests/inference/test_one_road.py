"""One road: the same file gives the same mask through every entry point (Predictor, batch, web, bundle)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.dicom.synthesize import FixtureVariant, make_fixture_set
from pipeline.inference import BatchRunner, Predictor, load_predictor
from pipeline.model import ModelArtifact, save_model
from xray_test_paths import LUNG_BUNDLE, SAMPLE_DIR, TINY_BASIC_UNET


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny untrained network, thresholded at its median probability on a radiograph: masks neither empty nor full."""
    tmp = tmp_path_factory.mktemp("one_road")
    artifact = ModelArtifact(network_kwargs=TINY_BASIC_UNET, image_size=64)
    torch.manual_seed(3)
    network = artifact.build_network()
    probe = Predictor(network, artifact, device="cpu", amp=False).predict_file(SAMPLE_DIR / "images" / "JPCLN008.png")
    median = float(np.median(probe.prob_small.numpy()))
    return save_model(tmp / "model.pt", network, artifact.replace(threshold=median)), tmp


@pytest.fixture(scope="module")
def inputs(model_file):
    _, tmp = model_file
    folder = tmp / "in"
    variants = [FixtureVariant("cr_mono1_12bit", {"photometric": "MONOCHROME1", "bits_stored": 12, "modality": "CR"}),
                FixtureVariant("dx_mono2_16bit_rle", {"bits_stored": 16, "transfer_syntax": "rle"}, source=1)]
    paths = make_fixture_set(folder, size=300, variants=variants)
    png = folder / "chest.png"
    png.write_bytes((SAMPLE_DIR / "images" / "JPCLN008.png").read_bytes())
    return {**paths, "png": png}


def _png(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_every_entry_point_gives_the_same_mask(model_file, inputs, tmp_path):
    path, _ = model_file
    # fp32 everywhere: the road is under test here, not the bf16 choice (checked in tests/engines)
    predictor = Predictor.from_checkpoint(path, device="cpu", amp=False)
    reference = {name: predictor.predict_file(p).mask for name, p in inputs.items()}
    assert all(0 < m.mean() < 1 for m in reference.values()), "a degenerate mask would prove nothing"

    # batch command (xray-seg predict): DataLoader workers decode, masks named by UID
    summary = BatchRunner(load_predictor(path, device="cpu", amp=False), tmp_path / "batch", outputs=("png",), workers=0,
                          progress=False).run([inputs["png"].parent])
    by_path = {r["path"]: r for r in summary.rows}
    for name, p in inputs.items():
        row = by_path[str(p)]
        assert row["status"] == "ok", row
        batch_mask = np.asarray(Image.open(tmp_path / "batch" / row["mask_png"])) > 0
        np.testing.assert_array_equal(batch_mask, reference[name].astype(bool), err_msg=f"batch: {name}")

    # web upload
    from fastapi.testclient import TestClient

    from pipeline.web import create_app

    app = create_app(load_predictor(path, device="cpu", amp=False), upload_tmp_dir=tmp_path / "up")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for name, p in inputs.items():
            response = client.post("/api/predict", files={"file": (p.name, p.read_bytes(), "application/octet-stream")})
            assert response.status_code == 200, response.text[:300]
            downloads = {d["key"]: d for d in response.json()["downloads"]}
            web_mask = _png(downloads["mask_png"]["href"]) > 0
            np.testing.assert_array_equal(web_mask, reference[name].astype(bool), err_msg=f"web: {name}")

    # the bundle's inferring (inference config alone builds the Predictor from the model file)
    from monai.bundle import ConfigWorkflow

    configs = LUNG_BUNDLE / "configs"
    out = tmp_path / "bundle"
    wf = ConfigWorkflow(config_file=[str(configs / "train.yaml"), str(configs / "inference.yaml")],
                        meta_file=str(configs / "metadata.json"), run_id="inferring", workflow_type=None,
                        bundle_root=str(LUNG_BUNDLE), checkpoint=str(path), input_dir=str(inputs["png"].parent),
                        output_dir=str(out), device="$torch.device('cpu')", inference_amp=False)
    wf.initialize()
    wf.run()
    wf.finalize()
    for name, p in inputs.items():
        bundle_mask = np.asarray(Image.open(out / f"{p.stem}_mask.png")) > 0
        np.testing.assert_array_equal(bundle_mask, reference[name].astype(bool), err_msg=f"bundle: {name}")
