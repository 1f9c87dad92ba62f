"""Compare two registered versions on one named evaluation set, and let the promotion rule use those figures.

Validation figures recorded at training time are only comparable when both versions were validated on the same
datalist with the same metric (see :func:`~pipeline.tracking.registry.comparability`). When they were not, a user
evaluates both versions on one folder of images and masks: the same images, the same preprocessing of each
version, the same Dice. The figures are written on both versions (tags ``compare.<set hash>.*``) and, on request,
the better version becomes champion.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.tracking.registry import CHAMPION, get_version, promote

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["VersionComparison", "compare_versions", "evaluation_set_hash"]

logger = logging.getLogger(__name__)


@dataclass
class VersionComparison:
    """Two versions' mean Dice on one evaluation set.

    Attributes:
        name: registered model name.
        reference: the version compared against (usually the champion).
        candidate: the version that may replace it.
        data: the evaluation folder.
        set_hash: hash of the evaluation set's files (names and contents).
        n_images: images evaluated.
        dice: mean foreground Dice of each version, ``{version: value}``.
        promoted: whether the candidate was made champion.
    """

    name: str
    reference: str
    candidate: str
    data: str
    set_hash: str
    n_images: int
    dice: dict[str, float] = field(default_factory=dict)
    promoted: bool = False

    @property
    def better(self) -> bool:
        """Whether the candidate's Dice is strictly higher than the reference's."""
        return self.dice[self.candidate] > self.dice[self.reference]

    @property
    def reason(self) -> str:
        """One sentence with the numbers."""
        sign = ">" if self.better else "<="
        return (f"mean Dice on {self.data} ({self.n_images} images, set {self.set_hash[:12]}): "
                f"v{self.candidate} {self.dice[self.candidate]:.4f} {sign} v{self.reference} "
                f"{self.dice[self.reference]:.4f}")  # fmt: skip


def evaluation_set_hash(pairs: list[dict[str, str]]) -> str:
    """SHA-256 over the evaluation set's file names and contents (the same folder gives the same hash)."""
    from pipeline.tracking.provenance import file_sha256

    digest = hashlib.sha256()
    for pair in sorted(pairs, key=lambda p: p["id"]):
        for key in ("image", "label"):
            digest.update(f"{key}:{Path(pair[key]).name}:{file_sha256(pair[key])}\n".encode())
    return digest.hexdigest()


def _mean_dice(predictor: Any, pairs: list[dict[str, str]]) -> float:
    """Mean over images of the mean foreground Dice (classes 1..K of the label map; binary masks: > 0)."""
    from pipeline.io import read_image
    from pipeline.metrics.overlap import overlap_metrics

    scores = []
    for pair in pairs:
        mask = np.asarray(predictor.predict_file(pair["image"]).mask)
        label = np.asarray(read_image(pair["label"]).pixels)
        label = label[..., 0] if label.ndim == 3 else label
        classes = int(predictor.artifact.num_classes)
        if classes <= 1:
            mask, label, classes = (mask > 0).astype(np.int64), (label > 0).astype(np.int64), 2
        else:
            classes += 1  # background + K classes
        dice = overlap_metrics(mask.astype(np.int64), label.astype(np.int64), classes)["dice"]
        scores.append(float(np.mean(dice[1:])))
    return float(np.mean(scores))


def compare_versions(
    client: MlflowClient,
    name: str,
    reference: str | int,
    candidate: str | int,
    data: str | Path,
    load: Callable[[str], Any],
    promote_if_better: bool = False,
) -> VersionComparison:
    """Evaluate two versions on the images and masks of ``data``; tag both; optionally promote the candidate.

    Args:
        client: MLflow client (store and registry).
        name: registered model name.
        reference: version number or ``@alias`` compared against (e.g. ``@champion``).
        candidate: version number or ``@alias`` that may replace it.
        data: folder with ``images/`` and ``masks/`` (paired by file stem, as for training).
        load: ``model URI -> Predictor`` (e.g. ``pipeline.inference.load_predictor``); the caller brings inference,
            so tracking stays below it.
        promote_if_better: make the candidate champion when its Dice is strictly higher.

    Returns:
        The comparison; its figures are also tags on both versions: ``compare.<set hash 12>.mean_dice``,
        ``.n_images`` and ``.data`` (the folder's name).

    Raises:
        FileNotFoundError: ``data`` lacks ``images/`` or ``masks/``.
        ValueError: no image/mask pairs in ``data``.
    """
    from pipeline.data.pairing import pair_folder

    versions = [str(get_version(client, name, ref).version) for ref in (reference, candidate)]
    pairs = pair_folder(data).pairs
    if not pairs:
        raise ValueError(f"{data}: no image/mask pairs (expected images/ and masks/ with matching file names).")
    result = VersionComparison(name, versions[0], versions[1], Path(data).name, evaluation_set_hash(pairs), len(pairs))
    for version in versions:
        result.dice[version] = _mean_dice(load(f"models:/{name}/{version}"), pairs)
        prefix = f"compare.{result.set_hash[:12]}."
        for key, value in (("mean_dice", repr(result.dice[version])), ("n_images", str(len(pairs))),
                           ("data", result.data)):  # fmt: skip
            client.set_model_version_tag(name, version, prefix + key, value)
    logger.info("%s: %s", name, result.reason)
    champion = None
    try:
        champion = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except Exception:  # no champion yet
        champion = None
    if promote_if_better and result.better and champion != result.candidate:
        promote(name, result.candidate, reason=f"compare: {result.reason}", client=client)
        result.promoted = True
    return result
