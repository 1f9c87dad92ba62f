#!/usr/bin/env python
"""The table of ``scripts/gpu_suite.sh``: one Markdown summary from the raw results of its steps.

Reads ``RAW/steps.tsv`` (step, status, seconds, limit) and the JSON each benchmark wrote into ``RAW``
(``training.json``, ``model.json``, ``inference.json``, ``quality_*/results.json``) and prints the figures next to
the issue's targets. A step that failed or ran out of time shows as such; its figures are left out.

Example::

    python scripts/gpu_suite_summary.py outputs/gpu_suite/run1/raw --seconds 512
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def steps_table(raw: Path) -> list[str]:
    lines = ["| step | status | seconds | limit s |", "|---|---|---|---|"]
    for row in (raw / "steps.tsv").read_text().splitlines() if (raw / "steps.tsv").is_file() else []:
        name, status, seconds, limit = (row.split("\t") + ["", "", "", ""])[:4]
        lines.append(f"| {name} | {status} | {seconds} | {limit} |")
    log = raw / "pytest_gpu.log"
    if log.is_file():
        tail = [line for line in log.read_text().splitlines() if line.strip()][-1:]
        lines += ["", f"pytest -m gpu: {tail[0] if tail else '(no output)'}"]
    return lines


def training_table(raw: Path) -> list[str]:
    data = _load(raw / "training.json")
    if not data:
        return ["training: no results"]
    args = data.get("args", {})
    lines = [f"training ({data.get('machine')}; {args.get('image_size')}², batch {args.get('batch_size')}, "
             f"{args.get('epochs')} epochs; {data.get('flags')}); targets: (b)/(c) ≥ 0.9, val Dice ≥ "
             f"{args.get('target_dice')} within 60 s", "",
             "| path | images/s | vs bare | s to target (epoch) | best val Dice | JSRT test Dice |",
             "|---|---|---|---|---|---|"]
    bare = data["results"].get("bare", {}).get("images_per_s")
    for name, r in data["results"].items():
        reached = (f"{r['time_to_target_s']:.1f} ({r['epoch_to_target']})" if r.get("time_to_target_s") is not None
                   else "not reached")
        ratio = r["images_per_s"] / bare if bare else None
        lines.append(f"| {name} | {r['images_per_s']:.0f} | {_num(ratio, '.2f')} | {reached} | "
                     f"{r['best_val_dice']:.4f} | {r['test_dice']:.4f} |")
    return lines


def model_table(raw: Path) -> list[str]:
    data = _load(raw / "model.json")
    rows = (data or {}).get("gpu") or []
    if not rows:
        return ["model: no GPU results" + (" (CPU latency only)" if (data or {}).get("cpu") else "")]
    variants = list(dict.fromkeys(v for r in rows for v in r["images_per_s"]))
    lines = ["model-only images/s (targets: BasicUNet ≥ 7,000, XNet ≥ 3,400 at 256², bf16, batch 256)", "",
             "| network | dtype | batch | " + " | ".join(variants) + " | fastest matching fp32 |",
             "|---|---|---|" + "---|" * len(variants) + "---|"]
    for r in rows:
        cells = [f"{r['images_per_s'][v]:,.0f}" if v in r["images_per_s"] else "failed" for v in variants]
        lines.append(f"| {r['network']} | {r['dtype']} | {r['batch']} | " + " | ".join(cells)
                     + f" | {r.get('fastest_matching')} |")
    return lines


def quality_table(raw: Path) -> list[str]:
    lines = ["quality (targets: best ≥ 0.980 JSRT / ≥ 0.965 OpenIST, XNet ≥ 0.975 JSRT)", "",
             "| run | epochs | train s | best val Dice | JSRT mean | JSRT 5th pct | JSRT worst | OpenIST mean "
             "| OpenIST 5th pct | OpenIST worst |", "|---|---|---|---|---|---|---|---|---|---|"]
    for folder in sorted(f for f in raw.glob("quality_*") if f.is_dir()):
        data = _load(folder / "results.json")
        if not data or not data.get("networks"):
            lines.append(f"| {folder.name[8:]} | no results | | | | | | | | |")
            continue
        for r in data["networks"].values():
            j, o = r["jsrt_test"], r["openist"]
            lines.append(f"| {folder.name[8:]} | {r['epochs']} | {r['train_seconds']:.0f} | {r['best_val_dice']:.4f} "
                         f"| {j['mean']:.4f} | {j['p05']:.3f} | {j['min']:.3f} | {o['mean']:.4f} | {o['p05']:.3f} "
                         f"| {o['min']:.3f} |")
    return lines


def inference_table(raw: Path) -> list[str]:
    data = _load(raw / "inference.json")
    if not data:
        return ["inference: no results"]
    lines = ["end-to-end batch inference (default outputs)", "",
             "| device | input | images/s | decode % | model % | write % | model-only images/s |",
             "|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        share = r["share"]
        lines.append(f"| {r['device']} | {r['size']}² | {r['images_per_second']:.2f} | {100 * share['read']:.0f} | "
                     f"{100 * share['model']:.0f} | {100 * share['write']:.0f} | "
                     f"{r['model_only_images_per_second']:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", type=Path, help="the suite's raw/ folder")
    p.add_argument("--seconds", type=float, default=None, help="the suite's wall-clock seconds")
    p.add_argument("--dry-run", type=int, default=0, help="1 when the suite ran in --dry-run mode")
    args = p.parse_args(argv)
    if not args.raw.is_dir():
        print(f"error: {args.raw} is not a folder; pass the raw/ folder written by scripts/gpu_suite.sh",
              file=sys.stderr)
        return 2
    title = "# GPU suite" + (" — DRY RUN on the CPU, figures meaningless" if args.dry_run else "")
    parts = [[title, "", f"wall clock: {_num(args.seconds, '.0f')} s"], steps_table(args.raw),
             quality_table(args.raw), training_table(args.raw), model_table(args.raw), inference_table(args.raw)]
    print("\n\n".join("\n".join(part) for part in parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
