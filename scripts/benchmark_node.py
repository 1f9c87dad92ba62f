"""Benchmark the DICOM node: received → SEG stored at the PACS latency, and sustained throughput vs `xray-seg predict`.

The "PACS" is a pynetdicom Storage SCP in this process that records when each SEG arrives (Orthanc itself cannot bind
to loopback alone; the tests run the real Orthanc in a network namespace). The node is what users run: ``xray-seg
listen`` in its own process (``--in-process`` runs a :class:`pipeline.node.DicomNode` in this one instead, where it
shares the interpreter lock with the sender and the PACS), with its real queue on disk, forwarding by C-STORE over
loopback; the sender is a pynetdicom C-STORE client. Radiographs are made from the shared JSRT films (or the embedded
sample) at ``--size``.

* **latency**: images sent one at a time (the next after the previous SEG arrived); time from the start of the
  C-STORE to the SEG stored at the PACS; median and 90th percentile.
* **throughput**: all images sent back-to-back on one association; images / (last SEG stored - first C-STORE).
* **predict**: :class:`pipeline.inference.BatchRunner` (what ``xray-seg predict`` runs) on the same files, in
  images/s over the whole run (including its start-up), with the node's batch size and workers.

Usage::

    python scripts/benchmark_node.py --model bundles/chest_xray_lung_segmentation/models/model.pt --size 2048 \\
        --images 12 --threads 2 --json node_bench.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pacs:
    """A Storage SCP that stores SEGs in memory and notes when each arrived, by referenced source UID."""

    def __init__(self) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import SecondaryCaptureImageStorage, SegmentationStorage

        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        ae = AE("PACS")
        for sop in (SegmentationStorage, SecondaryCaptureImageStorage):
            ae.add_supported_context(sop, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.port = free_port()

        def on_store(event):
            ds = event.dataset
            refs = [r.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence
                    for r in s.ReferencedInstanceSequence]
            with self.cond:
                for uid in refs:
                    self.arrived.setdefault(uid, time.perf_counter())
                self.cond.notify_all()
            return 0x0000

        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])

    def wait(self, uids: list[str], timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(u in self.arrived for u in uids):
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{sum(u in self.arrived for u in uids)}/{len(uids)} SEGs arrived")


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    from pipeline.dicom import default_source_images, load_source_image, make_radiograph_dicom

    sources = default_source_images()
    return [make_radiograph_dicom(load_source_image(sources[i % len(sources)], size), folder / f"img{i:03d}.dcm",
                                  uid_seed=f"bench-{folder.name}-{size}-{i}", transfer_syntax="explicit") for i in range(n)]


def sender(port: int, files: list[Path]):
    import pydicom
    from pynetdicom import AE

    ae = AE("BENCH")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="XRAYSEG")
    if not assoc.is_established:
        raise RuntimeError("the node refused the association")
    return assoc, {f: pydicom.dcmread(f) for f in files}


class InProcessNode:
    """A :class:`pipeline.node.DicomNode` in this process."""

    def __init__(self, config, predictor) -> None:
        from pipeline.node import DicomNode

        self.node = DicomNode(config, predictor=predictor)

    def start(self) -> None:
        self.node.start()

    def stop(self) -> None:
        self.node.stop()


class ListenProcess:
    """``xray-seg listen`` in its own process, with ``threads`` torch threads; ready once it answers C-ECHO."""

    def __init__(self, config, threads: int, work: Path) -> None:
        self.config, self.threads, self.log = config, threads, work / "listen.log"
        self.process = None

    def start(self, timeout: float = 300.0) -> None:
        import subprocess

        from pynetdicom import AE

        command = [sys.executable, "-m", "pipeline.cli", "listen", "--model", str(self.config.model),
                   "--out", str(self.config.out), "--port", str(self.config.port),
                   "--batch-size", str(self.config.batch_size), "--workers", str(self.config.workers),
                   "--min-free-mb", "1", "--device", "cpu"] + [a for f in self.config.forward for a in ("--forward", f.url)]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        ae = AE("BENCH")
        ae.add_requested_context("1.2.840.10008.1.1")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"xray-seg listen exited:\n{self.log.read_text()[-2000:]}")
            assoc = ae.associate("127.0.0.1", self.config.port, ae_title=self.config.ae_title)
            if assoc.is_established:
                assoc.release()
                return
            time.sleep(0.5)
        raise TimeoutError("xray-seg listen did not answer C-ECHO")

    def stop(self) -> None:
        import signal

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model.pt or MLflow URI")
    parser.add_argument("--size", type=int, default=2048, help="side of the radiographs (default 2048)")
    parser.add_argument("--images", type=int, default=12, help="images per measurement (default 12)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the 2-core target)")
    parser.add_argument("--batch-size", type=int, default=4, help="node and predict batch size (default 4)")
    parser.add_argument("--workers", type=int, default=0, help="node and predict decoding workers (default 0)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--in-process", action="store_true",
                        help="run the node in this process instead of `xray-seg listen` in its own")
    args = parser.parse_args()

    from pipeline.runtime import configure_openmp

    configure_openmp()  # as `xray-seg predict` and `xray-seg listen` do, before torch loads
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    from pipeline.inference import BatchRunner
    from pipeline.node import NodeConfig, load_node_predictor

    work = Path(tempfile.mkdtemp(prefix="xray-seg-node-bench-"))
    files = make_images(work / "images", args.images, args.size)
    latency_files = make_images(work / "latency", max(5, args.images // 2), args.size)
    pacs = Pacs()
    config = NodeConfig(model=args.model, out=work / "node", port=free_port(), batch_size=args.batch_size,
                        workers=args.workers, forward=[f"dimse://PACS@127.0.0.1:{pacs.port}"], min_free_mb=1)
    predictor = load_node_predictor(config)
    node = InProcessNode(config, predictor) if args.in_process else ListenProcess(config, args.threads, work)
    node.start()
    try:
        # warm-up (first model call chooses the inference path)
        warm = make_images(work / "warm", 1, args.size)
        assoc, ds = sender(config.port, warm)
        assoc.send_c_store(ds[warm[0]])
        assoc.release()
        pacs.wait([str(ds[warm[0]].SOPInstanceUID)])

        latencies = []
        assoc, datasets = sender(config.port, latency_files)
        for f in latency_files:
            t0 = time.perf_counter()
            assoc.send_c_store(datasets[f])
            uid = str(datasets[f].SOPInstanceUID)
            pacs.wait([uid])
            latencies.append(pacs.arrived[uid] - t0)
        assoc.release()

        assoc, datasets = sender(config.port, files)
        t0 = time.perf_counter()
        for f in files:
            assoc.send_c_store(datasets[f])
        assoc.release()
        uids = [str(datasets[f].SOPInstanceUID) for f in files]
        pacs.wait(uids)
        node_ips = len(files) / (max(pacs.arrived[u] for u in uids) - t0)
    finally:
        node.stop()

    t0 = time.perf_counter()
    BatchRunner(predictor, work / "predict", batch_size=args.batch_size, workers=args.workers,
                progress=False).run([work / "images"])
    predict_ips = len(files) / (time.perf_counter() - t0)
    result = {
        "size": args.size, "images": len(files), "threads": args.threads, "batch_size": args.batch_size,
        "latency_median_s": statistics.median(latencies),
        "latency_p90_s": sorted(latencies)[int(0.9 * (len(latencies) - 1))],
        "node_images_per_s": node_ips, "predict_images_per_s": predict_ips, "ratio": node_ips / predict_ips,
        "node": "in process" if args.in_process else "xray-seg listen (own process)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(result, indent=1))
    print(f"| {args.size}² | {len(files)} | {result['latency_median_s']:.2f} s | {result['latency_p90_s']:.2f} s | "
          f"{node_ips:.2f} | {predict_ips:.2f} | {result['ratio']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
