"""Peak memory of `xray-seg serve` while it segments one uploaded DICOM (not a test: run it by hand).

    python scripts/measure_upload_memory.py --model MODEL.pt --rows 3520 --cols 4280

It writes a 12-bit DICOM of the given size, starts `xray-seg serve` in a subprocess on a free 127.0.0.1 port, uploads
the file once and prints the server's resident memory before and its peak (VmHWM) after, in MB, and the bytes per
pixel the upload cost. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np


def memory_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", type=int, default=3520)
    parser.add_argument("--cols", type=int, default=4280)
    args = parser.parse_args()

    from pipeline.dicom import make_radiograph_dicom

    rng = np.random.default_rng(0)
    pixels = (np.add.outer(np.linspace(0, 3000, args.rows), np.linspace(0, 1000, args.cols))
              + rng.integers(0, 50, (args.rows, args.cols))).astype(np.uint16)
    work = Path(tempfile.mkdtemp(prefix="xray-seg-mem-"))
    path = make_radiograph_dicom(pixels, work / "film.dcm", bits_stored=12, raw=True, uid_seed="memory")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--model", args.model, "--port", str(port),
                             "--device", "cpu"], stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        while True:
            line = proc.stderr.readline()
            if "serving on" in line or not line:
                break
        idle = memory_mb(proc.pid, "VmRSS")
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"film.dcm\"\r\n\r\n"
                ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
        conn.request("POST", "/api/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = conn.getresponse()
        response.read()
        seconds = time.perf_counter() - start
        peak = memory_mb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait()
    n = args.rows * args.cols
    print(f"{args.rows} x {args.cols} ({n / 1e6:.1f} Mpx): HTTP {response.status}, {seconds:.1f} s, "
          f"idle {idle:.0f} MB, peak {peak:.0f} MB, {(peak - idle) * 2**20 / n:.0f} bytes per pixel")


if __name__ == "__main__":
    main()
