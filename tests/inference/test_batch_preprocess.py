"""The batch's fast preprocessing gives the Predictor's numbers (no train/inference skew), much faster."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.inference import FastPreprocess, Predictor
from pipeline.io import XRayImage
from pipeline.networks import get_network


@pytest.fixture(scope="module")
def predictors():
    net = get_network("basic_unet", features=(4, 4, 8, 16, 32, 4))
    return {mode: Predictor(net, image_size=64, intensity=mode, device="cpu") for mode in ("minmax", "percentile")}


@pytest.fixture(scope="module")
def fast(predictors):
    return {mode: FastPreprocess(p) for mode, p in predictors.items()}


@pytest.mark.parametrize("mode", ["minmax", "percentile"])
@pytest.mark.parametrize("shape", [(300, 250), (97, 301), (64, 64), (16, 16), (40, 200)])
def test_fast_preprocess_matches_reference(predictors, fast, mode, shape):
    predictor, fast = predictors[mode], fast[mode]
    assert fast.enabled
    rng = np.random.default_rng(sum(shape))
    image = XRayImage(rng.random(shape, dtype=np.float32) * 4095, "<test>", "array", None, (0.0, 4095.0))
    expected = torch.as_tensor(predictor.preprocess(image))
    got = fast(image)
    assert got.shape == expected.shape == (1, 64, 64)
    assert float((got - expected).abs().max()) < 1e-4


def test_fast_preprocess_falls_back_for_custom_predictors(predictors):
    class Custom(Predictor):
        def preprocess(self, image):  # a subclass with its own preprocessing is left alone
            return torch.zeros(1, self.image_size, self.image_size)

    base = predictors["minmax"]
    custom = Custom(base.network, image_size=64, device="cpu")
    fast = FastPreprocess(custom)
    assert not fast.enabled
    image = XRayImage(np.ones((80, 80), np.float32), "<test>", "array")
    assert float(fast(image).abs().sum()) == 0.0
