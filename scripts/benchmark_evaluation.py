#!/usr/bin/env python
"""Evaluation benchmark: a trained lung checkpoint on JSRT test and on all of OpenIST, with calibration and cleanup.

Steps, all through the project's own components (the Predictor's road, the report writer, the threshold sweep):

1. fit temperature scaling on the JSRT validation split (``splits.csv``) and print T and the validation ECE;
2. evaluate the JSRT test split and every OpenIST image (never trained on) under four post-processing variants
   (raw, cleanup, temperature, temperature + cleanup): Dice, HD95, F1, AUC, ECE, QC flags, Spearman correlation
   between the uncertainty score and Dice, and the report figures;
3. sweep the lung probability threshold and print TPR / FPR.

Example::

    python scripts/benchmark_evaluation.py --checkpoint outputs/benchmark_quality_cpu/basic_unet/models/model.pt \\
        --network basic_unet --image-size 128 --data ../shared/data --out outputs/benchmark_evaluation
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "chest_xray_lung_segmentation"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="model.pt of the lung bundle")
    p.add_argument("--network", default="basic_unet", help="network name the checkpoint was trained with")
    p.add_argument("--network-kwargs", default="{}", help="JSON dict of constructor arguments used in training")
    p.add_argument("--image-size", type=int, default=256, help="side the checkpoint was trained at")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder with jsrt_scr/, openist_cxr/")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmark_evaluation")
    return p.parse_args(argv)


def predict_cases(predictor, pairs, batch: int = 16):
    """Yield EvaluationCases (probabilities at the original size, raw T = 1) for image/mask pairs."""
    from pipeline.io import read_image, read_mask
    from pipeline.reporting import EvaluationCase

    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        images = [read_image(p["image"]) for p in chunk]
        for pair, result in zip(chunk, predictor.predict_images(images)):
            label = (read_mask(pair["label"]) > 127).astype(np.int64)
            yield EvaluationCase(pair["id"], result.image.pixels, result.prob, label, result.image.spacing)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from pipeline.data import pair_folder, prepare_datalist
    from pipeline.inference import Predictor
    from pipeline.postprocessing import calibration_before_after, fit_temperature, probabilities_to_logits, threshold_sweep
    from pipeline.reporting import ReportVariant, write_evaluation_report

    predictor = Predictor.from_bundle(
        BUNDLE, checkpoint=args.checkpoint,
        overrides={"network_name": args.network, "image_size": args.image_size,
                   "network_kwargs": json.loads(args.network_kwargs)},
        temperature=1.0,
    )
    jsrt = prepare_datalist(args.data / "jsrt_scr", None)
    openist = pair_folder(args.data / "openist_cxr").pairs

    val = list(predict_cases(predictor, jsrt["validation"]))
    logits = torch.stack([probabilities_to_logits(torch.from_numpy(c.prob)) for c in val])
    labels = torch.stack([torch.from_numpy(c.label)[None] for c in val])
    temperature = fit_temperature(logits, labels)
    val_stats = calibration_before_after(logits, labels, temperature)

    variants = [
        ReportVariant("raw"),
        ReportVariant("cleanup", cleanup=True),
        ReportVariant("temperature", temperature=temperature),
        ReportVariant("temperature+cleanup", temperature=temperature, cleanup=True),
    ]
    results = {"temperature": temperature, "validation": val_stats, "sets": {}}
    for name, pairs in (("jsrt_test", jsrt["test"]), ("openist", openist)):
        cases = list(predict_cases(predictor, pairs))
        report = write_evaluation_report(cases, args.out / name, ["lung"], variants, title=f"{args.network} on {name}")
        sweep = threshold_sweep(((c.prob, c.label) for c in cases), thresholds=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        results["sets"][name] = {
            "variants": {v: r.summary for v, r in report.variants.items()},
            "threshold_sweep": sweep.to_rows(),
        }
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))

    print(f"\nT = {temperature:.3f} (JSRT validation ECE {val_stats['ece_before']:.4f} -> {val_stats['ece_after']:.4f})\n")
    print("| set | variant | Dice (mean) | Dice (worst) | HD95 px (mean) | HD95 px (worst) | F1 | AUC | ECE (pooled) | flagged | Spearman(uncertainty, Dice) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, res in results["sets"].items():
        for variant, s in res["variants"].items():
            pi = s["per_image"]
            print(f"| {name} | {variant} | {pi['dice']['mean']:.4f} | {pi['dice']['min']:.4f} | {pi['hd95_px']['mean']:.2f} | "
                  f"{pi['hd95_px']['max']:.1f} | {s['pooled']['f1']['lung']:.4f} | {s['roc']['auc']['lung']:.4f} | "
                  f"{s['calibration']['per_class']['ece']['lung']:.4f} | {s['qc']['n_flagged']} | "
                  f"{s['uncertainty_dice_spearman']['spearman_rho']:.3f} |")
    print("\nthreshold sweep (lung): see results.json['sets'][...]['threshold_sweep']")
    for name, res in results["sets"].items():
        for row in res["threshold_sweep"]:
            print(name, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
