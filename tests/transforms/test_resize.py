"""The shared anti-aliased resize gives MONAI's numbers (no train/inference skew) with memory linear in the size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureTyped, Resize, Resized

from pipeline.io import XRayImage
from pipeline.transforms import AntiAliasResize, AntiAliasResized, preprocessing, to_metatensor
from pipeline.transforms.presets import _intensity
from pipeline.transforms.resize import antialias_sigmas, resize_operator

TOLERANCE = 1e-5  # on the [-1, 1] scale


def _image(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A random image on the [-1, 1] scale (channel first)."""
    return torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32) * 2 - 1)


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((1, 300, 250), (64, 64)),  # downsampling, both axes, non-integer factors
        ((1, 97, 301), (64, 64)),  # odd input, one axis up, one down
        ((1, 16, 16), (64, 64)),  # upsampling only (no smoothing)
        ((1, 40, 200), (64, 64)),
        ((1, 65, 63), (64, 64)),  # factor ~1: the smallest sigmas
        ((1, 64, 64), (64, 64)),  # same size: unchanged
        ((1, 7, 9), (5, 30)),  # tiny, odd, non-square output
        ((1, 752, 94), (16, 2)),  # 47x on both axes
        ((1, 1024, 1024), (256, 256)),
        ((1, 2048, 2048), (256, 256)),
        ((3, 120, 90), (33, 45)),  # several channels
    ],
)
def test_equals_monai_resized(shape, size):
    image = _image(shape, seed=sum(shape))
    expected = Resized(keys="image", spatial_size=size, mode="bilinear", anti_aliasing=True)({"image": image})["image"]
    got = AntiAliasResized(keys="image", spatial_size=size)({"image": image})["image"]
    assert got.shape == expected.shape == (shape[0], *size)
    assert got.dtype == torch.float32
    assert float((torch.as_tensor(got) - torch.as_tensor(expected)).abs().max()) < TOLERANCE


def test_metadata_and_inverse_follow_monai():
    image = MetaTensor(_image((1, 300, 200)), affine=torch.diag(torch.tensor([0.5, 0.25, 1.0, 1.0], dtype=torch.float64)))
    expected = Resize((64, 64), mode="bilinear", anti_aliasing=True)(image.clone())
    resize = AntiAliasResize((64, 64))
    got = resize(image.clone())
    assert isinstance(got, MetaTensor)
    assert torch.allclose(got.affine, expected.affine)
    assert got.applied_operations[-1]["orig_size"] == (300, 200)
    back = resize.inverse(got)
    assert tuple(back.shape) == (1, 300, 200)
    assert torch.allclose(back.affine, image.affine)
    assert not back.applied_operations


def test_minus_one_keeps_an_axis_and_wrong_rank_is_refused():
    image = _image((1, 50, 80))
    assert AntiAliasResize((25, -1))(image).shape == (1, 25, 80)
    with pytest.raises(ValueError, match="one size per spatial axis"):
        AntiAliasResize((25, 25, 25))(image)


def test_operators_are_banded_and_linear_in_size():
    """Never an n x n matrix: a 60 000-pixel axis (a dense operator would need 14 GB) builds a thin band."""
    n_in, n_out = 60_000, 256
    sigma = antialias_sigmas((n_in,), (n_out,))[0]
    op = resize_operator(n_in, n_out, sigma)
    assert op.layout == torch.sparse_csr and tuple(op.shape) == (n_out, n_in)
    tail = int(max(sigma * 4.0, 0.5) + 0.5)
    assert op._nnz() <= n_out * 2 * (2 * tail + 1)
    assert op._nnz() < 4 * n_in  # each input pixel reaches a handful of outputs
    rows = op.to_dense().sum(dim=1)  # (256, 60000) is small; each row sums to ~1 away from the borders
    assert torch.allclose(rows[8:-8], torch.ones(n_out - 16), atol=1e-4)


def test_operators_are_cached_per_size():
    resize_operator.cache_clear()
    resize = AntiAliasResize(32)
    for _ in range(3):
        resize(_image((1, 90, 70)))
    info = resize_operator.cache_info()
    assert info.misses == 2 and info.hits == 4
    assert info.maxsize is not None  # bounded


@pytest.mark.parametrize("intensity", ["minmax", "percentile"])
@pytest.mark.parametrize("shape", [(300, 250), (97, 301), (64, 64), (16, 16), (40, 200)])
def test_preprocessing_equals_the_monai_chain(intensity, shape):
    """The shared chain (what training and the Predictor use) against the chain built from MONAI's Resized."""
    rng = np.random.default_rng(sum(shape))
    image = XRayImage(rng.random(shape, dtype=np.float32) * 4095, "<test>", "array", None, (0.0, 4095.0))
    reference = Compose(
        [
            Resized(keys="image", spatial_size=(64, 64), mode="bilinear", anti_aliasing=True),
            _intensity("image", intensity),
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=True),
        ]
    )
    chain = Compose(preprocessing(64, intensity, with_label=False, load=False))
    expected = reference({"image": to_metatensor(image)})["image"]
    got = chain({"image": to_metatensor(image)})["image"]
    assert got.shape == expected.shape == (1, 64, 64)
    assert float((got - expected).abs().max()) < TOLERANCE


def test_preprocessing_keeps_labels_nearest():
    """Labels are resized by nearest neighbour (never smoothed): values stay class indices."""
    rng = np.random.default_rng(3)
    label = torch.from_numpy((rng.random((1, 130, 170)) > 0.5).astype(np.float32))
    data = {"image": _image((1, 130, 170)), "label": label}
    out = Compose(preprocessing(32, load=False))(data)
    assert out["image"].shape == out["label"].shape == (1, 32, 32)
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
