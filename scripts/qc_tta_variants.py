#!/usr/bin/env python
"""Would other test-time perturbations make a better label-free QC score than the left-right flip?

For one trained lung model and the validation/test split it was trained with, every image of the validation split,
JSRT test and OpenIST is segmented at the network's resolution as it is and under five perturbations: left-right
flip (the project's ``tta_disagreement``), gamma 0.6 and 1.6 on the [0, 1] intensities, a 3×3 blur, and a 6 %
zoom-out (padded with background, undone on the output). Each perturbation's score is the fraction of pixels whose
mask changes, per lung area. The script reports, for OpenIST, each score's AUROC for "Dice below JSRT test's 5th
percentile", and the best recall any threshold reaches with at most 25 % of the other OpenIST images and 10 % of
JSRT test flagged (the targets of issue 15; see ``scripts/qc_reachability.py`` for the project's own scores).

Example::

    python scripts/qc_tta_variants.py --model outputs/q/basic_unet/models/model.pt \\
        --datalist outputs/q/basic_unet/eval/datalist.json --openist ../shared/data/openist_cxr --csv out.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qc_reachability import auroc, best_recall  # noqa: E402

VARIANTS = ("flip", "gamma_0.6", "gamma_1.6", "blur", "zoom_out")


def perturbed_masks(predictor, x: torch.Tensor, threshold: float) -> dict[str, torch.Tensor]:
    """Masks ``(S, S)`` of ``x`` (``(1, 1, S, S)`` in [-1, 1]) as it is and under each of :data:`VARIANTS`."""
    size, pad = x.shape[-1], max(1, round(0.03 * x.shape[-1]))
    unit = ((x + 1) / 2).clamp(0, 1)
    inputs = [x, torch.flip(x, (-1,)), unit ** 0.6 * 2 - 1, unit ** 1.6 * 2 - 1,
              F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1),
              F.interpolate(F.pad(x, (pad,) * 4, value=-1.0), size=(size, size), mode="bilinear")]
    prob = predictor.predict_tensor(torch.cat(inputs))[:, 0]
    out = {"original": prob[0]}
    out["flip"] = torch.flip(prob[1], (-1,))
    out["gamma_0.6"], out["gamma_1.6"], out["blur"] = prob[2], prob[3], prob[4]
    big = F.interpolate(prob[5][None, None], size=(size + 2 * pad,) * 2, mode="bilinear")[0, 0]
    out["zoom_out"] = big[pad:-pad, pad:-pad]
    return {k: v > threshold for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    """Score every image and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model.pt with its artifact")
    parser.add_argument("--datalist", type=Path, required=True, help="the training's datalist.json")
    parser.add_argument("--openist", type=Path, required=True, help="OpenIST folder (images/, masks/)")
    parser.add_argument("--csv", type=Path, default=None, help="also write the per-image scores here")
    args = parser.parse_args(argv)

    from pipeline.inference import load_predictor
    from pipeline.io import read_image, read_mask

    predictor = load_predictor(args.model)
    datalist = json.loads(args.datalist.read_text())
    openist = [{"image": str(p), "label": str(args.openist / "masks" / p.name), "id": p.stem}
               for p in sorted((args.openist / "images").glob("*.png"))]
    rows = []
    for name, items in (("validation", datalist["validation"]), ("jsrt_test", datalist["test"]),
                        ("openist", openist)):
        for item in items:
            image = read_image(item["image"])
            masks = perturbed_masks(predictor, predictor.preprocess(image)[None], predictor.threshold)
            area = float(masks["original"].float().mean()) + 1e-6
            label = read_mask(item["label"]) > 127
            mask = predictor.predict_array(image.pixels).mask > 0
            row = {"set": name, "id": item["id"], "dice": 2 * (mask & label).sum() / (mask.sum() + label.sum())}
            for variant in VARIANTS:
                row[variant] = float((masks[variant] ^ masks["original"]).float().mean()) / area
            rows.append(row)
    if args.csv:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    jsrt = [r for r in rows if r["set"] == "jsrt_test"]
    opened = [r for r in rows if r["set"] == "openist"]
    p5 = float(np.percentile([r["dice"] for r in jsrt], 5))
    below = np.array([r["dice"] < p5 for r in opened])
    print(f"{args.model}: JSRT test p5 Dice {p5:.4f}; OpenIST {int(below.sum())} of {len(below)} below it\n")
    print("| perturbation | AUROC (below vs others) | best recall, any threshold | target |")
    print("|---|---|---|---|")
    for variant in VARIANTS:
        score = np.array([r[variant] for r in opened])
        ref = np.array([r[variant] for r in jsrt])
        recall = best_recall(score[below], score[~below], ref, 0.25, 0.10)
        print(f"| {variant} | {auroc(score[below], score[~below]):.3f} | {recall:.3f} | 0.80 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
