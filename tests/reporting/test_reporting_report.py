"""The evaluation report on cases built from the committed JSRT sample: files, tables, figures, variants."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from scipy import ndimage

import pipeline
from pipeline.io import read_image, read_mask
from pipeline.reporting import EvaluationCase, ReportVariant, write_evaluation_report

SAMPLE = Path(pipeline.__file__).parent / "data" / "sample" / "jsrt30"
CASE_IDS = ("JPCLN015", "JPCLN026", "JPCNN005", "JPCNN044")


def _cases():
    """Simulated sigmoid outputs: a blurred, slightly shifted ground truth, one case with a speck and a hole."""
    rng = np.random.default_rng(0)
    for i, cid in enumerate(CASE_IDS):
        # halved to 128 x 128 to keep the test fast
        label = (read_mask(SAMPLE / "masks" / f"{cid}.png")[::2, ::2] > 0).astype(np.int64)
        image = read_image(SAMPLE / "images" / f"{cid}.png").pixels[::2, ::2]
        z = (ndimage.gaussian_filter(ndimage.shift(label.astype(float), (i, -i), order=0), 1) - 0.5) * 12
        z += rng.normal(0, 0.5, z.shape)
        if i == 1:
            z[3:8, 60:65] = 8  # speck between the lungs
            z[60:65, 30:35] = -8  # hole in a lung
        prob = (1 / (1 + np.exp(-z)))[None].astype(np.float32)
        yield EvaluationCase(cid, image, prob, label, (1.4, 1.4) if i % 2 else None)


def _strict_json(path: Path):
    def no_nan(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=no_nan)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    variants = [ReportVariant("raw"), ReportVariant("cleanup", cleanup=True, temperature=1.5)]
    return write_evaluation_report(_cases(), out, ["lung"], variants=variants, gallery_per_group=1, dpi=60)


def test_comparison_files(report):
    assert set(report.variants) == {"raw", "cleanup"}
    for name in ("comparison.csv", "comparison.json", "index.html"):
        assert (report.out_dir / name).stat().st_size > 200
    rows = list(csv.DictReader((report.out_dir / "comparison.csv").open()))
    assert [r["variant"] for r in rows] == ["raw", "cleanup"]
    # cleanup removes the speck and fills the hole: the case with defects improves
    raw, clean = (report.variants[v].rows for v in ("raw", "cleanup"))
    dice = {v: {r["case_id"]: r["dice"] for r in rs} for v, rs in (("raw", raw), ("cleanup", clean))}
    assert dice["cleanup"]["JPCLN026"] > dice["raw"]["JPCLN026"]
    assert "raw/index.html" in (report.out_dir / "index.html").read_text()


@pytest.mark.parametrize("variant", ["raw", "cleanup"])
def test_variant_files(report, variant):
    res = report.variants[variant]
    d = res.out_dir
    assert d == report.out_dir / variant
    rows = list(csv.DictReader((d / "per_image.csv").open()))
    assert len(rows) == len(CASE_IDS)
    flagged = [int(r["n_flags"]) > 0 for r in rows]
    assert flagged == sorted(flagged, reverse=True)  # flagged images first
    assert {"dice", "hd95_px", "hd95_mm", "ece", "uncertainty_score", "flags"} <= set(rows[0])
    summary = _strict_json(d / "summary.json")
    assert summary["n_images"] == len(CASE_IDS) and summary["headline_class"] == "lung"
    assert summary["variant"]["name"] == variant
    assert {"per_image", "pooled", "calibration", "roc", "roc_curves", "reliability", "qc"} <= set(summary)
    assert summary["roc"]["auc"]["lung"] > 0.95
    assert "spearman_rho" in summary["uncertainty_dice_spearman"]
    assert summary["per_image"]["hd95_mm"]["n"] == 2  # only the cases with a spacing
    for name in ("reliability_diagram", "confidence_histogram", "roc_curves", "confusion_matrix",
                 "dice_histogram", "uncertainty_vs_dice", "overlay_gallery"):
        png = d / f"{name}.png"
        img = imread(png)
        assert img.shape[0] > 150 and img.shape[1] > 200, name  # at 60 dpi
        assert img[..., :3].std() > 0.05, f"{name} looks blank"
        assert f"{name}.png" in (d / "index.html").read_text()


def test_single_variant_writes_into_out_dir(tmp_path):
    res = write_evaluation_report(list(_cases())[:2], tmp_path, ["lung"], figures=False)
    assert res.variants == {}
    assert (tmp_path / "per_image.csv").exists() and (tmp_path / "index.html").exists()
    assert not list(tmp_path.glob("*.png"))
    assert res.summary["variant"] == {"name": "default", "temperature": None, "thresholds": None, "cleanup": False}


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="no cases"):
        write_evaluation_report([], tmp_path)
    with pytest.raises(ValueError, match="unique"):
        write_evaluation_report([], tmp_path, variants=[ReportVariant("a"), ReportVariant("a")])
    with pytest.raises(ValueError, match="one size"):
        EvaluationCase("x", np.zeros((4, 4)), np.zeros((1, 4, 5)), np.zeros((4, 4), int))
