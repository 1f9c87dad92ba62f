"""The bundle learns from real pixels: a few epochs on the committed JSRT sample beat any fixed answer."""

from __future__ import annotations

import numpy as np
from PIL import Image

from test_lung_bundle import workflow
from xray_test_paths import LUNG_BUNDLE


def test_few_epochs_on_real_sample_reach_high_dice(tmp_path, sample_dir):
    """Also: the trained checkpoint runs in bf16 on a CPU that computes it natively, with fp32's masks."""
    wf = workflow(["common.yaml", "train.yaml"], tmp_path, run_id="training", image_size=64, max_epochs=12, batch_size=4,
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

    # the trained model as the batch command loads it: settings from the checkpoint, low precision checked on
    # real radiographs; bf16 where the CPU has it natively, and the masks of fp32 on held-out images
    from pipeline.inference import Predictor
    from pipeline.inference.acceleration import cpu_has_native_bf16

    checkpoint = tmp_path / "models" / "model.pt"
    fast = Predictor.from_bundle(LUNG_BUNDLE, checkpoint=checkpoint, device="cpu")
    exact = Predictor.from_bundle(LUNG_BUNDLE, checkpoint=checkpoint, device="cpu", amp=False)
    assert fast.image_size == 64 and exact.acceleration["chosen"] == "fp32"
    assert fast.acceleration["chosen"] == ("bf16" if cpu_has_native_bf16() else "fp32"), fast.acceleration
    for item in wf.parser.get_parsed_content("datalist")["test"]:
        a, b = fast.predict_file(item["image"]), exact.predict_file(item["image"])
        assert np.abs(a.prob - b.prob).mean() <= 0.01
        assert (a.mask == b.mask).mean() >= 0.995
