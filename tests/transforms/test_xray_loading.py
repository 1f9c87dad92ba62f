"""X-ray loading: polarity, orientation, modality LUT, BitsStored, VOI, PNG/DICOM equality and value range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipeline.io import ImageReadError, UnsupportedImageError, read_image, sniff_format
from pipeline.transforms import LoadXRay, NormalizeLabel, preprocessing
from monai.transforms import Compose


def write_dicom(path, stored, photometric="MONOCHROME2", bits_stored=12, slope=1.0, intercept=0.0, window=None,
                preamble=True, spacing=(0.2, 0.1), rgb=False):
    """A DX 'for presentation' object holding exactly ``stored`` as its stored pixel values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128 if preamble else None)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else photometric
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if rgb else 16
    ds.BitsStored = 8 if rgb else bits_stored
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.ImagerPixelSpacing = list(spacing)
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype(np.uint8 if rgb else np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=preamble)
    return path


@pytest.fixture
def ramp():
    """A non-symmetric 12-bit pattern: any flip, transpose or inversion changes it."""
    rows, cols = 40, 56
    r, c = np.mgrid[0:rows, 0:cols]
    return ((r * 61 + c * 7) % 4096).astype(np.uint16)


def test_png_and_dicom_of_same_pixels_load_identically(tmp_path, ramp):
    pixels8 = (ramp // 16).astype(np.uint8)
    Image.fromarray(pixels8).save(tmp_path / "a.png")
    write_dicom(tmp_path / "a.dcm", pixels8.astype(np.uint16), bits_stored=8)
    png = LoadXRay()(tmp_path / "a.png")
    dcm = LoadXRay()(tmp_path / "a.dcm")
    assert png.shape == dcm.shape == (1, 40, 56)  # rows x cols, like numpy / PIL / pydicom
    torch.testing.assert_close(png.as_tensor(), dcm.as_tensor())
    np.testing.assert_array_equal(png[0].numpy(), pixels8.astype(np.float32))  # orientation = numpy's


def test_16bit_png_and_12bit_dicom_agree(tmp_path, ramp):
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "a16.png")
    write_dicom(tmp_path / "a12", ramp, bits_stored=12, preamble=False)  # no extension, no preamble
    assert sniff_format(tmp_path / "a12") == "dicom"
    np.testing.assert_array_equal(read_image(tmp_path / "a16.png").pixels, read_image(tmp_path / "a12").pixels)


def test_monochrome1_is_inverted_to_display_polarity(tmp_path, ramp):
    write_dicom(tmp_path / "m2.dcm", ramp, "MONOCHROME2")
    write_dicom(tmp_path / "m1.dcm", 4095 - ramp, "MONOCHROME1")
    m2, m1 = read_image(tmp_path / "m2.dcm"), read_image(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(m1.pixels, m2.pixels)
    assert m1.meta["inverted"] is True and m1.value_range == (0.0, 4095.0)


def test_modality_lut_and_bits_stored(tmp_path, ramp):
    # overlay garbage above BitsStored must be ignored; rescale slope/intercept applied
    dirty = ramp | (1 << 13)
    write_dicom(tmp_path / "r.dcm", dirty, bits_stored=12, slope=2.0, intercept=-1000.0)
    img = read_image(tmp_path / "r.dcm")
    np.testing.assert_allclose(img.pixels, ramp * 2.0 - 1000.0)
    assert img.value_range == (-1000.0, 4095 * 2.0 - 1000.0)
    assert img.spacing == (0.2, 0.1)


def test_monochrome1_with_rescale_matches_monochrome2(tmp_path, ramp):
    write_dicom(tmp_path / "m2.dcm", ramp, "MONOCHROME2", slope=0.5, intercept=10)
    write_dicom(tmp_path / "m1.dcm", 4095 - ramp, "MONOCHROME1", slope=0.5, intercept=10)
    np.testing.assert_allclose(read_image(tmp_path / "m1.dcm").pixels, read_image(tmp_path / "m2.dcm").pixels)


def test_optional_voi_window(tmp_path, ramp):
    write_dicom(tmp_path / "w.dcm", ramp, window=(1000, 500))
    raw = read_image(tmp_path / "w.dcm")
    windowed = read_image(tmp_path / "w.dcm", voi=True)
    assert raw.pixels.max() == ramp.max()  # full range kept by default
    assert windowed.meta.get("voi_applied") and windowed.pixels.min() == 0 and windowed.pixels.max() == 4095
    low, high = ramp < 750, ramp > 1250
    assert np.all(windowed.pixels[low] == 0) and np.all(windowed.pixels[high] == 4095)
    # MONOCHROME1 windowed gives the same picture as MONOCHROME2 windowed (inversion after the VOI step)
    write_dicom(tmp_path / "w1.dcm", 4095 - ramp, "MONOCHROME1", window=(4096 - 1000, 500))  # LINEAR windowing mirrors about c - 0.5
    np.testing.assert_allclose(read_image(tmp_path / "w1.dcm", voi=True).pixels, windowed.pixels, atol=1.0)


def test_refusals_name_the_file(tmp_path, ramp):
    rgb = np.stack([ramp % 256] * 3, axis=-1).astype(np.uint8)
    write_dicom(tmp_path / "rgb.dcm", rgb, rgb=True)
    with pytest.raises(UnsupportedImageError, match="rgb.dcm.*RGB"):
        read_image(tmp_path / "rgb.dcm")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png.*0 bytes"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "notes.dcm").write_text("this is not an image")
    with pytest.raises(ImageReadError, match="notes.dcm"):
        read_image(tmp_path / "notes.dcm")
    write_dicom(tmp_path / "t.dcm", ramp)
    data = (tmp_path / "t.dcm").read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="trunc.dcm"):
        read_image(tmp_path / "trunc.dcm")


def test_real_png_preprocessing_range_and_size(sample_dir):
    image = sample_dir / "images" / "JPCLN008.png"
    label = sample_dir / "masks" / "JPCLN008.png"
    for mode in ("minmax", "percentile"):
        out = Compose(preprocessing(128, mode))({"image": str(image), "label": str(label)})
        img, lbl = out["image"], out["label"]
        assert img.shape == lbl.shape == (1, 128, 128)
        assert float(img.min()) == pytest.approx(-1.0, abs=1e-5) and float(img.max()) == pytest.approx(1.0, abs=1e-5)
        assert set(torch.unique(lbl).tolist()) == {0.0, 1.0}
        assert 0.15 < float(lbl.mean()) < 0.5  # lungs cover 18-46 % of a JSRT film
        assert tuple(img.meta["spatial_shape"]) == (256, 256)
    # a chest film is brighter (denser) in the mediastinum than in the lungs: polarity is display polarity
    img = out["image"][0]
    lung = out["label"][0] > 0
    assert float(img[lung].mean()) < float(img[~lung].mean())


def test_normalize_label_binary_and_multiclass():
    m255 = torch.tensor([[0.0, 255.0], [128.0, 127.0]])[None]
    assert NormalizeLabel(1)(m255).tolist() == [[[0.0, 1.0], [1.0, 0.0]]]
    assert NormalizeLabel(1)(torch.tensor([[[0.0, 1.0]]])).tolist() == [[[0.0, 1.0]]]
    assert NormalizeLabel(3)(torch.tensor([[[0.0, 2.0]]])).tolist() == [[[0.0, 2.0]]]
    with pytest.raises(ValueError, match="class indices"):
        NormalizeLabel(3)(torch.tensor([[[0.0, 255.0]]]))
