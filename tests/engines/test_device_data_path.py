"""The device data path: batched device augmentation is the same family as the CPU chain, and the bundle trains on it.

The CPU chain (``pipeline.transforms.augmentation``, per image, MONAI transforms) and the device chain
(``pipeline.transforms.device_augmentation``, per batch) are run on the same inputs with fixed seeds and compared
statistically: label/image alignment, displacement magnitudes (tracked with coordinate images), flip rate and
intensity statistics. Then ``common.yaml`` + ``train.yaml`` run with ``data_path: gpu`` (on the CPU here), alone and under torchrun.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Compose

from xray_test_paths import LUNG_BUNDLE, SAMPLE_DIR, TINY_BASIC_UNET
from pipeline.data.device_cache import DeviceCacheLoader
from pipeline.engines import DetachOutputd, DevicePrepareBatch, resolve_data_path
from pipeline.transforms import augmentation, device_augmentation, preprocessing

CONFIGS = LUNG_BUNDLE / "configs"
SIZE = 64
NO_INTENSITY = {"intensity_prob": 0.0, "noise_std": 0.0}


def _cpu_batch(data: dict[str, torch.Tensor], n: int, seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    """``n`` draws of the CPU chain on one channel-first sample, stacked."""
    chain = Compose(augmentation(SIZE, with_label="label" in data, **kwargs))
    chain.set_random_state(seed)
    outs = [chain({k: MetaTensor(v.clone()) for k, v in data.items()}) for _ in range(n)]
    return {k: torch.stack([torch.as_tensor(o[k]) for o in outs]) for k in data}


def _device_batch(data: dict[str, torch.Tensor], n: int, seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    """``n`` draws of the device chain: the sample repeated into one batch."""
    chain = device_augmentation(SIZE, with_label="label" in data, seed=seed, **kwargs)
    return chain({k: v.expand(n, *v.shape).clone() for k, v in data.items()})


def _smooth_pattern() -> torch.Tensor:
    """A smooth ``(1, S, S)`` image in [-1, 1] with curved level sets."""
    y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    img = torch.sin(2 * np.pi * (1.3 * x + 0.4 * y**2)) * torch.cos(2 * np.pi * (0.8 * y - 0.3 * x))
    return (img / img.abs().max())[None]


def _coordinates() -> torch.Tensor:
    """``(2, S, S)``: each pixel holds its own (row, column); after a warp it holds where it was sampled from."""
    rows, cols = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                                indexing="ij")
    return torch.stack([rows, cols])


def _displacement(warped: torch.Tensor) -> torch.Tensor:
    """Per-pixel displacement magnitude (pixels) of a batch of warped coordinate images."""
    return (warped - _coordinates()).norm(dim=1)


# ---- statistics of the two chains ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["cpu", "device"])
def test_label_stays_aligned_with_the_image(path):
    """The label is a threshold of the image; after augmentation it still is, except at boundary pixels."""
    image = _smooth_pattern()
    data = {"image": image, "label": (image > 0.1).float()}
    geometry = dict(affine_prob=1.0, elastic_prob=1.0, rotate_degrees=15.0, **NO_INTENSITY)
    out = (_cpu_batch if path == "cpu" else _device_batch)(data, 32, **geometry)
    label, relabelled = out["label"] > 0.5, out["image"] > 0.1
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}  # nearest: still a mask
    # boundary band: pixels within 2 of a label edge (resampling twice on the CPU path may move an edge by ~1 px)
    lf = label.float()
    band = (F.max_pool2d(lf, 5, 1, 2) - (-F.max_pool2d(-lf, 5, 1, 2))) > 0
    mismatch = label != relabelled
    assert mismatch[~band].float().mean() < 1e-3
    assert mismatch.float().mean() < 0.05
    assert not torch.equal(out["label"][0], out["label"][1])  # every image got its own draw


@pytest.mark.parametrize(
    "case, settings",
    [
        ("affine", dict(affine_prob=1.0, elastic_prob=0.0)),
        ("elastic", dict(affine_prob=0.0, elastic_prob=1.0)),
    ],
)
def test_displacement_magnitudes_match(case, settings):
    """Tracked pixel displacements of affine and elastic warps: same mean and percentiles on both paths."""
    kwargs = dict(flip_prob=0.0, **NO_INTENSITY, **settings)
    data = {"image": _coordinates()}
    cpu = _displacement(_cpu_batch(data, 96, **kwargs)["image"]).numpy()
    dev = _displacement(_device_batch(data, 96, **kwargs)["image"]).numpy()
    assert cpu.mean() > 0.5  # the warps do move pixels (elastic: ~1.5 px, affine: ~3.5 px at 64²)
    for stat in (np.mean, lambda a: np.percentile(a, 50), lambda a: np.percentile(a, 90),
                 lambda a: np.percentile(a, 99)):
        assert abs(stat(dev) - stat(cpu)) <= 0.12 * stat(cpu), case
    # spread across images too (the magnitude is drawn per image)
    per_cpu, per_dev = cpu.mean(axis=(1, 2)), dev.mean(axis=(1, 2))
    assert abs(per_dev.std() - per_cpu.std()) <= 0.25 * per_cpu.std(), case


def test_default_geometry_moves_the_same_share_of_images():
    """With the bundle's probabilities (affine 0.5, elastic 0.3) both paths leave ~35 % of images in place."""
    data = {"image": _coordinates()}
    kwargs = dict(flip_prob=0.0, **NO_INTENSITY)
    moved = {}
    for name, run in (("cpu", _cpu_batch), ("device", _device_batch)):
        per_image = _displacement(run(data, 160, **kwargs)["image"]).mean(dim=(1, 2))
        moved[name] = (per_image > 0.05).float().mean().item()
    assert abs(moved["cpu"] - 0.65) < 0.08 and abs(moved["device"] - 0.65) < 0.08, moved


@pytest.mark.parametrize("path", ["cpu", "device"])
def test_flip_probability_is_one_half(path):
    ramp = torch.linspace(-1, 1, SIZE).expand(1, SIZE, SIZE).contiguous()
    out = (_cpu_batch if path == "cpu" else _device_batch)(
        {"image": ramp}, 400, affine_prob=0.0, elastic_prob=0.0, **NO_INTENSITY
    )["image"]
    flipped = (out[:, 0, :, 0] > 0).all(dim=1).float().mean().item()
    assert abs(flipped - 0.5) < 0.07


def test_intensity_statistics_match():
    """Gamma / scale / shift / smoothing / noise: same per-image mean and std distribution on both paths."""
    image = _smooth_pattern()
    kwargs = dict(flip_prob=0.0, affine_prob=0.0, elastic_prob=0.0)
    stats = {}
    for name, run in (("cpu", _cpu_batch), ("device", _device_batch)):
        out = run({"image": image}, 300, **kwargs)["image"]
        flat = out.flatten(1)
        unchanged = (flat - image.flatten()).abs().amax(dim=1) < 1e-6
        stats[name] = (flat.mean(dim=1), flat.std(dim=1), unchanged.float().mean().item())
    (m_cpu, s_cpu, u_cpu), (m_dev, s_dev, u_dev) = stats["cpu"], stats["device"]
    assert abs(u_cpu - u_dev) < 0.08 and 0.1 < u_dev < 0.32  # ~0.7^4 * 0.85 untouched
    assert abs(m_cpu.mean() - m_dev.mean()) < 0.02
    assert abs(m_cpu.std() - m_dev.std()) < 0.25 * m_cpu.std()
    assert abs(s_cpu.mean() - s_dev.mean()) < 0.03
    assert abs(s_cpu.std() - s_dev.std()) < 0.25 * s_cpu.std()


def test_augmentation_is_reproducible_and_keeps_dtype():
    batch = {"image": torch.randn(4, 1, 32, 32), "label": torch.ones(4, 1, 32, 32)}
    a = device_augmentation(32, seed=3)(batch)
    b = device_augmentation(32, seed=3)(batch)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert a["image"].dtype == torch.float32 and a["image"].shape == (4, 1, 32, 32)


# ---- the cached loader and the engine hooks ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_items() -> list[dict[str, str]]:
    images = sorted((SAMPLE_DIR / "images").glob("*.png"))[:6]
    return [{"image": str(p), "label": str(SAMPLE_DIR / "masks" / p.name)} for p in images]


def test_device_cache_loader_batches_and_epochs(sample_items):
    loader = DeviceCacheLoader(sample_items, Compose(preprocessing(32)), device="cpu", batch_size=4,
                               augmentation=device_augmentation(32), seed=0)
    assert len(loader) == 2 and loader.images.shape == (6, 1, 32, 32) and loader.labels.dtype == torch.uint8
    batches = list(loader)
    assert [b["image"].shape[0] for b in batches] == [4, 2]
    assert batches[0]["label"].dtype == torch.float32 and set(torch.unique(batches[0]["label"]).tolist()) <= {0, 1}
    assert not isinstance(batches[0]["image"], MetaTensor)
    first, second = (torch.cat([b["image"] for b in loader]) for _ in range(2))
    assert not torch.equal(first, second)  # a new permutation and new draws every epoch
    drop = DeviceCacheLoader(sample_items, Compose(preprocessing(32)), device="cpu", batch_size=4, drop_last=True)
    assert len(drop) == 1 and len(list(drop)) == 1


def test_prefetching_gives_the_same_batches(sample_items):
    """A background thread making the batches ahead changes nothing but the timing (and stops cleanly)."""
    transform = Compose(preprocessing(32))
    plain, ahead = (DeviceCacheLoader(sample_items, transform, device="cpu", batch_size=2, prefetch=p,
                                      augmentation=device_augmentation(32, seed=5)) for p in (False, True))
    for _ in range(2):  # two epochs
        for a, b in zip(plain, ahead, strict=True):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    next(iter(ahead))  # abandoned after one batch: the worker must not hang


def test_device_cache_loader_shards_like_distributed_sampler(sample_items):
    """Validation shards are disjoint and complete; training shards are padded to equal length."""
    transform = Compose(preprocessing(32))
    val = [DeviceCacheLoader(sample_items[:5], transform, device="cpu", batch_size=2, shuffle=False, keep_meta=True,
                             num_replicas=2, rank=r) for r in (0, 1)]
    names = [[n for b in shard for n in b["image"].meta["filename_or_obj"]] for shard in val]
    assert len(names[0]) == 3 and len(names[1]) == 2 and not set(names[0]) & set(names[1])
    assert sorted(names[0] + names[1]) == sorted(i["image"] for i in sample_items[:5])
    train = [DeviceCacheLoader(sample_items[:5], transform, device="cpu", batch_size=2, num_replicas=2, rank=r)
             for r in (0, 1)]
    assert [len(t) for t in train] == [2, 2] and [sum(len(b["image"]) for b in t) for t in train] == [3, 3]


def test_engine_hooks():
    assert resolve_data_path("auto", "cpu") == "cpu" and resolve_data_path("GPU", "cpu") == "gpu"
    with pytest.raises(ValueError, match="data_path must be one of"):
        resolve_data_path("tpu")
    image, label = DevicePrepareBatch(channels_last=True)({"image": torch.rand(2, 3, 8, 8), "label": torch.ones(2)})
    assert image.is_contiguous(memory_format=torch.channels_last) and label.shape == (2,)
    pred = torch.ones(2, requires_grad=True) * 2
    assert not DetachOutputd()({"pred": pred, "loss": pred.sum()})["loss"].requires_grad


# ---- the bundle on the device path ---------------------------------------------------------------------------------
def _bundle_workflow(config_files, tmp: Path, run_id: str, **overrides):
    from monai.bundle import ConfigWorkflow

    settings = dict(bundle_root=str(LUNG_BUNDLE), dataset_dir="sample", output_dir=f"$'{tmp / 'eval'}'",
                    ckpt_dir=str(tmp / "models"), image_size=32, max_epochs=1, batch_size=4, num_workers=0,
                    network_kwargs=TINY_BASIC_UNET, data_path="gpu")
    settings.update(overrides)
    files = [str(CONFIGS / f) for f in config_files]
    wf = ConfigWorkflow(config_file=files if len(files) > 1 else files[0], meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=str(CONFIGS / "logging.conf"), run_id=run_id, workflow_type=None, **settings)
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


def test_bundle_trains_one_epoch_on_the_device_path(tmp_path):
    wf = _bundle_workflow(["common.yaml", "train.yaml"], tmp_path, "training")
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert isinstance(trainer.data_loader, DeviceCacheLoader)
    assert isinstance(wf.parser.get_parsed_content("validate#evaluator").data_loader, DeviceCacheLoader)
    assert trainer.state.epoch == 1 and trainer.state.iteration == len(trainer.data_loader) == 5  # 22 images, drop_last
    assert (tmp_path / "models" / "model.pt").is_file()
    dice = wf.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]
    assert 0.0 <= dice <= 1.0


@pytest.mark.slow
def test_multi_gpu_device_path_reduces_metrics_across_ranks(tmp_path):
    """torchrun, 2 gloo ranks, device path: rank 0 alone logs and saves, and its validation Dice is the mean over all
    validation images (each rank saw only half), as a single-process evaluation of the saved model confirms."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "monai.bundle", "run", "training",
           "--config_file", f"['{CONFIGS / 'common.yaml'}','{CONFIGS / 'train.yaml'}','{CONFIGS / 'multi_gpu_train.yaml'}']",
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--bundle_root", str(LUNG_BUNDLE), "--dataset_dir", "sample", "--output_dir", f"$'{tmp_path / 'eval'}'",
           "--ckpt_dir", str(tmp_path / "models"), "--image_size", "32", "--max_epochs", "1", "--batch_size", "2",
           "--num_workers", "0", "--network_kwargs", str(TINY_BASIC_UNET), "--data_path", "gpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert log.count("epoch 1/1") == 1 and log.count("data path: gpu") == 1  # rank 0 logs, rank 1 does not
    assert (tmp_path / "models" / "model.pt").is_file()
    logged = float(re.search(r"val_mean_dice (\d\.\d+)", log).group(1))
    wf = _bundle_workflow(["common.yaml", "evaluate.yaml"], tmp_path, "evaluating",
                          **{"validate#dataset#data": "$@datalist['validation']"})
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    assert evaluator.state.metrics["val_mean_dice"] == pytest.approx(logged, abs=1e-3)
    assert len(wf.parser.get_parsed_content("datalist")["validation"]) == 4  # 2 per rank
