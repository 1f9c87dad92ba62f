#!/usr/bin/env python
"""Quality benchmark: train each network through the lung bundle on JSRT, test on JSRT and on OpenIST.

For every network this script runs the bundle's real ``train.yaml`` (MONAI ``ConfigWorkflow``) on
``jsrt_scr`` with its ``splits.csv`` (174 train / 22 val / 51 test), loads the best checkpoint into the project's
``Predictor`` (the same road as batch inference: masks at the original size), and reports per-image Dice on the JSRT
test split (mean and 5th percentile) and on every image of ``openist_cxr`` (another hospital, never trained on).

Example (GPU, full protocol)::

    python scripts/benchmark_quality.py --data ../shared/data --networks basic_unet xnet lite_unet

Example (2-core CPU, reduced: smaller images, fewer epochs)::

    python scripts/benchmark_quality.py --data ../shared/data --image-size 128 --epochs basic_unet=30 lite_unet=8 xnet=5

Prints a Markdown table and writes ``results.json`` (and the per-image Dice) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "chest_xray_lung_segmentation"
logger = logging.getLogger("benchmark_quality")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder holding jsrt_scr/ and openist_cxr/ (default: ../shared/data)")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmark_quality", help="output folder")
    p.add_argument("--networks", nargs="+", default=["basic_unet", "xnet", "lite_unet"],
                   help="networks to train (names of pipeline.networks.get_network)")
    p.add_argument("--epochs", nargs="*", default=[], metavar="NET=N",
                   help="epochs per network, e.g. basic_unet=60 xnet=40 (default: --max-epochs)")
    p.add_argument("--max-epochs", type=int, default=60, help="epochs for networks not named in --epochs")
    p.add_argument("--image-size", type=int, default=256, help="training/inference side (default 256)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-4, help="base lr; the one-cycle peak is 10x")
    p.add_argument("--lr-schedule", default="onecycle", choices=["constant", "cosine", "onecycle"])
    p.add_argument("--patience", type=int, default=0, help="early-stopping patience (0 = off)")
    p.add_argument("--network-kwargs", default="{}", help="JSON dict of constructor overrides for every network")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-images", type=int, default=0,
                   help="score only the first N images of each test set (0 = all; for smoke runs)")
    p.add_argument("--evaluate-only", nargs="*", default=[], metavar="NET=CHECKPOINT",
                   help="skip training and score existing checkpoints, e.g. basic_unet=outputs/.../model.pt "
                        "(for runs stopped early by a time budget)")
    return p.parse_args(argv)


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    pred, gt = pred > 0, gt > 0
    denom = pred.sum() + gt.sum()
    return 1.0 if denom == 0 else float(2.0 * (pred & gt).sum() / denom)


def score(predictor, pairs) -> list[float]:
    from pipeline.io import read_image, read_mask

    out = []
    batch = 16
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        images = [read_image(p["image"]) for p in chunk]
        for pair, result in zip(chunk, predictor.predict_images(images)):
            out.append(dice(result.mask, read_mask(pair["label"]) > 127))
    return out


def summarise(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {"mean": float(arr.mean()), "p05": float(np.percentile(arr, 5)), "min": float(arr.min()), "n": len(arr)}


def train_one(name: str, epochs: int, args: argparse.Namespace, out: Path) -> tuple[Path, float, float]:
    from monai.bundle import ConfigWorkflow

    run_dir = out / name
    kwargs = json.loads(args.network_kwargs)
    wf = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / "common.yaml"), str(BUNDLE / "configs" / "train.yaml")],
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        logging_file=str(BUNDLE / "configs" / "logging.conf"),
        run_id="training",
        workflow_type=None,
        bundle_root=str(BUNDLE),
        dataset_dir=str(args.data / "jsrt_scr"),
        output_dir=f"$'{run_dir / 'eval'}'",
        ckpt_dir=str(run_dir / "models"),
        network_name=name,
        network_kwargs=kwargs,
        image_size=args.image_size,
        max_epochs=epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        early_stop_patience=args.patience,
        num_workers=args.num_workers,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    wf.initialize()
    wf.run()
    wf.finalize()
    seconds = time.perf_counter() - t0
    best = float(wf.parser.get_parsed_content("validate#evaluator").state.best_metric)
    return run_dir / "models" / "model.pt", best, seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from pipeline.data import pair_folder, prepare_datalist
    from pipeline.engines import cpu_has_native_bf16
    from pipeline.inference import Predictor
    from pipeline.model import ModelArtifact

    for sub in ("jsrt_scr", "openist_cxr"):
        if not (args.data / sub / "images").is_dir():
            print(f"error: {args.data / sub} not found; pass --data pointing at the folder holding {sub}/", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    epochs = {k: int(v) for k, v in (e.split("=") for e in args.epochs)}
    jsrt_test = prepare_datalist(args.data / "jsrt_scr", None)["test"]
    openist = pair_folder(args.data / "openist_cxr").pairs
    if args.max_images > 0:
        jsrt_test, openist = jsrt_test[: args.max_images], openist[: args.max_images]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = f"{platform.node()} ({torch.cuda.get_device_name(0) if device == 'cuda' else f'CPU, {torch.get_num_threads()} threads'})"
    precision = "CUDA AMP" if device == "cuda" else ("bf16 autocast" if cpu_has_native_bf16() else "float32")
    results = {"machine": machine, "training_precision": precision, "args": {k: str(v) for k, v in vars(args).items()}, "networks": {}}
    given = {k: Path(v) for k, v in (e.split("=", 1) for e in args.evaluate_only)}
    for name in (list(given) if given else args.networks):
        n_epochs = epochs.get(name, args.max_epochs)
        if name in given:
            ckpt, best_val, seconds = given[name], float("nan"), float("nan")
        else:
            logger.info("training %s for %d epochs at %d px", name, n_epochs, args.image_size)
            ckpt, best_val, seconds = train_one(name, n_epochs, args, args.out)
        # the model file's artifact names network, size and preprocessing; ``default`` covers bare weights
        fallback = ModelArtifact(network_name=name, network_kwargs=json.loads(args.network_kwargs),
                                 image_size=args.image_size)
        predictor = Predictor.from_checkpoint(ckpt, device=device, default=fallback)
        jsrt = score(predictor, jsrt_test)
        other = score(predictor, openist)
        results["networks"][name] = {
            "epochs": n_epochs, "train_seconds": seconds, "best_val_dice": best_val,
            "jsrt_test": summarise(jsrt), "openist": summarise(other),
            "per_image": {"jsrt_test": jsrt, "openist": other},
        }
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nmachine: {machine}; image size {args.image_size}; schedule {args.lr_schedule}; training {precision}\n")
    print("| network | epochs | train time | best val Dice | JSRT test Dice (mean) | JSRT 5th pct image | JSRT worst "
          "| OpenIST Dice (mean) | OpenIST 5th pct | OpenIST worst |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results["networks"].items():
        j, o = r["jsrt_test"], r["openist"]
        print(f"| {name} | {r['epochs']} | {r['train_seconds'] / 60:.1f} min | {r['best_val_dice']:.4f} | "
              f"{j['mean']:.4f} | {j['p05']:.3f} | {j['min']:.3f} | {o['mean']:.4f} | {o['p05']:.3f} | {o['min']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
