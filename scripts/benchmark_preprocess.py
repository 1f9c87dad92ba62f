#!/usr/bin/env python
"""Time and peak memory of the shared preprocessing (resize to the network size, [-1, 1]) against MONAI's ``Resized``.

For each input side (default 256, 2048 and 6000 pixels) and each method, a fresh subprocess

1. decodes nothing but builds the "decoded image": a float32 ``(side, side)`` radiograph-like array, as
   :func:`pipeline.io.read_image` returns it, and touches every page of it;
2. records the process's resident memory as the baseline and resets its peak (``/proc/self/clear_refs``);
3. runs the preprocessing once cold (for ``shared``: building the banded resize operators of this size) and then
   ``--repeat`` times warm, timing each call;
4. reports the cold time, the median warm time and the peak memory *above the decoded image* (peak resident memory,
   ``VmHWM``, minus the baseline): everything the preprocessing allocates, including the first call's imports.

Methods:

* ``shared``: ``Compose(pipeline.transforms.preprocessing(S, with_label=False, load=False))``, i.e. exactly what
  training, evaluation and every inference entry point run (:class:`pipeline.transforms.AntiAliasResized`).
* ``monai``: the same chain with MONAI's ``Resized(mode="bilinear", anti_aliasing=True)`` in place of the fast
  resize (Gaussian smoothing of the full-size image, then interpolation). Skipped above ``--monai-max-side`` (default
  2048: at 6000² it runs for minutes).

Both outputs are compared on the first size where both ran. Example::

    nice -n 10 python scripts/benchmark_preprocess.py --sides 256 2048 6000 --json outputs/preprocess.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

METHODS = ("shared", "monai")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 2048, 6000], help="input sides in pixels")
    parser.add_argument("--image-size", type=int, default=256, help="network input side (default 256)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="what to measure")
    parser.add_argument("--monai-max-side", type=int, default=2048,
                        help="largest side MONAI's Resized is run on (default 2048; it takes minutes at 6000)")
    parser.add_argument("--repeat", type=int, default=5, help="warm calls per measurement (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core, comparable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--_child", nargs=2, metavar=("METHOD", "SIDE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of this process from ``/proc/self/status``, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Reset the peak resident memory (``VmHWM``) to the current one (Linux >= 4.0: ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def _chain(method: str, image_size: int) -> Any:
    import torch
    from monai.transforms import Compose, Resized

    from pipeline.transforms import AntiAliasResized, preprocessing

    chain = preprocessing(image_size, "minmax", with_label=False, load=False)
    if method == "monai":
        index = next(i for i, t in enumerate(chain) if isinstance(t, AntiAliasResized))
        chain[index] = Resized(keys="image", spatial_size=(image_size, image_size), mode="bilinear",
                               anti_aliasing=True, dtype=torch.float32)
    return Compose(chain)


def child(method: str, side: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import numpy as np
    import torch

    from pipeline.io import XRayImage
    from pipeline.transforms import to_metatensor

    torch.set_num_threads(args.threads)
    chain = _chain(method, args.image_size)
    rng = np.random.default_rng(side)
    # a smooth radiograph-like field plus noise, float32 as the readers return it, built in strips (no full-size
    # temporaries), every page touched
    pixels = np.empty((side, side), dtype=np.float32)
    cols = np.cos(np.arange(side) / (side / 5.0)).astype(np.float32)
    for top in range(0, side, 256):
        rows = np.sin(np.arange(top, min(side, top + 256)) / (side / 7.0)).astype(np.float32)[:, None]
        strip = 2000 + 1000 * rows * cols
        pixels[top : top + len(rows)] = strip + rng.normal(0, 50, size=strip.shape).astype(np.float32)
    image = XRayImage(pixels, "<bench>", "array", None, (0.0, 4095.0))
    decoded_mb = pixels.nbytes / 2**20
    baseline = _status_mb("VmRSS")
    _reset_peak()

    def once() -> tuple[float, Any]:
        start = time.perf_counter()
        out = chain({"image": to_metatensor(image)})["image"]
        return time.perf_counter() - start, out

    cold, out = once()
    warm = [once()[0] for _ in range(args.repeat)]
    return {
        "method": method,
        "side": side,
        "decoded_image_mb": round(decoded_mb, 1),
        "cold_ms": round(cold * 1e3, 2),
        "warm_median_ms": round(statistics.median(warm) * 1e3, 2),
        "peak_above_image_mb": round(_status_mb("VmHWM") - baseline, 1),
        "output": torch.as_tensor(out).flatten().tolist()[:: max(1, args.image_size**2 // 4096)],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._child:
        print(json.dumps(child(args._child[0], int(args._child[1]), args)))
        return 0
    results = []
    for side in args.sides:
        for method in args.methods:
            if method == "monai" and side > args.monai_max_side:
                print(f"{side:>5}²  {method:<6}  skipped (above --monai-max-side {args.monai_max_side})", flush=True)
                continue
            cmd = [sys.executable, __file__, "--_child", method, str(side), "--image-size", str(args.image_size),
                   "--repeat", str(args.repeat), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            row = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(row)
            print(f"{side:>5}²  {method:<6}  cold {row['cold_ms']:>9.1f} ms  warm {row['warm_median_ms']:>9.1f} ms  "
                  f"peak {row['peak_above_image_mb']:>7.1f} MB above the {row['decoded_image_mb']:.0f} MB image",
                  flush=True)
    by_key = {(r["side"], r["method"]): r for r in results}
    for side in args.sides:
        if (side, "shared") in by_key and (side, "monai") in by_key:
            a, b = by_key[(side, "shared")]["output"], by_key[(side, "monai")]["output"]
            gap = max(abs(x - y) for x, y in zip(a, b))
            print(f"{side:>5}²  shared vs monai: max difference {gap:.2e} on the [-1, 1] scale (sampled pixels)")
    for r in results:
        r.pop("output")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"python": platform.python_version(), "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(), "threads": args.threads, "image_size": args.image_size,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
