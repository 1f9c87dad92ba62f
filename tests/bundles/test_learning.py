"""The bundle learns from real pixels: a few epochs on the committed JSRT sample beat any fixed answer."""

from __future__ import annotations

import numpy as np
from PIL import Image

from test_lung_bundle import workflow


def test_few_epochs_on_real_sample_reach_high_dice(tmp_path, sample_dir):
    wf = workflow(["train.yaml"], tmp_path, run_id="training", image_size=64, max_epochs=12, batch_size=4,
                  learning_rate=0.002, network_kwargs={"features": [16, 16, 32, 64, 128, 16]},
                  augment={"flip_prob": 0.5, "affine_prob": 0.0, "elastic_prob": 0.0, "intensity_prob": 0.0})
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    best = evaluator.state.best_metric
    # the best fixed answer (every pixel lung) on the same validation images
    val = wf.parser.get_parsed_content("datalist")["validation"]
    fractions = [float((np.asarray(Image.open(item["label"])) > 127).mean()) for item in val]
    fixed = float(np.mean([2 * f / (1 + f) for f in fractions]))
    assert fixed < 0.65
    assert best >= 0.85, f"validation Dice {best:.3f} after 12 epochs"
