"""The report handler on a real SupervisedEvaluator run: cases, ids and spacing from the image metadata."""

from __future__ import annotations

import csv

import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine
from monai.transforms import Resize

from pipeline.postprocessing import postprocessing_transforms
from pipeline.reporting import EvaluationReportHandler


def _image(i: int, spacing: tuple[float, float] | None) -> MetaTensor:
    s = spacing or (1.0, 1.0)
    nan = float("nan")
    meta = {"filename_or_obj": f"case{i}.png", "pixel_spacing": list(spacing) if spacing else [nan, nan]}
    img = MetaTensor(torch.rand(1, 32, 32), affine=torch.diag(torch.tensor([s[0], s[1], 1.0, 1.0])), meta=meta)
    return Resize((16, 16))(img)  # like the bundle's preprocessing: spacing doubles


def test_handler_writes_report_from_evaluator(tmp_path):
    torch.manual_seed(0)
    items = []
    for i, spacing in enumerate([(0.5, 0.5), None]):
        img = _image(i, spacing)
        items.append({"image": img, "label": (img > 0.5).float()})
    loader = [list_data_collate(items)]
    handler = EvaluationReportHandler(
        tmp_path / "report", ["lung"], variants=[{"name": "raw"}, {"name": "cleanup", "cleanup": True}],
        report_kwargs={"figures": False},
    )
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=torch.nn.Conv2d(1, 1, 3, padding=1),
        postprocessing=postprocessing_transforms(1),
        key_val_metric={"val_mean_dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        val_handlers=[handler],
    )
    evaluator.run()
    assert [c.case_id for c in handler.cases] == ["case0", "case1"]
    assert handler.cases[0].spacing == pytest.approx((1.0, 1.0))  # 0.5 mm at 32 px -> 1 mm at 16 px
    assert handler.cases[1].spacing is None
    assert handler.cases[0].prob.shape == (1, 16, 16) and handler.cases[0].label.shape == (16, 16)
    assert set(handler.result.variants) == {"raw", "cleanup"}
    rows = list(csv.DictReader((tmp_path / "report" / "raw" / "per_image.csv").open()))
    assert sorted(r["case_id"] for r in rows) == ["case0", "case1"]
