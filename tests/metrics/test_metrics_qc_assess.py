"""QC against a per-model reference: label-free scores, limits from validation, one-line reasons."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from pipeline.io import read_image, read_mask
from pipeline.metrics.qc import (
    assess,
    border_contact,
    outside_body,
    prediction_quality,
    qc_scores,
    tta_disagreement,
    uncertain_fraction,
)
from pipeline.metrics.qc_reference import QC_SCORES, build_qc_reference, check_reference
from xray_test_paths import SAMPLE_DIR


def _prob(mask: np.ndarray, sigma: float = 0.7) -> np.ndarray:
    return np.clip(ndimage.gaussian_filter(mask.astype(np.float64), sigma), 0.001, 0.999)[None]


@pytest.fixture(scope="module")
def sample() -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) of the committed 30-image sample, 4x downsampled (64 px)."""
    out = []
    for f in sorted((SAMPLE_DIR / "masks").glob("*.png")):
        m = read_mask(f) > 0
        img = np.asarray(read_image(SAMPLE_DIR / "images" / f.name).pixels, dtype=np.float64)
        out.append((img[::4, ::4], m[::4, ::4].astype(np.uint8)))
    return out


def test_reference_images_never_flag_and_held_out_ones_rarely(sample):
    rows = [qc_scores(_prob(m), m, image=img, tta_prob=_prob(m[:, ::-1])[:, :, ::-1]) for img, m in sample]
    ref = build_qc_reference(rows[:20])
    json.dumps(ref)  # small and plain: it travels in the model artifact
    assert ref["n_images"] == 20 and set(ref["scores"]) == set(QC_SCORES)
    assert all(check_reference(r, ref) == ([], []) for r in rows[:20])  # by construction
    held_out = [check_reference(r, ref)[0] for r in rows[20:]]
    assert sum(bool(f) for f in held_out) <= 2, held_out


def test_reasons_say_value_limit_and_what_validation_saw(sample):
    rows = [qc_scores(_prob(m), m) for _, m in sample[:10]]
    ref = build_qc_reference(rows)
    img, m = sample[0]
    blurred = _prob(m, sigma=4.0)  # a hesitant model: many pixels between 0.1 and 0.9
    q = assess(blurred, m, ref)
    assert "uncertain_fraction" in q["qc_flags"]
    reason = q["qc_reasons"][q["qc_flags"].index("uncertain_fraction")]
    hi, mx = ref["scores"]["uncertain_fraction"]["high"], ref["scores"]["uncertain_fraction"]["max"]
    assert reason == (f"uncertain pixels {100 * q['uncertain_fraction']:.1f} % > {100 * hi:.1f} % "
                      f"(at most {100 * mx:.1f} % on validation)")
    one_lung = m.copy()
    one_lung[:, : m.shape[1] // 2] = 0
    q = assess(_prob(one_lung), one_lung, ref)
    assert "lr_ratio" in q["qc_flags"] and any(r.startswith("left/right lung balance 0.00 <") for r in q["qc_reasons"])


def test_border_and_dark_background_scores():
    size = 64
    image = np.full((size, size), 0.6)
    image[:, :8] = image[:, -8:] = 0.0  # direct exposure beside the body
    inside = np.zeros((size, size), np.uint8)
    inside[15:50, 14:28] = inside[15:50, 36:50] = 1
    assert border_contact(inside) == 0.0 and outside_body(inside, image) == 0.0
    blob = inside.copy()
    blob[10:40, 0:8] = 1  # false positive on the dark strip, along the image edge
    assert border_contact(blob) > 0.05
    assert outside_body(blob, image) == pytest.approx(blob[:, :9].sum() / blob.sum(), abs=0.02)
    assert outside_body(np.zeros_like(inside), image) == 0.0


def test_uncertainty_and_flip_agreement():
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 4:14] = m[8:24, 18:28] = 1
    assert uncertain_fraction(np.full((1, 32, 32), 0.5)) == 1.0
    assert uncertain_fraction(_prob(m, 0.01)) == 0.0
    assert tta_disagreement(m, m[None].astype(float)) == 0.0
    shifted = np.roll(m, 4, axis=1)
    assert 0.1 < tta_disagreement(m, shifted[None].astype(float)) < 0.5


def test_without_reference_only_anatomy_and_empty_masks_flag():
    empty = np.zeros((32, 32), np.uint8)
    q = assess(np.full((1, 32, 32), 0.01), empty, None)
    assert q["qc_flags"][0] == "empty_mask" and q["qc_reasons"][0] == "no lung found"
    m = np.zeros((32, 32), np.uint8)
    m[6:26, 3:14] = m[6:26, 18:29] = 1
    q = assess(np.full((1, 32, 32), 0.5), m, {})  # maximally uncertain, but entropy is not judged without reference
    assert q["qc_flags"] == [] and q["uncertain_fraction"] == 1.0
    assert {"confidence", "qc_flags", "qc_reasons", "mean_entropy", "area_fraction", "lr_ratio"} <= set(q)


def test_prediction_quality_still_answers_for_the_batch_and_web():
    m = np.zeros((32, 32), np.float32)
    m[6:26, 3:14] = m[6:26, 18:29] = 1
    q = prediction_quality(_prob(m).astype(np.float32))
    assert {"confidence", "qc_flags", "mean_entropy", "uncertainty", "n_components", "area_fraction"} <= set(q)
