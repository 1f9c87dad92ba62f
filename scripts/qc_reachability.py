#!/usr/bin/env python
"""How far any threshold on a label-free QC score could go, from ``scripts/benchmark_qc.py``'s per-image scores.

Issue 15 asks that, on OpenIST, at least 80 % of the images whose Dice is below JSRT test's 5th percentile are
flagged, with at most 25 % of the other OpenIST images and at most 10 % of JSRT test flagged. The project's flags
fire against limits taken from the model's own validation images (``pipeline.metrics.qc_reference``). This script
asks a stronger question that needs the labels: for each score, over **every** threshold (and direction), what is the
best recall on the "below" images that keeps both false-alarm limits? That is an upper bound for any rule on one
score. It also fits a logistic regression on all scores **with the OpenIST labels** (an upper bound for rules that
combine scores, not a usable QC rule) and reports its AUROC and best recall under the same limits.

If even these bounds stay below 80 %, no choice of limits on these scores can meet the target for that model: the
"below" images are not unusual by anything a label-free score sees. Example::

    python scripts/qc_reachability.py outputs/benchmark_qc/basic_unet --kind cleanup

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

SCORES = ("uncertain_fraction", "mean_entropy", "area_fraction", "lr_ratio", "border_contact", "outside_body",
          "tta_disagreement")


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Dice per image and the ``(images, scores)`` matrix of :data:`SCORES` from one ``scores_*.csv``."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"{path}: no rows; run scripts/benchmark_qc.py first.")
    dice = np.array([float(r["dice"]) for r in rows])
    return dice, np.array([[float(r[s]) for s in SCORES] for r in rows])


def best_recall(bad: np.ndarray, good: np.ndarray, in_domain: np.ndarray, max_good: float, max_in_domain: float
                ) -> float:
    """Largest share of ``bad`` above a threshold that flags at most the given shares of ``good`` and ``in_domain``."""
    best = 0.0
    for t in np.unique(np.concatenate([bad, good, in_domain, [-np.inf]])):
        if (good > t).mean() <= max_good and (in_domain > t).mean() <= max_in_domain:
            best = max(best, float((bad > t).mean()))
    return best


def auroc(bad: np.ndarray, good: np.ndarray) -> float:
    """Probability that a random bad image scores above a random good one (ties count half): sklearn's ROC AUC."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(bad)), np.zeros(len(good))], np.r_[bad, good]))


def main(argv: list[str] | None = None) -> int:
    """Print the bounds for one ``benchmark_qc.py`` output folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a scripts/benchmark_qc.py --out folder")
    parser.add_argument("--kind", default="cleanup", choices=("cleanup", "raw"),
                        help="masks with or without the lung cleanup (default cleanup: the command's default)")
    parser.add_argument("--max-others", type=float, default=0.25, help="OpenIST others flagged at most (0.25)")
    parser.add_argument("--max-in-domain", type=float, default=0.10, help="JSRT test flagged at most (0.10)")
    args = parser.parse_args(argv)

    jsrt_dice, jsrt = read_scores(args.folder / f"scores_{args.kind}_jsrt_test.csv")
    open_dice, openist = read_scores(args.folder / f"scores_{args.kind}_openist.csv")
    p5 = float(np.percentile(jsrt_dice, 5))
    below = open_dice < p5
    print(f"{args.folder} ({args.kind}): JSRT test p5 Dice {p5:.4f}; OpenIST {int(below.sum())} of {len(below)} "
          f"below it (Dice {open_dice[below].min():.3f}-{open_dice[below].max():.3f})\n")
    print("| score | AUROC (below vs others) | best recall, any threshold | target |")
    print("|---|---|---|---|")
    for k, name in enumerate(SCORES):
        col, ref = openist[:, k], jsrt[:, k]
        recall = max(best_recall(sign * col[below], sign * col[~below], sign * ref, args.max_others,
                                 args.max_in_domain) for sign in (1.0, -1.0))
        area = auroc(col[below], col[~below])
        print(f"| {name} | {max(area, 1 - area):.3f} | {recall:.3f} | 0.80 |")
    from sklearn.linear_model import LogisticRegression

    mean, std = openist.mean(0), openist.std(0) + 1e-12
    fitted = LogisticRegression(max_iter=2000).fit((openist - mean) / std, below)
    combo = fitted.decision_function((openist - mean) / std)
    combo_ref = fitted.decision_function((jsrt - mean) / std)
    recall = best_recall(combo[below], combo[~below], combo_ref, args.max_others, args.max_in_domain)
    print(f"| all scores, logistic fit on OpenIST's labels (not label-free) | {auroc(combo[below], combo[~below]):.3f} "
          f"| {recall:.3f} | 0.80 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
