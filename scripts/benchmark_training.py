#!/usr/bin/env python
"""Training throughput and time-to-quality: the bundle's CPU data path, its device data path and a bare PyTorch loop.

In one process, on the same data (``jsrt_scr`` with its ``splits.csv``: 174 train / 22 val / 51 test) and the same
network (``--network``, BasicUNet by default, constructor defaults unless ``--network-kwargs``), this script trains:

(a) ``cpu``: the lung bundle's ``train.yaml`` with ``data_path: cpu`` (``CacheDataset`` + ``DataLoader`` workers,
    per-image MONAI flip / affine / elastic / intensity augmentation);
(b) ``gpu``: the same bundle with ``data_path: gpu`` (dataset cached once on the device, the same augmentation
    family batched on the device, no workers);
(c) ``bare``: a plain PyTorch loop written below: data resident on the device, random flips on the device, AMP, the
    same loss (Dice + BCE), optimiser (Adam, weight decay) and one-cycle schedule, no MONAI engine.

For each it prints training images/s (epochs after the first, training iterations only, validation excluded), the
ratios (b)/(c) and (a)/(c), the wall-clock seconds from the start of training until validation Dice first reaches
``--target-dice`` (validation time included), the best validation Dice and the JSRT test Dice of the best
checkpoint, and the CPU-seconds per training image (process CPU time, a figure that other jobs on a shared machine
disturb far less than wall-clock time). ``--amp`` sets the precision for all three: ``auto`` is the bundle's default
(AMP on CUDA, bf16 where supported; on a CPU, bf16 autocast where the CPU has native bf16, see
``pipeline.engines.CpuAutocastInferer``), ``off`` is float32 throughout, ``bf16`` forces bf16 autocast on any device.
``--compile`` / ``--channels-last`` apply to all three. ``--cudnn`` picks the cuDNN flags for all three (``bundle``: what the bundle's ``set_determinism`` sets, i.e.
deterministic kernels; ``benchmark``: autotuned, non-deterministic).

Examples::

    python scripts/benchmark_training.py                       # GPU: 60 epochs at 256², batch 16, one-cycle
    python scripts/benchmark_training.py --cudnn benchmark --compile --channels-last --prefetch
    python scripts/benchmark_training.py --quick               # CPU smoke run (32², 2 epochs, small BasicUNet)
    python scripts/benchmark_training.py --paths a --image-size 128 --epochs 3 --num-workers 0 --amp off   # CPU fp32
    python scripts/benchmark_training.py --paths a --image-size 128 --epochs 3 --num-workers 0 --amp bf16  # CPU bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "chest_xray_lung_segmentation"
CONFIGS = BUNDLE / "configs"
PATHS = {"a": "cpu", "b": "gpu", "c": "bare"}
#: ``--quick``: a BasicUNet small enough for a CPU smoke run in about a minute.
QUICK_NETWORK = {"features": [8, 8, 16, 32, 64, 8]}
logger = logging.getLogger("benchmark_training")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder holding jsrt_scr/ (default: <repo>/../shared/data)")
    p.add_argument("--epochs", type=int, default=60, help="epochs per path (default 60)")
    p.add_argument("--target-dice", type=float, default=0.97, help="validation Dice for time-to-quality (0.97)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-4, help="base lr; the one-cycle peak is 10x (1e-3)")
    p.add_argument("--lr-schedule", default="onecycle", choices=["constant", "cosine", "onecycle"])
    p.add_argument("--network", default="basic_unet", help="network for all paths (pipeline.networks name)")
    p.add_argument("--network-kwargs", default="{}", help="JSON dict of network constructor overrides")
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"],
                   help="precision for all paths: auto = the bundle's default (CUDA AMP; CPU bf16 autocast where the "
                        "CPU has native bf16), off = float32, bf16 = bf16 autocast on any device")
    p.add_argument("--num-workers", type=int, default=8, help="DataLoader workers of the CPU path (default 8)")
    p.add_argument("--paths", default="abc", help="which paths to run: any of a (cpu), b (gpu), c (bare)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training network (all paths)")
    p.add_argument("--channels-last", action="store_true", help="channels-last network and batches (all paths)")
    p.add_argument("--prefetch", action="store_true",
                   help="(b): make the next batches in a background thread on a side CUDA stream")
    p.add_argument("--cudnn", default="bundle", choices=["bundle", "benchmark"],
                   help="cuDNN flags for all paths: the bundle's deterministic ones, or autotuned (benchmark)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke run: 32² images, 2 epochs, batch 8, no DataLoader workers, small BasicUNet")
    args = p.parse_args(argv)
    if args.quick:
        args.image_size, args.epochs, args.batch_size, args.num_workers = 32, 2, 8, 0
        if args.network_kwargs == "{}" and args.network == "basic_unet":
            args.network_kwargs = json.dumps(QUICK_NETWORK)
    if not set(args.paths) <= set(PATHS):
        p.error(f"--paths takes letters from {''.join(PATHS)}, got {args.paths!r}")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _set_cudnn(mode: str) -> None:
    if mode == "benchmark":
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    else:  # what monai.utils.set_determinism(seed) leaves behind in the bundle
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True


class Clock:
    """Per-epoch training seconds and images, and the time validation first reaches the target."""

    def __init__(self, device: torch.device, target: float) -> None:
        self.device, self.target = device, target
        self.start = self.epoch_start = self.epoch_cpu_start = 0.0
        self.epoch_seconds: list[float] = []
        self.epoch_cpu_seconds: list[float] = []
        self.epoch_images: list[int] = []
        self.val_dice: list[float] = []
        self.time_to_target: float | None = None
        self.epoch_to_target: int | None = None

    def started(self) -> None:
        _sync(self.device)
        self.start = time.perf_counter()

    def epoch_started(self) -> None:
        _sync(self.device)
        self.epoch_start = time.perf_counter()
        self.epoch_cpu_start = time.process_time()
        self.epoch_images.append(0)

    def iteration(self, images: int) -> None:
        self.epoch_images[-1] += images

    def epoch_trained(self) -> None:
        _sync(self.device)
        self.epoch_seconds.append(time.perf_counter() - self.epoch_start)
        self.epoch_cpu_seconds.append(time.process_time() - self.epoch_cpu_start)

    def validated(self, dice: float) -> None:
        self.val_dice.append(float(dice))
        if self.time_to_target is None and dice >= self.target:
            self.time_to_target = time.perf_counter() - self.start
            self.epoch_to_target = len(self.val_dice)

    def summary(self) -> dict[str, Any]:
        steady = slice(1, None) if len(self.epoch_seconds) > 1 else slice(None)
        seconds, images = sum(self.epoch_seconds[steady]), sum(self.epoch_images[steady])
        cpu_seconds = sum(self.epoch_cpu_seconds[steady])
        return {
            "images_per_s": images / seconds if seconds > 0 else float("nan"),
            "cpu_s_per_image": cpu_seconds / images if images > 0 else float("nan"),
            "first_epoch_s": self.epoch_seconds[0] if self.epoch_seconds else float("nan"),
            "train_wall_s": time.perf_counter() - self.start,
            "time_to_target_s": self.time_to_target,
            "epoch_to_target": self.epoch_to_target,
            "best_val_dice": max(self.val_dice) if self.val_dice else float("nan"),
        }


# ---- (a), (b): the bundle -------------------------------------------------------------------------------------------
def _bundle(config_files: list[str], run_id: str, overrides: dict[str, Any]):
    from monai.bundle import ConfigWorkflow

    files = [str(CONFIGS / f) for f in config_files]
    return ConfigWorkflow(config_file=files if len(files) > 1 else files[0], meta_file=str(CONFIGS / "metadata.json"),
                          logging_file=str(CONFIGS / "logging.conf"), run_id=run_id, workflow_type=None, **overrides)


def run_bundle(data_path: str, args: argparse.Namespace, work: Path, device: torch.device) -> dict[str, Any]:
    """Train through ``train.yaml`` with ``data_path``, timing with ignite events; then evaluate on the test split."""
    from ignite.engine import Events

    run_dir = work / data_path
    overrides = dict(
        bundle_root=str(BUNDLE), dataset_dir=str(args.data / "jsrt_scr"), output_dir=f"$'{run_dir / 'eval'}'",
        ckpt_dir=str(run_dir / "models"), network_name=args.network, network_kwargs=json.loads(args.network_kwargs),
        image_size=args.image_size, max_epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, lr_schedule=args.lr_schedule, early_stop_patience=0, val_interval=1,
        num_workers=args.num_workers, seed=args.seed, data_path=data_path, compile=args.compile,
        channels_last=args.channels_last,
    )
    if args.amp != "auto":  # CUDA: MONAI's amp flag; CPU: the training inferer's bf16 autocast
        on_cuda = device.type == "cuda"
        overrides["amp"] = on_cuda and args.amp == "bf16"
        overrides["cpu_bf16"] = args.amp == "bf16"
        if on_cuda and args.amp == "bf16":
            overrides["amp_kwargs"] = "${'dtype': torch.bfloat16}"
    if args.prefetch and data_path == "gpu":
        overrides["train#loader#prefetch"] = True
    t0 = time.perf_counter()
    wf = _bundle(["common.yaml", "train.yaml"], "training", overrides)
    wf.initialize()
    _set_cudnn(args.cudnn)
    trainer = wf.parser.get_parsed_content("train#trainer")  # builds the data path (decoding, caching)
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    setup = time.perf_counter() - t0
    clock = Clock(device, args.target_dice)

    def batch_size(engine) -> int:
        batch = engine.state.batch
        return len(batch) if isinstance(batch, list) else int(batch["image"].shape[0])

    trainer.add_event_handler(Events.STARTED, lambda _: clock.started())
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: clock.epoch_started())

    def iteration_completed(engine) -> None:
        clock.iteration(batch_size(engine))
        if engine.state.iteration % engine.state.epoch_length == 0:  # last iteration: before validation starts
            clock.epoch_trained()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, iteration_completed)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: clock.validated(e.state.metrics["val_mean_dice"]))
    wf.run()
    wf.finalize()
    result = {"path": data_path, "setup_s": setup, **clock.summary()}
    del trainer, evaluator, wf
    ev = _bundle(["common.yaml", "evaluate.yaml"], "evaluating", overrides)
    ev.initialize()
    ev.run()
    result["test_dice"] = float(ev.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"])
    del ev
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


# ---- (c): the bare PyTorch reference loop ---------------------------------------------------------------------------
def _tensors(items: list[dict[str, str]], image_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    from monai.transforms import Compose

    from pipeline.transforms import preprocessing

    chain = Compose(preprocessing(image_size))
    out = [chain(dict(item)) for item in items]
    images = torch.stack([torch.as_tensor(o["image"]).as_tensor() for o in out]).float()
    labels = torch.stack([torch.as_tensor(o["label"]).as_tensor() for o in out]).float()
    return images.to(device), labels.to(device)


def _dice_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MONAI's DiceCELoss(sigmoid=True) written out: soft Dice per image and channel (+1e-5 smoothing) + BCE."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(2, 3))
    denom = prob.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
    dice = 1.0 - (2.0 * inter + 1e-5) / (denom + 1e-5)
    return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)


@torch.inference_mode()
def _mean_dice(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, amp: dict[str, Any],
               channels_last: bool) -> float:
    net.eval()
    scores = []
    for i in range(0, len(images), 64):
        x = images[i : i + 64]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(**amp):
            pred = net(x).float() > 0.0
        gt = labels[i : i + 64] > 0.5
        inter = (pred & gt).sum(dim=(1, 2, 3)).float()
        total = pred.sum(dim=(1, 2, 3)).float() + gt.sum(dim=(1, 2, 3)).float()
        scores.append(torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total)))
    net.train()
    return float(torch.cat(scores).mean())


def _amp(mode: str, device: torch.device) -> dict[str, Any]:
    """``torch.autocast`` arguments for ``--amp`` on ``device``, matching what the bundle does for ``auto``."""
    from pipeline.engines import cpu_has_native_bf16

    if device.type == "cuda":
        dtype = torch.bfloat16 if mode == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
        return {"device_type": "cuda", "dtype": dtype, "enabled": mode != "off"}
    enabled = mode == "bf16" or (mode == "auto" and cpu_has_native_bf16())
    return {"device_type": "cpu", "dtype": torch.bfloat16, "enabled": enabled}


def run_bare(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """A plain PyTorch training loop: resident data, device flips, AMP, no engine (the reference)."""
    from monai.utils import set_determinism

    from pipeline.data import prepare_datalist
    from pipeline.networks import get_network

    t0 = time.perf_counter()
    datalist = prepare_datalist(args.data / "jsrt_scr", None)
    train_x, train_y = _tensors(datalist["training"], args.image_size, device)
    val_x, val_y = _tensors(datalist["validation"], args.image_size, device)
    test_x, test_y = _tensors(datalist["test"], args.image_size, device)
    set_determinism(seed=args.seed)
    _set_cudnn(args.cudnn)
    memory_format = torch.channels_last if args.channels_last else torch.preserve_format
    net = get_network(args.network, spatial_dims=2, in_channels=1, out_channels=1,
                      **json.loads(args.network_kwargs)).to(device, memory_format=memory_format)
    model = torch.compile(net) if args.compile else net
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate, weight_decay=5e-4)
    n, bs = len(train_x), args.batch_size
    steps = n // bs if n > bs else 1
    if args.lr_schedule == "onecycle":
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=10 * args.learning_rate,
                                                       epochs=args.epochs, steps_per_epoch=steps)
    else:
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    amp = _amp(args.amp, device)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp["enabled"] and amp["dtype"] == torch.float16)
    setup = time.perf_counter() - t0
    clock = Clock(device, args.target_dice)
    best, best_state = -1.0, None
    clock.started()
    for _ in range(args.epochs):
        clock.epoch_started()
        order = torch.randperm(n, device=device)
        for step in range(steps):
            idx = order[step * bs : (step + 1) * bs]
            x, y = train_x[idx], train_y[idx]
            flip = (torch.rand(len(idx), device=device) < 0.5)[:, None, None, None]
            x, y = torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(**amp):
                logits = model(x)
            loss = _dice_ce(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if args.lr_schedule == "onecycle":
                schedule.step()
            clock.iteration(len(idx))
        clock.epoch_trained()
        dice = _mean_dice(model, val_x, val_y, amp, args.channels_last)
        clock.validated(dice)
        if dice > best:
            best, best_state = dice, copy.deepcopy(net.state_dict())
    result = {"path": "bare", "setup_s": setup, **clock.summary()}
    if best_state is not None:
        net.load_state_dict(best_state)
    result["test_dice"] = _mean_dice(net, test_x, test_y, amp, args.channels_last)
    del model, net, optimizer, train_x, train_y
    if cuda:
        torch.cuda.empty_cache()
    return result


# ---- report ---------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str, missing: str = "not reached") -> str:
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not (args.data / "jsrt_scr" / "images").is_dir():
        print(f"error: {args.data / 'jsrt_scr'} not found; pass --data pointing at the folder holding jsrt_scr/",
              file=sys.stderr)
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    machine = (f"{platform.node()}: {torch.cuda.get_device_name(0)}" if device.type == "cuda"
               else f"{platform.node()}: CPU, {torch.get_num_threads()} threads")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="benchmark_training_") as tmp:
        for letter in args.paths:
            name = PATHS[letter]
            logger.info("(%s) %s path: %d epochs at %d², batch %d", letter, name, args.epochs, args.image_size,
                        args.batch_size)
            results[name] = run_bare(args, device) if name == "bare" else run_bundle(name, args, Path(tmp), device)
            logger.info("(%s) %s: %s", letter, name, results[name])
    bare = results.get("bare", {}).get("images_per_s")
    ratios = {f"({k})/(c)": results[PATHS[k]]["images_per_s"] / bare
              for k in "ab" if bare and PATHS[k] in results}
    autocast = _amp(args.amp, device)
    amp = (str(autocast["dtype"]).replace("torch.bfloat16", "bf16").replace("torch.float16", "fp16")
           if autocast["enabled"] else "off")
    flags = (f"AMP {amp}, compile {args.compile}, channels-last {args.channels_last}, cuDNN {args.cudnn}, "
             f"prefetch {args.prefetch}")
    print(f"\nmachine: {machine}; torch {torch.__version__}; {args.network} {args.network_kwargs}; {args.image_size}², "
          f"batch {args.batch_size}, {args.epochs} epochs, {args.lr_schedule} lr {args.learning_rate:g} "
          f"(peak {10 * args.learning_rate:g}); {flags}; CPU path workers {args.num_workers}\n")
    print(f"| path | training images/s | CPU-s per image | vs bare | setup s | seconds to val Dice ≥ "
          f"{args.target_dice} (epoch) | best val Dice | JSRT test Dice |")
    print("|---|---|---|---|---|---|---|---|")
    for letter in args.paths:
        r = results[PATHS[letter]]
        ratio = r["images_per_s"] / bare if bare else float("nan")
        reached = (f"{r['time_to_target_s']:.1f} ({r['epoch_to_target']})" if r["time_to_target_s"] is not None
                   else "not reached")
        print(f"| ({letter}) {r['path']} | {r['images_per_s']:.1f} | {r['cpu_s_per_image']:.3f} "
              f"| {_fmt(ratio, '.2f', 'n/a')} | {r['setup_s']:.1f} "
              f"| {reached} | {r['best_val_dice']:.4f} | {r['test_dice']:.4f} |")
    for key, value in ratios.items():
        print(f"{key} = {value:.2f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "flags": flags, "args": {k: str(v) for k, v in
                                        vars(args).items()}, "results": results, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
