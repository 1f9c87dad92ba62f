"""A tiny lung model trained in seconds on the embedded sample, saved with its settings (for the node tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xray_test_paths import TINY_BASIC_UNET

TINY = TINY_BASIC_UNET
SETTINGS = {"image_size": 64, "intensity": "minmax", "num_classes": 1, "threshold": 0.5,
            "network_name": "basic_unet", "network_kwargs": TINY}


def train_tiny_model(path: Path, sample_dir: Path, steps: int = 60) -> Path:
    """Train a BasicUNet at 64² on the 30 sample films for ``steps`` Adam steps; save ``{model, settings}``."""
    from PIL import Image

    from pipeline.networks import get_network

    torch.manual_seed(0)
    images, masks = [], []
    for png in sorted((sample_dir / "images").glob("*.png")):
        with Image.open(png) as img:
            x = np.asarray(img.convert("L").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32)
        with Image.open(sample_dir / "masks" / png.name) as img:
            y = np.asarray(img.convert("L").resize((64, 64), Image.Resampling.NEAREST), dtype=np.float32)
        x = (x - x.min()) / max(1e-6, x.max() - x.min()) * 2 - 1
        images.append(x[None])
        masks.append((y > 0).astype(np.float32)[None])
    x, y = torch.tensor(np.stack(images)), torch.tensor(np.stack(masks))
    net = get_network("basic_unet", **TINY)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for step in range(steps):
        idx = torch.randint(0, len(x), (8,))
        opt.zero_grad()
        loss = loss_fn(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "settings": dict(SETTINGS)}, path)
    return path
