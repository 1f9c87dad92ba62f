#!/usr/bin/env python
"""XNet's own task on synthetic radiographs: the paper's Table 2, the confusion matrix, calibration, and the sweep.

Generates (once) a 150-image labelled training set, as small as the XNet paper's, and a separate held-out test set
with another seed; trains each network through the tissue bundle's real ``train.yaml`` (MONAI ``ConfigWorkflow``:
DiceCE, Adam 1e-4, L2 5e-4, elastic + affine augmentation, class-balanced oversampling by body part, early stopping);
then evaluates on the held-out set with the project's report writer: per-class F1, AUC, accuracy and the paper's
confidence, class-weighted averages, the confusion matrix and reliability figures, and the soft-tissue threshold
sweep (TPR / FPR), and prints a table per network.

Example (GPU)::

    python scripts/benchmark_tissue.py --networks xnet basic_unet lite_unet --epochs xnet=150

Example (2-core CPU, reduced)::

    python scripts/benchmark_tissue.py --image-size 64 --epochs xnet=15 basic_unet=15 --test-images 140
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
BUNDLE = REPO / "bundles" / "xray_tissue_segmentation"
CLASS_NAMES = ["open beam", "soft tissue", "bone"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmark_tissue")
    p.add_argument("--networks", nargs="+", default=["xnet", "basic_unet", "lite_unet"])
    p.add_argument("--epochs", nargs="*", default=[], metavar="NET=N", help="epochs per network")
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--train-images", type=int, default=150, help="labelled images (the paper had 150)")
    p.add_argument("--test-images", type=int, default=350, help="held-out synthetic test images (seed 1)")
    p.add_argument("--per-body-part", type=int, default=50, help="balanced draws per body part and epoch")
    p.add_argument("--network-kwargs", nargs="*", default=[], metavar="NET=JSON",
                   help="constructor overrides per network, e.g. xnet='{\"norm\": \"instance\"}'")
    p.add_argument("--num-workers", type=int, default=0)
    return p.parse_args(argv)


def train(name: str, epochs: int, data_dir: str, kwargs: dict, args: argparse.Namespace) -> tuple[Path, float]:
    from monai.bundle import ConfigWorkflow

    run_dir = args.out / name
    wf = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / "common.yaml"), str(BUNDLE / "configs" / "train.yaml")],
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        logging_file=str(BUNDLE / "configs" / "logging.conf"),
        run_id="training", workflow_type=None, bundle_root=str(BUNDLE),
        dataset_dir=data_dir, output_dir=f"$'{run_dir / 'eval'}'", ckpt_dir=str(run_dir / "models"),
        network_name=name, network_kwargs=kwargs, image_size=args.image_size, max_epochs=epochs,
        per_body_part=args.per_body_part, num_workers=args.num_workers,
    )
    t0 = time.perf_counter()
    wf.initialize()
    wf.run()
    wf.finalize()
    return run_dir / "models" / "model.pt", time.perf_counter() - t0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from pipeline.data import pair_folder, synthetic_dataset_dir
    from pipeline.inference import Predictor
    from pipeline.io import read_image, read_mask
    from pipeline.postprocessing import threshold_sweep
    from pipeline.reporting import EvaluationCase, write_evaluation_report

    args.out.mkdir(parents=True, exist_ok=True)
    train_dir = synthetic_dataset_dir(args.out / "data", n=args.train_images, seed=0, size=args.image_size)
    test_dir = synthetic_dataset_dir(args.out / "data", n=args.test_images, seed=1, size=args.image_size)
    test_pairs = pair_folder(test_dir).pairs
    epochs = {k: int(v) for k, v in (e.split("=", 1) for e in args.epochs)}
    net_kwargs = {k: json.loads(v) for k, v in (e.split("=", 1) for e in args.network_kwargs)}
    machine = f"{platform.node()} ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'})"
    results: dict = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "networks": {}}
    for name in args.networks:
        kwargs = net_kwargs.get(name, {})
        ckpt, seconds = train(name, epochs.get(name, args.max_epochs), train_dir, kwargs, args)
        predictor = Predictor.from_bundle(
            BUNDLE, checkpoint=ckpt,
            overrides={"network_name": name, "network_kwargs": kwargs, "image_size": args.image_size},
        )
        cases = []
        for i in range(0, len(test_pairs), 32):
            chunk = test_pairs[i : i + 32]
            for pair, res in zip(chunk, predictor.predict_images([read_image(p["image"]) for p in chunk])):
                cases.append(EvaluationCase(pair["id"], res.image.pixels, res.prob, read_mask(pair["label"])))
        report = write_evaluation_report(cases, args.out / name / "report", CLASS_NAMES,
                                         title=f"{name} on {len(cases)} held-out synthetic radiographs")
        sweep = threshold_sweep(((c.prob, c.label) for c in cases), thresholds=[0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
                                classes=[1], class_names=CLASS_NAMES)
        s = report.summary
        counts = np.bincount(np.concatenate([c.label.ravel() for c in cases]), minlength=len(CLASS_NAMES))
        weights = counts / counts.sum()  # the paper weights classes by their pixel frequency
        weighted = {
            "auc": float(sum(w * s["roc"]["auc"][c] for w, c in zip(weights, CLASS_NAMES))),
            "confidence": float(sum(w * s["calibration"]["confidence"][c] for w, c in zip(weights, CLASS_NAMES))),
        }
        results["networks"][name] = {"train_seconds": seconds, "summary": s, "weighted": weighted,
                                     "class_weights": weights.tolist(), "soft_tissue_sweep": sweep.to_rows()}
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))

    print(f"\nmachine: {machine}; {args.train_images} training images, {args.test_images} held-out test images, "
          f"{args.image_size} px\n")
    for name, r in results["networks"].items():
        s = r["summary"]
        pooled, cal, auc = s["pooled"], s["calibration"], s["roc"]["auc"]
        print(f"### {name} ({r['train_seconds'] / 60:.1f} min training)\n")
        print("| class | accuracy | F1 | AUC | confidence | precision (accuracy of assigned pixels) |")
        print("|---|---|---|---|---|---|")
        for c in CLASS_NAMES:
            print(f"| {c} | {pooled['accuracy'][c]:.3f} | {pooled['f1'][c]:.3f} | {auc[c]:.3f} | "
                  f"{cal['confidence'][c]:.3f} | {cal['accuracy_of_assigned'][c]:.3f} |")
        w = pooled["weighted"]
        print(f"| weighted | {w['accuracy']:.3f} | {w['f1']:.3f} | {r['weighted']['auc']:.3f} | "
              f"{r['weighted']['confidence']:.3f} | {w['precision']:.3f} |\n")
        print("soft-tissue threshold sweep:", json.dumps(r["soft_tissue_sweep"], default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
