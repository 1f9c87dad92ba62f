"""X-ray segmentation pipeline on MONAI: networks, transforms, data, bundles, evaluation, tracking and inference."""

__version__ = "0.1.0"

__all__ = ["__version__"]
