"""Fixtures of the node tests: a tiny trained model, radiographs in several encodings, a broken and a lateral one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import train_tiny_model  # noqa: E402

from pipeline.dicom import FIXTURE_VARIANTS, load_source_image, make_fixture_set, make_radiograph_dicom  # noqa: E402

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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, sample_dir) -> Path:
    import torch

    threads = torch.get_num_threads()
    try:
        return train_tiny_model(tmp_path_factory.mktemp("node-model") / "model.pt", sample_dir, steps=40)
    finally:
        torch.set_num_threads(threads)


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
