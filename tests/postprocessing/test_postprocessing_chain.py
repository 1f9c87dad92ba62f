"""The configurable post-processing chain produces what the validation handlers expect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.postprocessing import postprocessing_transforms


def test_binary_chain_with_cleanup_and_temperature():
    logits = torch.full((1, 32, 32), -6.0)
    logits[0, 4:28, 3:14] = 6.0
    logits[0, 4:28, 18:29] = 6.0
    logits[0, 1:3, 1:3] = 6.0  # speck
    logits[0, 10:12, 6:8] = -6.0  # hole
    chain = postprocessing_transforms(1, temperature=2.0, cleanup={"min_area_fraction": 0.01})
    out = chain({"pred": logits, "label": torch.zeros(1, 32, 32)})
    assert set(out) == {"pred", "label", "prob"}
    assert out["pred"].shape == (1, 32, 32) and out["prob"].shape == (1, 32, 32)
    torch.testing.assert_close(torch.as_tensor(out["prob"][0, 0, 0]), torch.sigmoid(torch.tensor(-3.0)))
    assert out["pred"][0, 1, 1] == 0 and out["pred"][0, 10, 6] == 1


def test_multiclass_chain_onehots_pred_and_label():
    logits = torch.randn(3, 8, 8)
    label = torch.randint(0, 3, (1, 8, 8))
    out = postprocessing_transforms(3, thresholds=[None, 0.9, None])({"pred": logits, "label": label})
    assert out["pred"].shape == out["label"].shape == out["prob"].shape == (3, 8, 8)
    np.testing.assert_allclose(out["pred"].sum(0), 1.0)
    np.testing.assert_allclose(out["prob"].sum(0), 1.0, atol=1e-5)


def test_chain_from_bundle_config():
    config = {
        "postprocessing": {
            "_target_": "pipeline.postprocessing.postprocessing_transforms",
            "num_classes": 1,
            "cleanup": True,
            "temperature": None,
        }
    }
    chain = ConfigParser(config).get_parsed_content("postprocessing")
    out = chain({"pred": torch.zeros(1, 16, 16), "label": torch.zeros(1, 16, 16)})
    assert out["prob"].shape == (1, 16, 16)


def test_cleanup_of_multiclass_output_needs_lung_label():
    with pytest.raises(ValueError, match="lung_label"):
        postprocessing_transforms(3, cleanup=True)
    chain = postprocessing_transforms(3, cleanup={"lung_label": 2})
    out = chain({"pred": torch.randn(3, 16, 16), "label": torch.zeros(1, 16, 16)})
    assert out["pred"].shape == (3, 16, 16)
