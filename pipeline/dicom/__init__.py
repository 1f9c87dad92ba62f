"""DICOM input and output: decoding with owned photometrics, selection rules, DICOM SEG writing."""

from pipeline.dicom.reader import dicom_value_range, read_dicom

__all__ = ["dicom_value_range", "read_dicom"]
