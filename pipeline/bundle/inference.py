"""The inference engine of the bundles' ``inference.yaml``: the batch runner behind ``xray-seg predict``.

MONAI's inference workflow names a ``dataset`` and an ``evaluator`` (the zoo checks them); here the dataset lists the
input files and the evaluator hands them to :class:`pipeline.inference.BatchRunner`, so the bundle writes its masks
exactly as ``xray-seg predict`` does (same preprocessing, same model call, same writers, resumable).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.data import Dataset

__all__ = ["FolderInference", "input_dataset"]


def input_dataset(inputs: str | Path | Sequence[str | Path], exclude: Sequence[str | Path] = ()) -> Dataset:
    """A MONAI ``Dataset`` of ``{"image": path}`` items for every input file under ``inputs`` (sorted).

    Args:
        inputs: a folder, a file, or a list of them.
        exclude: folders never read (the output folder when it lies inside the input folder).

    Raises:
        FileNotFoundError: an input does not exist (the message names it).
    """
    from pipeline.dicom.discovery import discover_inputs

    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    for item in items:
        if not Path(item).exists():
            raise FileNotFoundError(f"{item}: input not found. Pass --input_dir with a folder of radiographs "
                                    "(DICOM, PNG, JPEG, TIFF or NIfTI).")
    files = discover_inputs(items, exclude=[Path(e) for e in exclude])
    return Dataset(data=[{"image": str(f)} for f in files])


class FolderInference:
    """Run ``runner`` (a :class:`~pipeline.inference.BatchRunner`) over the files of ``dataset``.

    Args:
        runner: the batch runner (predictor, output folder, output kinds, batch size, ...).
        dataset: items with an ``image`` path (see :func:`input_dataset`).
    """

    def __init__(self, runner: Any, dataset: Sequence[dict[str, Any]]) -> None:
        self.runner = runner
        self.dataset = dataset
        self.summary: Any = None

    def run(self) -> Any:
        """Segment every file; returns (and keeps) the runner's summary."""
        self.summary = self.runner.run([item["image"] for item in self.dataset])
        return self.summary
