"""Peak memory of `xray-seg serve` while it segments one uploaded DICOM (not a test: run it by hand).

    python scripts/measure_upload_memory.py --model MODEL.pt --rows 3520 --cols 4280

It writes a 12-bit DICOM of the given size, starts `xray-seg serve` in a subprocess on a free 127.0.0.1 port, uploads
a small (512²) DICOM first so that one-time costs (lazy imports, highdicom's 60 MB table of the standard, first
allocations) are paid, then the file once, and prints the server's resident memory after the warm-up and its peak
(VmHWM) after the upload, in MB, the bytes per pixel the upload cost, and what an upload at the pixel limit would take
the server to. With ``--cold`` the warm-up is skipped (the first upload after a start). Linux only (reads /proc).
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
    parser.add_argument("--cold", action="store_true", help="no warm-up upload (one-time costs count)")
    args = parser.parse_args()

    from pipeline.dicom import make_radiograph_dicom

    rng = np.random.default_rng(0)
    pixels = (np.add.outer(np.linspace(0, 3000, args.rows), np.linspace(0, 1000, args.cols))
              + rng.integers(0, 50, (args.rows, args.cols))).astype(np.uint16)
    work = Path(tempfile.mkdtemp(prefix="xray-seg-mem-"))
    path = make_radiograph_dicom(pixels, work / "film.dcm", bits_stored=12, raw=True, uid_seed="memory")
    small = make_radiograph_dicom(pixels[:512, :512], work / "small.dcm", bits_stored=12, raw=True, uid_seed="warm")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--model", args.model, "--port", str(port),
                             "--device", "cpu", "--max-upload-mb", "512"],  # an uncompressed 64 Mpx film is 128 MB
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        while True:
            line = proc.stderr.readline()
            if "serving on" in line or not line:
                break
        if not args.cold:
            upload(port, small)
        idle = memory_mb(proc.pid, "VmRSS")
        start = time.perf_counter()
        status = upload(port, path)
        seconds = time.perf_counter() - start
        peak = memory_mb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait()
    from pipeline.io.limits import DEFAULT_PIXEL_LIMIT

    n = args.rows * args.cols
    per_pixel = (peak - idle) * 2**20 / n
    print(f"{args.rows} x {args.cols} ({n / 1e6:.1f} Mpx): HTTP {status}, {seconds:.1f} s, "
          f"{'first upload' if args.cold else 'after a warm-up upload'}: idle {idle:.0f} MB, peak {peak:.0f} MB, "
          f"{per_pixel:.0f} bytes per pixel; at the {DEFAULT_PIXEL_LIMIT / 1e6:.0f} Mpx limit: "
          f"{(idle + per_pixel * DEFAULT_PIXEL_LIMIT / 2**20) / 1024:.1f} GB")


def upload(port: int, path: Path) -> int:
    """POST ``path`` to ``/api/predict``; the HTTP status."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n\r\n"
            ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    conn.request("POST", "/api/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


if __name__ == "__main__":
    main()
