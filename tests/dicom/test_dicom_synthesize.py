"""Generated DX/CR fixtures: every variant decodes to the intended pixels, MONOCHROME1 and 2 agree."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from pipeline.dicom import (
    FIXTURE_VARIANTS,
    TRANSFER_SYNTAXES,
    default_source_images,
    derived_uid,
    load_source_image,
    make_fixture_set,
    read_dicom,
)

SIZE = 96


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_fixture_set(tmp_path_factory.mktemp("dicom"), size=SIZE)


def test_sources_exist():
    sources = default_source_images()
    assert sources, "neither the shared JSRT films nor the committed sample were found"


@pytest.mark.parametrize("variant", FIXTURE_VARIANTS, ids=lambda v: v.name)
def test_variant_decodes_to_source(fixtures, variant):
    kwargs = variant.kwargs
    ds = pydicom.dcmread(fixtures[variant.name], force=True)
    bits = kwargs.get("bits_stored", 12)
    syntax = kwargs.get("transfer_syntax", "explicit")
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[syntax]
    assert ds.PhotometricInterpretation == kwargs.get("photometric", "MONOCHROME2")
    assert (ds.BitsStored, ds.Modality) == (bits, kwargs.get("modality", "DX"))
    assert ds.PatientName == "SYNTHETIC^PATIENT"
    assert ds.SOPInstanceUID == derived_uid("synthetic-sop", variant.name)  # reproducible, compressed or not
    assert ("PixelSpacing" in ds) == ("PixelSpacing" in kwargs.get("spacing_attributes", ()))
    assert ("FrameOfReferenceUID" in ds) == kwargs.get("frame_of_reference", False)
    if kwargs.get("spacing", ()) is not None:
        assert "ImagerPixelSpacing" in ds or "PixelSpacing" in ds
    source = load_source_image(default_source_images()[variant.source % len(default_source_images())], SIZE)
    expected = np.rint(source.astype(np.float64) * ((2**bits - 1) / 255.0))
    image = read_dicom(fixtures[variant.name])
    np.testing.assert_array_equal(image.pixels, expected)  # MONOCHROME1 inverted back by the reader
    assert image.value_range == (0.0, float(2**bits - 1))


def test_mono1_and_mono2_pairs_read_identically(fixtures):
    pairs = 0
    for name, path in fixtures.items():
        if "mono1" in name and "pixelspacing" not in name:
            twin = name.replace("mono1", "mono2").replace("cr_", "dx_")
            stored1 = pydicom.dcmread(path).pixel_array
            stored2 = pydicom.dcmread(fixtures[twin]).pixel_array
            assert not np.array_equal(stored1, stored2)  # the stored values really are inverted
            np.testing.assert_array_equal(read_dicom(path).pixels, read_dicom(fixtures[twin]).pixels)
            pairs += 1
    assert pairs == 8
