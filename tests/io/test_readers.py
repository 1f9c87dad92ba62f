"""``pipeline.io`` reads by content without importing ``pipeline.dicom``; DICOM comes in through the reader registry."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from pipeline.io import read_image, registered_formats, write_png

REPO = Path(__file__).resolve().parents[2]


def _dicom(path: Path) -> Path:
    from pipeline.dicom import make_radiograph_dicom

    pixels = (np.arange(48 * 40, dtype=np.float64).reshape(48, 40) % 251).astype(np.uint8)
    return Path(make_radiograph_dicom(pixels, path))


def test_io_alone_reads_rasters_and_names_the_missing_dicom_reader(tmp_path):
    """In a fresh interpreter: importing pipeline.io does not import pipeline.dicom; a DICOM read says what to do."""
    dcm = _dicom(tmp_path / "image")  # no extension: the content decides
    png = write_png(tmp_path / "a.png", np.full((5, 7), 9, np.uint8))
    script = textwrap.dedent(
        f"""
        import sys
        from pipeline.io import ImageReadError, read_image
        assert not any(m.startswith("pipeline.dicom") for m in sys.modules), "pipeline.io imported pipeline.dicom"
        assert read_image({str(png)!r}).shape == (5, 7)
        try:
            read_image({str(dcm)!r})
        except ImageReadError as err:
            print(err)
        else:
            raise SystemExit("read DICOM without a registered reader")
        import pipeline.dicom
        print(read_image({str(dcm)!r}).shape)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "no DICOM reader is registered" in lines[0] and "import pipeline.dicom" in lines[0]
    assert lines[-1] == "(48, 40)"


def test_dicom_is_registered_by_pipeline_dicom(tmp_path):
    import pipeline.dicom  # noqa: F401 - registers the reader

    assert {"dicom", "png", "jpeg", "tiff", "nifti"} <= set(registered_formats())
    image = read_image(_dicom(tmp_path / "b.dcm"))
    assert image.format == "dicom" and image.shape == (48, 40)
