"""Training ends calibrated: the bundle's training alone stores a calibration and a QC reference in model.pt, and the
flags fire on failures the model has never seen while staying quiet on its own validation images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from pipeline.data.synthetic import generate_sample
from pipeline.metrics.qc import assess
from pipeline.model import load_model
from pipeline.postprocessing.calibration import apply_calibration
from pipeline.postprocessing.cleanup import clean_lung_mask
from pipeline.transforms import preprocessing
from xray_test_paths import SAMPLE_DIR, train_lung_bundle

SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """A small BasicUNet trained on the committed 30-image JSRT sample through the bundle's real train.yaml."""
    tmp = tmp_path_factory.mktemp("calibrated")
    train_lung_bundle(
        tmp, image_size=SIZE, max_epochs=10, network_kwargs={"features": [8, 8, 16, 32, 64, 8]}, learning_rate=1e-3,
        early_stop_patience=0,
        cpu_bf16=False,  # float32 on every CPU: the same model wherever the suite runs
        split_fractions=[0.5, 0.3, 0.2],  # 9 validation images (the default split has 4): a reference worth the name
    )
    datalist = json.loads((tmp / "eval" / "datalist.json").read_text())
    return tmp / "models" / "model.pt", datalist


def _predict(model_path: Path, images: list[np.ndarray] | list[str]) -> list[dict]:
    """Calibrated prediction + QC of each image, from the artifact alone (what the Predictor does)."""
    artifact, weights = load_model(model_path)
    net = artifact.build_network()
    net.load_state_dict(weights)
    net.eval()
    chain = Compose(preprocessing(artifact.image_size, artifact.intensity, artifact.num_classes, with_label=False,
                                  load=not isinstance(images[0], np.ndarray)))
    out = []
    for im in images:
        item = {"image": torch.as_tensor(im, dtype=torch.float32)[None] if isinstance(im, np.ndarray) else im}
        x = torch.as_tensor(chain(item)["image"]).float()[None]
        with torch.no_grad():
            prob = apply_calibration(net(x), artifact.calibration)[0]
            tta = apply_calibration(net(x.flip(-1)).flip(-1), artifact.calibration)[0]
        mask = (prob[0] > artifact.threshold).numpy()
        mask = (clean_lung_mask(mask) if artifact.cleanup else mask).astype(np.uint8)  # as the Predictor does
        out.append(assess(prob, mask, artifact.qc_reference, tta_prob=tta, image_small=x[0]))
    return out


def test_training_alone_stores_calibration_and_qc_reference(trained):
    model_path, datalist = trained
    artifact, _ = load_model(model_path)
    assert artifact.calibration["method"] == "isotonic" and len(artifact.calibration["x"]) >= 2
    ref = artifact.qc_reference
    assert ref["split"] == "validation" and ref["n_images"] == len(datalist["validation"])
    assert {"uncertain_fraction", "area_fraction", "lr_ratio", "border_contact", "outside_body",
            "tta_disagreement"} <= set(ref["scores"])
    assert artifact.revision >= 2  # a new revision of the file the checkpoint saver wrote
    report = json.loads(model_path.with_name("calibration.json").read_text())
    assert report["after"]["ece"] <= report["before"]["ece"] + 1e-9
    json.dumps(artifact.to_dict())  # the whole record stays plain JSON


def test_validation_images_are_not_flagged_by_construction(trained):
    model_path, datalist = trained
    quality = _predict(model_path, [d["image"] for d in datalist["validation"]])
    assert [q["qc_flags"] for q in quality] == [[] for _ in quality]


def test_unseen_in_domain_images_are_rarely_flagged(trained):
    model_path, datalist = trained
    quality = _predict(model_path, [d["image"] for d in datalist["test"] + datalist["training"][:6]])
    flagged = [q for q in quality if q["qc_flags"]]
    assert len(flagged) <= 0.35 * len(quality), [q["qc_reasons"] for q in flagged]


def _sample_image(name: str = "JPCLN015") -> np.ndarray:
    from pipeline.io import read_image

    return np.asarray(read_image(SAMPLE_DIR / "images" / f"{name}.png").pixels, dtype=np.float32)


@pytest.mark.parametrize("failure", ["inverted", "hand", "one_lung"])
def test_flags_fire_on_synthetic_failures(trained, failure):
    model_path, _ = trained
    image = _sample_image()
    if failure == "inverted":
        image = image.max() - image
    elif failure == "hand":
        image = generate_sample(3, "hand", size=256)[0].astype(np.float32)
    else:
        image = image[:, : image.shape[1] // 2]  # the patient's right lung only
    quality = _predict(model_path, [image])[0]
    assert quality["qc_flags"], f"{failure}: no flag ({quality})"
    assert len(quality["qc_reasons"]) == len(quality["qc_flags"])
    assert all(isinstance(r, str) and r for r in quality["qc_reasons"])
