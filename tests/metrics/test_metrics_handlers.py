"""Validation handlers: values on a hand-made batch, config instantiation, and a real SupervisedEvaluator run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine

from pipeline.metrics import PROB_KEY, validation_metrics
from pipeline.postprocessing import postprocessing_transforms


def _run(handlers, outputs):
    engine = Engine(lambda e, batch: batch)
    for name, handler in handlers.items():
        handler.attach(engine, name)
    return engine.run([outputs], max_epochs=1).metrics


def _square(r0, c0, n=3, size=9):
    m = torch.zeros(1, size, size)
    m[0, r0 : r0 + n, c0 : c0 + n] = 1
    return m


def test_binary_handlers_by_hand():
    label, pred = _square(2, 2), _square(2, 3)  # 9 px each, 6 shared
    prob = torch.full_like(label, 0.9)
    item = {"pred": pred, "label": label, PROB_KEY: prob}
    m = _run(validation_metrics(1), [item])
    assert set(m) == {"val_iou", "val_f1", "val_hd95", "val_ece"}
    assert m["val_iou"] == pytest.approx(6 / 12)
    assert m["val_f1"] == pytest.approx(12 / 18)
    assert m["val_hd95"] == pytest.approx(1.0)
    # one bin at 0.9, observed frequency 9 / 81
    assert m["val_ece"] == pytest.approx(0.9 - 9 / 81, abs=1e-5)


def test_multiclass_handlers_exclude_background():
    lab = torch.zeros(9, 9, dtype=torch.long)
    lab[2:5, 2:5] = 1
    lab[6:8, 6:8] = 2
    onehot = torch.nn.functional.one_hot(lab, 3).permute(2, 0, 1).float()
    item = {"pred": onehot, "label": onehot, PROB_KEY: onehot}
    m = _run(validation_metrics(3, hd95=False), [item])
    assert set(m) == {"val_iou", "val_f1", "val_ece"}
    assert m["val_iou"] == pytest.approx(1.0)
    assert m["val_f1"] == pytest.approx(1.0)
    assert m["val_ece"] == pytest.approx(0.0, abs=1e-6)


def test_config_instantiation():
    parser = ConfigParser({"metrics": {"_target_": "pipeline.metrics.validation_metrics", "num_classes": 1}})
    metrics = parser.get_parsed_content("metrics")
    assert set(metrics) == {"val_iou", "val_f1", "val_hd95", "val_ece"}


def test_supervised_evaluator_with_postprocessing_chain():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    images = torch.rand(2, 1, 16, 16)
    labels = (images > 0.5).float()
    loader = [{"image": images, "label": labels}]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=net,
        postprocessing=postprocessing_transforms(1, cleanup={"min_area_fraction": 0.0}),
        # MONAI attaches additional_metrics only together with a key metric
        key_val_metric={"val_mean_dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        additional_metrics=validation_metrics(1),
    )
    evaluator.run()
    metrics = evaluator.state.metrics
    assert {"val_mean_dice", "val_iou", "val_f1", "val_ece"} <= set(metrics)
    assert all(np.isfinite(metrics[k]) for k in ("val_iou", "val_f1", "val_ece"))
