"""Image file input: format sniffing and readers returning :class:`XRayImage` in display polarity."""

from pipeline.io.formats import IMAGE_SUFFIXES, sniff_format
from pipeline.io.image import ImageReadError, UnsupportedImageError, XRayImage
from pipeline.io.readers import read_image, read_mask

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "UnsupportedImageError",
    "XRayImage",
    "read_image",
    "read_mask",
    "sniff_format",
]
