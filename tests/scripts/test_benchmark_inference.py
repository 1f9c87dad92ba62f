"""scripts/benchmark_inference.py runs the real batch path end to end and reports every stage (a smoke run)."""

from __future__ import annotations

import json
import subprocess
import sys

from xray_test_paths import REPO_ROOT, TINY_BASIC_UNET


def test_benchmark_inference_reports_every_stage(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "benchmark_inference.py"), "--sizes", "160", "--n", "3",
           "--network-kwargs", json.dumps(TINY_BASIC_UNET), "--image-size", "64", "--batch-size", "2",
           "--workers", "0", "--repeats", "1", "--json", str(out), "--workdir", str(tmp_path / "work")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| cpu | basic_unet 64² |" in proc.stdout and "160² 16-bit" in proc.stdout
    seg_only, default = json.loads(out.read_text())["results"]  # side by side: SEG only, then the default outputs
    assert (seg_only["outputs"], default["outputs"]) == ("seg", "seg,png,overlay")
    assert seg_only["relative_to_first"] == 1.0
    assert default["relative_to_first"] == default["images_per_second"] / seg_only["images_per_second"]
    assert len(default["passes"]) == 1 and default["median_pass_ratio"] == default["relative_to_first"]
    for result in (seg_only, default):
        assert result["images"] == 3 and result["images_per_second"] > 0
        assert set(result["ms_per_image"]) == {"read", "preprocess", "model", "write"}
        assert abs(sum(result["share"].values()) - 1.0) < 1e-6
        assert result["path"] in {"fp32", "bf16"} and result["image_size"] == 64
    work = tmp_path / "work" / "out160_cpu"
    assert len(list((work / "run0" / "seg").glob("*.dcm"))) == 3 and not (work / "run0" / "overlays").exists()
    assert len(list((work / "run1" / "overlays").glob("*.png"))) == 3
    assert "| seg,png,overlay |" in proc.stdout
