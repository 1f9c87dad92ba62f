"""Helpers of the node tests (a module with a unique name: several test folders have a conftest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate

from pipeline.dicom import FIXTURE_VARIANTS, load_source_image, make_fixture_set, make_radiograph_dicom

#: Encodings and polarities sent to the node (a subset of the standard fixture set, plus its lateral).
VARIANTS = (
    "cr_mono1_12bit_explicit",
    "dx_mono2_12bit_explicit",
    "dx_mono2_16bit_jpeg-ls",
    "cr_mono1_12bit_jpeg2000",
    "dx_mono1_16bit_rle",
    "dx_mono2_12bit_lateral",
)
PATIENT_NAME = "SYNTHETIC^PATIENT"


def make_broken(path: Path, image: np.ndarray) -> Path:
    """A DX whose JPEG-LS pixel data is garbage: it decodes as a data set, not as an image."""
    make_radiograph_dicom(image, path, transfer_syntax="jpeg-ls", uid_seed=path.name)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(range(256)) * 4])
    ds.save_as(path, enforce_file_format=True)
    return path


def make_inputs(folder: Path, size: int = 128, seed: str = "") -> dict[str, Path]:
    """The standard variants named in :data:`VARIANTS` (their own studies), plus ``broken``."""
    variants = [v for v in FIXTURE_VARIANTS if v.name in VARIANTS]
    if seed:  # new UIDs for the same pictures (a second set for another destination)
        from dataclasses import replace

        variants = [replace(v, name=f"{seed}_{v.name}") for v in variants]
    files = make_fixture_set(folder, size=size, variants=variants)
    image = load_source_image(sorted((Path(__file__).parents[2] / "pipeline/data/sample/jsrt30/images").glob(
        "*.png"))[3], size)
    files[f"{seed}broken"] = make_broken(folder / f"{seed}broken.dcm", image)
    return files
