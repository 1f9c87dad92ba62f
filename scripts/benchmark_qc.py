#!/usr/bin/env python
"""QC and calibration benchmark of one trained lung model: calibration methods, QC flags, the cleanup default.

For a checkpoint (``model.pt``) and the validation split it was trained with (its ``datalist.json``), this script

1. runs the network (and the horizontally flipped images) over the validation split, JSRT test (``jsrt_scr`` with
   its ``splits.csv``) and every OpenIST image, at the network's own resolution through the training preprocessing;
2. fits each calibration method of :mod:`pipeline.postprocessing.calibration` on the validation pixels and reports
   ECE, ACE and MCE of the lung class (pooled pixels, 20 equal-width bins) on JSRT test and OpenIST, before and after;
3. builds the QC reference on the validation split exactly as :class:`pipeline.engines.CalibrationHandler` does at
   the end of training (:func:`pipeline.engines.calibrate_model`) and reports the flags on JSRT test and OpenIST:
   in-domain false alarms, the share of OpenIST images below JSRT test's 5th-percentile Dice that are flagged, the
   share of the others flagged, and the AUROC of every single score for "Dice < 0.90" on OpenIST;
4. compares Dice with and without the lung cleanup on both sets.

Examples::

    python scripts/benchmark_qc.py --model bundles/chest_xray_lung_segmentation/models/model.pt \\
        --datalist bundles/chest_xray_lung_segmentation/eval/datalist.json --out outputs/benchmark_qc/make_train

Prints Markdown tables, writes ``results.json``, per-image ``scores_<set>.csv`` and ``calibration_methods.png``
(ECE, ACE, MCE side by side) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger("benchmark_qc")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model.pt (weights + model artifact)")
    p.add_argument("--datalist", type=Path, required=True,
                   help="datalist.json of the training run (its 'validation' section is the reference split)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder holding jsrt_scr/ (with splits.csv) and openist_cxr/ (default: ../shared/data beside the checkout)")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmark_qc", help="output folder")
    p.add_argument("--methods", nargs="+", default=["none", "temperature", "boundary_temperature", "isotonic"])
    p.add_argument("--qc-method", default=None, help="calibration used for QC (default: the training default)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cache", action="store_true",
                   help="keep the network outputs in OUT/outputs.npz and reuse them on the next run (same model)")
    return p.parse_args(argv)


def _datalist_section(path: Path, section: str) -> list[dict[str, str]]:
    data = json.loads(path.read_text())
    return [{"image": str(d["image"]), "label": str(d["label"])} for d in data[section]]


def _jsrt_test(data: Path) -> list[dict[str, str]]:
    root = data / "jsrt_scr"
    with open(root / "splits.csv", newline="") as f:
        ids = [r["id"] for r in csv.DictReader(f) if r["split_in_source_repo"] == "test"]
    return [{"image": str(root / "images" / f"{i}.png"), "label": str(root / "masks" / f"{i}.png")} for i in ids]


def _openist(data: Path) -> list[dict[str, str]]:
    root = data / "openist_cxr"
    return [{"image": str(f), "label": str(root / "masks" / f.name)} for f in sorted((root / "images").glob("*.png"))]


@torch.no_grad()
def run_network(network: torch.nn.Module, items: list[dict[str, str]], artifact: Any, batch_size: int) -> dict:
    """Logits, flipped-back logits, labels and inputs of ``items`` at the network's resolution."""
    from monai.transforms import Compose

    from pipeline.transforms import preprocessing

    chain = Compose(preprocessing(artifact.image_size, artifact.intensity, artifact.num_classes))
    out: dict[str, list[np.ndarray]] = {"logits": [], "flipped": [], "labels": [], "images": []}
    for start in range(0, len(items), batch_size):
        data = [chain(dict(d)) for d in items[start:start + batch_size]]
        x = torch.stack([torch.as_tensor(d["image"]).float() for d in data])
        out["logits"].append(network(x).float().numpy())
        out["flipped"].append(network(torch.flip(x, dims=(-1,))).float().flip(-1).numpy())
        out["labels"].append(np.stack([np.asarray(d["label"])[0] for d in data]).round().astype(np.int64))
        out["images"].append(x.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def dice(masks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    inter = (masks.astype(bool) & labels.astype(bool)).sum((1, 2))
    denom = masks.astype(bool).sum((1, 2)) + labels.astype(bool).sum((1, 2))
    return np.where(denom > 0, 2 * inter / np.maximum(denom, 1), 1.0)


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(score)
    if positive[ok].all() or not positive[ok].any():
        return float("nan")
    return float(roc_auc_score(positive[ok], score[ok]))


def _oriented(name: str, values: np.ndarray, reference: dict) -> np.ndarray:
    """Scores turned so that larger means worse (for AUROC)."""
    from pipeline.metrics.qc_reference import QC_SCORES

    side = QC_SCORES[name].side
    if side == "low":
        return -values
    if side == "both":
        return np.abs(values - reference["scores"][name]["median"])
    return values


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from pipeline.engines.calibration_handler import (
        DEFAULT_CALIBRATION,
        calibrate_model,
        calibration_errors_pooled,
        masks_from_probabilities,
    )
    from pipeline.metrics.qc import assess
    from pipeline.metrics.qc_reference import QC_SCORES
    from pipeline.model import load_model
    from pipeline.postprocessing.calibration import apply_calibration, fit_calibration
    from pipeline.reporting.calibration_comparison import plot_calibration_comparison

    args.out.mkdir(parents=True, exist_ok=True)
    artifact, weights = load_model(args.model)
    network = artifact.build_network()
    network.load_state_dict(weights)
    network.eval()
    sets = {"validation": _datalist_section(args.datalist, "validation"), "jsrt_test": _jsrt_test(args.data),
            "openist": _openist(args.data)}
    t0 = time.perf_counter()
    cache = args.out / "outputs.npz"
    if args.cache and cache.is_file():
        flat = np.load(cache)
        outputs = {name: {k: flat[f"{name}/{k}"] for k in ("logits", "flipped", "labels", "images")} for name in sets}
    else:
        outputs = {name: run_network(network, items, artifact, args.batch_size) for name, items in sets.items()}
        if args.cache:
            np.savez(cache, **{f"{n}/{k}": v for n, o in outputs.items() for k, v in o.items()})
    logger.info("network outputs for %s in %.0f s", {k: len(v) for k, v in sets.items()}, time.perf_counter() - t0)
    val = outputs["validation"]
    results: dict[str, Any] = {
        "model": args.model.name, "artifact": artifact.describe(), "images": {k: len(v) for k, v in sets.items()},
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "calibration": {}, "qc": {}, "cleanup": {},
    }

    # ---- calibration methods -----------------------------------------------------------------------------------
    for method in args.methods:
        cal = fit_calibration(val["logits"], val["labels"], method=method)
        row: dict[str, Any] = {"description": {k: v for k, v in cal.items() if k not in ("x", "y")}}
        for name in ("jsrt_test", "openist"):
            prob = apply_calibration(outputs[name]["logits"], cal)
            masks = masks_from_probabilities(prob, artifact.threshold)
            row[name] = {**calibration_errors_pooled(prob, outputs[name]["labels"]),
                         "dice_mean": float(dice(masks, outputs[name]["labels"]).mean())}
        results["calibration"][method] = row
        logger.info("calibration %s: %s", method, row)

    # ---- QC against the validation reference (what the training handler stores) ----------------------------------
    qc_method = args.qc_method or DEFAULT_CALIBRATION
    for cleanup in (False, True):
        cal, reference, summary = calibrate_model(val["logits"], val["labels"], val["images"], val["flipped"],
                                                  method=qc_method, threshold=artifact.threshold, cleanup=cleanup)
        per_set: dict[str, list[dict[str, Any]]] = {}
        for name in ("validation", "jsrt_test", "openist"):
            o = outputs[name]
            prob = apply_calibration(o["logits"], cal)
            tta = apply_calibration(o["flipped"], cal)
            masks = masks_from_probabilities(prob, artifact.threshold, cleanup)
            d = dice(masks, o["labels"])
            rows = []
            for i in range(len(prob)):
                q = assess(prob[i], masks[i], reference, tta_prob=tta[i], image_small=o["images"][i])
                rows.append({"case": Path(sets[name][i]["image"]).stem, "dice": float(d[i]), "flagged": bool(q["qc_flags"]),
                             "flags": ";".join(q["qc_flags"]), "reasons": " | ".join(q["qc_reasons"]),
                             **{k: q[k] for k in (*QC_SCORES, "confidence", "n_components")}})
            per_set[name] = rows
        tag = "cleanup" if cleanup else "raw"
        p5 = float(np.percentile([r["dice"] for r in per_set["jsrt_test"]], 5))
        op = per_set["openist"]
        od = np.array([r["dice"] for r in op])
        flagged = np.array([r["flagged"] for r in op])
        bad = od < p5
        aurocs = {n: _auroc(_oriented(n, np.array([r[n] for r in op], dtype=float), reference), od < 0.90)
                  for n in QC_SCORES}
        aurocs["1-confidence"] = _auroc(-np.array([r["confidence"] for r in op]), od < 0.90)
        best = max((k for k in aurocs if np.isfinite(aurocs[k])), key=lambda k: aurocs[k], default=None)
        flag_counts = {n: int(sum(n in r["flags"].split(";") for r in op)) for n in QC_SCORES}
        results["qc"][tag] = {
            "calibration": cal["method"], "validation_calibration": summary,
            "limits": {k: {s: v for s, v in e.items() if s in ("low", "high", "max", "min")}
                       for k, e in reference["scores"].items()},
            "validation_flagged": float(np.mean([r["flagged"] for r in per_set["validation"]])),
            "jsrt_test_flagged": float(np.mean([r["flagged"] for r in per_set["jsrt_test"]])),
            "jsrt_test_dice_p5": p5,
            "jsrt_test_dice_mean": float(np.mean([r["dice"] for r in per_set["jsrt_test"]])),
            "openist_dice_mean": float(od.mean()),
            "openist_below_p5": int(bad.sum()),
            "openist_below_p5_flagged": float(flagged[bad].mean()) if bad.any() else float("nan"),
            "openist_others_flagged": float(flagged[~bad].mean()) if (~bad).any() else float("nan"),
            "openist_below_0.90": int((od < 0.90).sum()),
            "openist_auroc_dice_below_0.90": aurocs, "best_score": best,
            "openist_flag_counts": flag_counts,
        }
        for name, rows in per_set.items():
            with open(args.out / f"scores_{tag}_{name}.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        logger.info("QC (%s): %s", tag, {k: v for k, v in results["qc"][tag].items() if k != "limits"})
        results["cleanup"][tag] = {"jsrt_test_dice_mean": results["qc"][tag]["jsrt_test_dice_mean"],
                                   "jsrt_test_dice_p5": p5, "openist_dice_mean": float(od.mean()),
                                   "openist_dice_p5": float(np.percentile(od, 5)), "openist_dice_min": float(od.min())}

    fig = plot_calibration_comparison({m: {s: r[s] for s in ("jsrt_test", "openist")}
                                       for m, r in results["calibration"].items()})
    fig.savefig(args.out / "calibration_methods.png", dpi=110, facecolor="white")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The tables of ``docs/results.md``."""
    lines = [f"model: {results['artifact']}; images {results['images']}", "",
             "| calibration | JSRT test ECE | ACE | MCE | Dice | OpenIST ECE | ACE | MCE | Dice |", "|---" * 9 + "|"]
    for m, r in results["calibration"].items():
        j, o = r["jsrt_test"], r["openist"]
        lines.append(f"| {m} | {j['ece']:.4f} | {j['ace']:.4f} | {j['mce']:.4f} | {j['dice_mean']:.4f} | "
                     f"{o['ece']:.4f} | {o['ace']:.4f} | {o['mce']:.4f} | {o['dice_mean']:.4f} |")
    lines += ["", "| QC masks | JSRT test flagged | OpenIST < JSRT p5 flagged | others flagged | best score (AUROC) |",
              "|---|---|---|---|---|"]
    for tag, q in results["qc"].items():
        best = q["best_score"]
        lines.append(f"| {tag} | {100 * q['jsrt_test_flagged']:.1f} % | {100 * q['openist_below_p5_flagged']:.1f} % "
                     f"(n={q['openist_below_p5']}) | {100 * q['openist_others_flagged']:.1f} % | "
                     f"{best} ({q['openist_auroc_dice_below_0.90'].get(best, float('nan')):.3f}) |")
    lines += ["", "| cleanup | JSRT test Dice mean | p5 | OpenIST Dice mean | p5 | min |", "|---|---|---|---|---|---|"]
    for tag, c in results["cleanup"].items():
        lines.append(f"| {tag} | {c['jsrt_test_dice_mean']:.4f} | {c['jsrt_test_dice_p5']:.4f} | "
                     f"{c['openist_dice_mean']:.4f} | {c['openist_dice_p5']:.4f} | {c['openist_dice_min']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
