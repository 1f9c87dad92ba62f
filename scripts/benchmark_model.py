#!/usr/bin/env python
"""Model-only inference speed: GPU throughput per network, precision, layout and compilation; CPU latency.

GPU part (when CUDA is present): forward-only images/s at ``--image-size`` (256) for every network of
``--networks`` (basic_unet, xnet, lite_unet) in fp32 and bf16 autocast, at batch 64 and 256, four ways each:
eager, channels-last, ``torch.compile``, ``torch.compile`` + channels-last. Each way is the
:class:`pipeline.inference.acceleration.OptimizedNetwork` the Predictor would use, and each is checked against eager
fp32 on the same batch (mean probability difference, mask agreement); the last column says which way
``optimize_for_inference`` would pick (fastest that matches). Networks are randomly initialised (speed does not
depend on the weights). Rows are printed as they are measured, most wanted first (bf16, batch 256).

CPU part: single-image latency (batch 1) with ``--cpu-threads`` (2) threads, eager fp32, channels-last fp32 and bf16
autocast (with its mask agreement with fp32): median and minimum over ``--repeats`` calls, the variants interleaved
so that load from other processes hits them alike.

CPU training step (``--cpu-train``, opt-in): forward + backward + Adam step at ``--train-size`` (128) and batch
``--train-batch`` (16), float32 against bf16 autocast (the forward under ``torch.autocast("cpu", torch.bfloat16)``,
float32 weights, as ``pipeline.engines.CpuAutocastInferer`` trains), one thread, interleaved. It reports the process
CPU-seconds per step (what the step costs, nearly untouched by other jobs sharing the cores) beside the wall-clock
seconds, and the speed-up.

Examples::

    python scripts/benchmark_model.py                    # everything (GPU part only with CUDA)
    python scripts/benchmark_model.py --skip-cpu         # GPU throughput only
    python scripts/benchmark_model.py --quick            # CPU smoke run: fewer repeats
    python scripts/benchmark_model.py --skip-gpu --skip-cpu --cpu-train   # CPU training step: fp32 vs bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"eager": (False, False), "channels_last": (True, False), "compile": (False, True),
            "compile+channels_last": (True, True)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", nargs="+", default=["basic_unet", "xnet", "lite_unet"])
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 64])
    p.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--gpu-seconds", type=float, default=2.0, help="timed seconds per GPU measurement (after warm-up)")
    p.add_argument("--cpu-threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10, help="timed single-image calls per network on CPU")
    p.add_argument("--cpu-train", action="store_true",
                   help="also measure a CPU training step (forward+backward+Adam) in fp32 and bf16 autocast")
    p.add_argument("--train-size", type=int, default=128, help="image side for --cpu-train (default 128)")
    p.add_argument("--train-batch", type=int, default=16, help="batch for --cpu-train (default 16)")
    p.add_argument("--train-repeats", type=int, default=3, help="timed steps per precision for --cpu-train")
    p.add_argument("--skip-gpu", action="store_true")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 CPU repeats, 0.5 s per GPU measurement")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.gpu_seconds = 3, 0.5
    return args


def _network(name: str) -> torch.nn.Module:
    from pipeline.networks import get_network

    torch.manual_seed(0)
    return get_network(name, spatial_dims=2, in_channels=1, out_channels=1).eval()


@torch.inference_mode()
def _throughput(net: torch.nn.Module, x: torch.Tensor, seconds: float) -> tuple[float, torch.Tensor]:
    """Images/s of forward passes on ``x`` (3 warm-up calls, which include compilation), and the first output."""
    out = net(x)
    for _ in range(2):
        net(x)
    torch.cuda.synchronize()
    calls, start = 0, time.perf_counter()
    while True:
        net(x)
        calls += 1
        if calls % 5 == 0:
            torch.cuda.synchronize()
            if time.perf_counter() - start >= seconds:
                break
    torch.cuda.synchronize()
    return calls * x.shape[0] / (time.perf_counter() - start), out.float()


def gpu_throughput(args: argparse.Namespace, device: torch.device | None = None) -> list[dict[str, Any]]:
    from pipeline.inference.acceleration import InferenceOptions, OptimizedNetwork

    device = device or torch.device("cuda")
    low = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    rows: list[dict[str, Any]] = []
    print(f"\n## GPU throughput: {torch.cuda.get_device_name(0)}, {args.image_size}², forward only, images/s\n")
    print("| network | dtype | batch | " + " | ".join(args.variants) + " | fastest matching eager fp32 |")
    print("|---|---|---|" + "---|" * len(args.variants) + "---|", flush=True)
    for dtype_name in args.dtypes:
        for batch in args.batch_sizes:
            for name in args.networks:
                base = _network(name).to(device)
                generator = torch.Generator(device="cpu").manual_seed(0)
                x = torch.randn(batch, 1, args.image_size, args.image_size, generator=generator).clamp(-1, 1)
                x = x.to(device)
                with torch.inference_mode():
                    reference = torch.sigmoid(base(x).float())
                row: dict[str, Any] = {"network": name, "dtype": dtype_name, "batch": batch, "images_per_s": {},
                                       "mean_prob_diff": {}, "mask_agreement": {}, "errors": {}}
                for variant in args.variants:
                    channels_last, compiled = VARIANTS[variant]
                    options = InferenceOptions(low if dtype_name == "bf16" else None, channels_last, compiled)
                    try:
                        net = OptimizedNetwork(copy.deepcopy(base), options, {"dynamic": False}).eval()
                        speed, out = _throughput(net, x, args.gpu_seconds)
                    except Exception as err:  # report (e.g. out of memory) and go on
                        row["errors"][variant] = f"{type(err).__name__}: {err}"[:300]
                        torch.cuda.empty_cache()
                        continue
                    prob = torch.sigmoid(out)
                    row["images_per_s"][variant] = speed
                    row["mean_prob_diff"][variant] = float((prob - reference).abs().mean())
                    row["mask_agreement"][variant] = float(((prob > 0.5) == (reference > 0.5)).float().mean())
                    del net, out, prob
                    torch.cuda.empty_cache()
                ok = {v: s for v, s in row["images_per_s"].items()
                      if row["mean_prob_diff"][v] <= 0.01 and row["mask_agreement"][v] >= 0.995}
                row["fastest_matching"] = max(ok, key=ok.get) if ok else None
                cells = [f"{row['images_per_s'][v]:,.0f}" if v in row["images_per_s"] else "failed"
                         for v in args.variants]
                print(f"| {name} | {dtype_name} | {batch} | " + " | ".join(cells) + f" | {row['fastest_matching']} |",
                      flush=True)
                rows.append(row)
                del base, x, reference
                torch.cuda.empty_cache()
    return rows


def cpu_latency(args: argparse.Namespace) -> list[dict[str, Any]]:
    from pipeline.inference.acceleration import InferenceOptions, OptimizedNetwork, cpu_has_native_bf16

    torch.set_num_threads(args.cpu_threads)
    rows: list[dict[str, Any]] = []
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
    print(f"\n## CPU single-image latency: {cpu} (native bf16: {cpu_has_native_bf16()}), {args.cpu_threads} threads, "
          f"{args.image_size}², batch 1, {args.repeats} calls (ms)\n")
    print("| network | eager fp32 median | min | channels-last fp32 median | min | bf16 autocast median | min | "
          "bf16 mask agreement |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    x = torch.randn(1, 1, args.image_size, args.image_size).clamp(-1, 1)
    variants = {"eager": InferenceOptions(), "channels_last": InferenceOptions(channels_last=True),
                "bf16": InferenceOptions(torch.bfloat16)}
    for name in args.networks:
        row: dict[str, Any] = {"network": name, "threads": args.cpu_threads}
        nets = {k: OptimizedNetwork(_network(name), o).eval() for k, o in variants.items()}
        times: dict[str, list[float]] = {k: [] for k in variants}
        outputs = {}
        with torch.inference_mode():
            for i in range(args.repeats + 2):  # interleaved, so load from other jobs hits every variant alike
                for key, net in nets.items():
                    start = time.perf_counter()
                    outputs[key] = net(x)
                    if i >= 2:  # two warm-up rounds
                        times[key].append(1e3 * (time.perf_counter() - start))
        for key, values in times.items():
            row[key] = {"median_ms": statistics.median(values), "min_ms": min(values)}
        row["bf16"]["mask_agreement"] = float(((outputs["bf16"] > 0) == (outputs["eager"] > 0)).float().mean())
        print(f"| {name} | " + " | ".join(f"{row[k]['median_ms']:.0f} | {row[k]['min_ms']:.0f}" for k in variants)
              + f" | {row['bf16']['mask_agreement']:.4f} |", flush=True)
        rows.append(row)
    return rows


def cpu_training_step(args: argparse.Namespace) -> list[dict[str, Any]]:
    """CPU-seconds (and wall seconds) per training step, float32 vs bf16 autocast, one thread, interleaved."""
    import torch.nn.functional as F

    from pipeline.engines import cpu_has_native_bf16

    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    print(f"\n## CPU training step: forward + backward + Adam, {args.train_size}², batch {args.train_batch}, 1 thread, "
          f"native bf16: {cpu_has_native_bf16()}; one warm-up + {args.train_repeats} timed steps each, interleaved\n")
    print("| network | fp32 CPU-s/step (min) | bf16 CPU-s/step (min) | speed-up (CPU time) | fp32 wall s (min) "
          "| bf16 wall s (min) |")
    print("|---|---|---|---|---|---|", flush=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.train_batch, 1, args.train_size, args.train_size, generator=generator)
    y = (torch.rand(x.shape, generator=generator) > 0.5).float()
    for name in args.networks:
        net = _network(name).train()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
        cpu_s: dict[str, list[float]] = {"fp32": [], "bf16": []}
        wall_s: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for step in range(args.train_repeats + 1):
            for mode in ("fp32", "bf16"):
                c0, w0 = time.process_time(), time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    logits = net(x)
                loss = F.binary_cross_entropy_with_logits(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if step > 0:  # the first round warms up allocators and oneDNN kernels
                    cpu_s[mode].append(time.process_time() - c0)
                    wall_s[mode].append(time.perf_counter() - w0)
        row = {"network": name, "size": args.train_size, "batch": args.train_batch,
               "cpu_s": cpu_s, "wall_s": wall_s, "speedup_cpu": min(cpu_s["fp32"]) / min(cpu_s["bf16"])}
        print(f"| {name} | {min(cpu_s['fp32']):.2f} | {min(cpu_s['bf16']):.2f} | **{row['speedup_cpu']:.2f}×** | "
              f"{min(wall_s['fp32']):.2f} | {min(wall_s['bf16']):.2f} |", flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, Any] = {"machine": platform.node(), "torch": torch.__version__, "args": vars(args) | {
        "out": str(args.out)}}
    print(f"machine: {platform.node()}; torch {torch.__version__}; networks {', '.join(args.networks)}")
    if not args.skip_gpu:
        if torch.cuda.is_available():
            torch.backends.cudnn.benchmark = True
            results["gpu"] = gpu_throughput(args)
        else:
            print("\n(no CUDA device: GPU throughput not measured)")
    if not args.skip_cpu:
        results["cpu"] = cpu_latency(args)
    if args.cpu_train:
        results["cpu_train"] = cpu_training_step(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
