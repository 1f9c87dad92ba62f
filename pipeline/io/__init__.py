"""Image file input: format sniffing and readers returning :class:`XRayImage` in display polarity."""

from pipeline.io.formats import IMAGE_SUFFIXES, sniff_format
from pipeline.io.image import ImageReadError, UnsupportedImageError, XRayImage
from pipeline.io.png import encode_png
from pipeline.io.readers import read_image, read_mask, register_reader, registered_formats
from pipeline.io.writers import atomic_path, encode_mask_png, write_mask_nifti, write_mask_png, write_png

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "UnsupportedImageError",
    "XRayImage",
    "atomic_path",
    "encode_png",
    "read_image",
    "read_mask",
    "register_reader",
    "registered_formats",
    "sniff_format",
    "write_mask_nifti",
    "encode_mask_png",
    "write_mask_png",
    "write_png",
]
