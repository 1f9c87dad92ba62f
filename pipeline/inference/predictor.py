"""The Predictor: the one road from a radiograph to a mask at its original size.

Every entry point (the batch command, the DICOM node, the web page, the bundles' inference and evaluation, the
benchmarks) segments through :meth:`Predictor.predict_batch`:

    preprocessed batch (:meth:`Predictor.preprocess`, the training chain without augmentation)
    → network (the fastest path that matches fp32) → logits / temperature → activation → calibration
    → back to each image's original size → threshold / argmax → cleanup → quality control

and everything it needs comes from the model artifact (:mod:`pipeline.model`) stored in ``model.pt``:
:meth:`Predictor.from_checkpoint` needs neither a bundle config nor the repository.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.transforms import Compose

from pipeline.io import XRayImage, read_image
from pipeline.keys import Keys
from pipeline.metrics.qc import assess, prediction_quality
from pipeline.model import ModelArtifact, load_model, model_version
from pipeline.postprocessing.calibration import apply_calibration
from pipeline.transforms.io import to_metatensor
from pipeline.transforms.presets import preprocessing, restore_original_size

__all__ = ["Prediction", "Predictor", "is_model_uri"]

logger = logging.getLogger(__name__)

#: Artifact fields a caller may override when building a Predictor (e.g. ``threshold=0.4``).
_OVERRIDABLE = ("image_size", "intensity", "num_classes", "threshold", "temperature", "cleanup", "network_name",
                "network_kwargs", "class_names")


def is_model_uri(model: str | Path) -> bool:
    """True for MLflow URIs such as ``models:/chest-xray-lung-seg@champion`` or ``runs:/<id>/model``."""
    return str(model).startswith(("models:/", "runs:/", "mlflow-artifacts:/"))


@dataclass
class Prediction:
    """The result for one image.

    Attributes:
        prob: float32 probabilities at the original size, ``(C, rows, cols)``; ``C == 1`` for the binary lung task.
        mask: uint8 mask at the original size: 0/1 for binary, class indices otherwise.
        prob_small: ``(C, S, S)`` probabilities at the network's resolution (what quality control looks at).
        quality: confidence, QC flags, their one-line reasons and the scores (:func:`pipeline.metrics.qc.assess`
            against the model's own validation reference), as the manifest and the review page show them.
        seconds: timing of the steps (``read``, ``preprocess``, ``model``, ``postprocess``).
        image: the image as read, when the Predictor read it (:meth:`Predictor.predict_file` /
            :meth:`Predictor.predict_images`), else ``None``.
    """

    prob: np.ndarray
    mask: np.ndarray
    prob_small: torch.Tensor
    quality: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    image: XRayImage | None = None

    @property
    def foreground_prob(self) -> np.ndarray:
        """Probability of the foreground (lung) class, ``(rows, cols)``; for multi-class, 1 - P(class 0)."""
        return self.prob[0] if self.prob.shape[0] == 1 else 1.0 - self.prob[0]


class Predictor:
    """Segment radiographs with a trained network, returning masks at the original image size.

    Args:
        network: the network (returns logits), with its weights loaded.
        artifact: how the network was trained and is to be run (:class:`pipeline.model.ModelArtifact`); defaults to
            the artifact's defaults. Keyword overrides below win over it.
        device: ``"cuda"``, ``"cpu"`` or ``None`` for CUDA when available.
        amp: use low precision where it is fast and matches fp32: bf16/fp16 autocast on CUDA, and bf16 on CPUs that
            compute it natively (AVX512-BF16 / AMX). The masks are checked against fp32 on the first batch after the
            weights are loaded (:func:`~pipeline.inference.acceleration.optimize_for_inference`); ``False`` keeps
            fp32. Defaults to True.
        voi: apply the DICOM VOI LUT / window before scaling. Defaults to False (as in training).
        postprocess: ``mask -> mask`` callable applied at the original size; defaults to the lung cleanup when the
            artifact says ``cleanup`` (binary models), else none.
        model_name: name recorded with outputs (e.g. the registered model name); defaults to the network name.
        model_version: version recorded with outputs (e.g. the registry version or the file's hash).
        qc_tta: also segment each image flipped left-right (in the same network call) for the QC score
            ``tta_disagreement``, the best single predictor of a failed mask measured (docs/results.md); it doubles
            the network's share of the work. Defaults to True.
        overrides: artifact fields to override (``image_size``, ``intensity``, ``num_classes``, ``threshold``,
            ``temperature``, ``cleanup``).

    Examples::

        >>> predictor = Predictor.from_checkpoint("models/model.pt")
        >>> result = predictor.predict_file("chest.dcm")
        >>> result.mask.shape == result.image.shape
        True
    """

    def __init__(
        self,
        network: nn.Module,
        artifact: ModelArtifact | None = None,
        device: str | torch.device | None = None,
        amp: bool = True,
        voi: bool = False,
        postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        model_name: str = "",
        model_version: str = "",
        qc_tta: bool = True,
        **overrides: Any,
    ) -> None:
        unknown = sorted(set(overrides) - set(_OVERRIDABLE))
        if unknown:
            raise TypeError(f"Predictor got unknown arguments {unknown}; artifact fields that can be overridden: "
                            f"{list(_OVERRIDABLE)}.")
        artifact = artifact or ModelArtifact()
        changes = {k: v for k, v in overrides.items() if v is not None and getattr(artifact, k) != v}
        self.artifact = artifact.replace(revision=artifact.revision, **changes) if changes else artifact
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu"
        )
        self.network = network.to(self.device).eval()
        self.amp = bool(amp)
        self.voi = bool(voi)
        if postprocess is None and self.artifact.cleanup and self.artifact.binary:
            from pipeline.postprocessing.cleanup import clean_lung_mask

            postprocess = clean_lung_mask
        self.postprocess = postprocess
        self.model_name = model_name or self.artifact.network_name
        self.model_version = model_version
        self.qc_tta = bool(qc_tta)
        self._transform = Compose(
            preprocessing(self.image_size, self.intensity, self.num_classes, with_label=False, load=False)
        )
        self._runner: nn.Module | None = None  # the network as it runs (bf16 / compile / ...), chosen on first batch
        self._acceleration: dict[str, Any] = {}
        self._runner_lock = threading.Lock()

    # ---- what the artifact says ---------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        """Side of the square the network sees."""
        return self.artifact.image_size

    @property
    def intensity(self) -> str:
        """Intensity scaling of the preprocessing."""
        return self.artifact.intensity

    @property
    def num_classes(self) -> int:
        """Network output channels (1 = binary)."""
        return self.artifact.num_classes

    @property
    def threshold(self) -> float:
        """Probability threshold of the binary case."""
        return self.artifact.threshold

    @property
    def temperature(self) -> float:
        """Logits are divided by this before the activation."""
        return self.artifact.temperature

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        model: str | Path,
        device: str | torch.device | None = None,
        amp: bool = True,
        default: ModelArtifact | None = None,
        tracking_uri: str | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Build network, preprocessing and post-processing from a model artifact alone.

        Args:
            model: a ``model.pt`` written by this project's training, or an MLflow model URI
                (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN/model``) resolved through
                :mod:`pipeline.tracking`, which records the registry version used.
            device: ``"cuda"``, ``"cpu"`` or None (CUDA when available).
            amp: see the class.
            default: artifact for a file that holds bare weights (a plain MONAI state dict).
            tracking_uri: MLflow store for model URIs; defaults to ``$MLFLOW_TRACKING_URI`` / the current folder's.
            kwargs: passed to the constructor (``postprocess``, ``voi``, ``model_name``, artifact overrides, ...).

        Raises:
            FileNotFoundError: the model file does not exist.
            pipeline.model.ModelFileError: the file is not a usable model file (the message says how to fix it).
        """
        if is_model_uri(model):
            from pipeline.tracking.serving import fetch_model  # only URIs need the registry (and mlflow)

            fetched = fetch_model(str(model), tracking_uri=tracking_uri)
            kwargs.setdefault("model_name", fetched.name)
            kwargs.setdefault("model_version", fetched.version)
            path = fetched.path
        else:
            path = Path(model)
        artifact, weights = load_model(path, default=default)
        network = artifact.build_network()
        try:
            network.load_state_dict(weights)
        except RuntimeError as err:
            raise RuntimeError(f"{path}: the weights do not fit the recorded network ({artifact.describe()}): "
                               f"{str(err).splitlines()[0]}") from err
        kwargs.setdefault("model_version", model_version(path))
        predictor = cls(network, artifact, device=device, amp=amp, **kwargs)
        logger.info("model %s version %s: %s", predictor.model_name, predictor.model_version, artifact.describe())
        return predictor

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, checkpoint: str | Path | None = None, **kwargs: Any) -> Predictor:
        """The model of a bundle folder (``models/model.pt`` unless ``checkpoint`` is given).

        Only the file is read: the artifact in it describes the network and preprocessing, not the bundle config.
        """
        return cls.from_checkpoint(Path(checkpoint) if checkpoint else Path(bundle_dir) / "models" / "model.pt",
                                   **kwargs)

    def load_checkpoint(self, path: str | Path) -> Predictor:
        """Load the weights (and artifact) of another model file of the same network into this Predictor."""
        artifact, weights = load_model(path, default=self.artifact)
        self.network.load_state_dict(weights)
        self.network.eval()
        self.artifact = artifact
        self.model_version = model_version(path)
        with self._runner_lock:
            self._runner, self._acceleration = None, {}
        return self

    # ---- the inference path -------------------------------------------------------------------------------------
    def prepare(self, example: torch.Tensor | None = None) -> nn.Module:
        """Choose how the network runs (bf16, channels-last, compile) on ``example``, once per set of weights.

        Low precision is checked against fp32 on real preprocessed images when ``example`` holds them (the first
        batch does); noise inputs drive a trained network into logits it never produces on radiographs.
        """
        with self._runner_lock:
            if self._runner is None:
                from pipeline.inference.acceleration import optimize_for_inference

                shape = tuple(example.shape) if example is not None else (1, 1, self.image_size, self.image_size)
                self._runner, self._acceleration = optimize_for_inference(
                    self.network, self.device, shape, low_precision=self.amp, cpu_bf16=self.amp,
                    example=example if self.amp else None,
                )
            return self._runner

    @property
    def runner(self) -> nn.Module:
        """The network as inference runs it (chosen by :meth:`prepare`, on the first batch)."""
        return self.prepare()

    @property
    def acceleration(self) -> dict[str, Any]:
        """What the choice of :attr:`runner` measured: ``chosen`` (e.g. ``"bf16"``), differences, timings, errors."""
        _ = self.runner
        return self._acceleration

    # ---- the road -----------------------------------------------------------------------------------------------
    def preprocess(self, image: XRayImage) -> torch.Tensor:
        """The training preprocessing (resize, [-1, 1]) of one image: a ``(1, S, S)`` float32 tensor."""
        out = self._transform({Keys.IMAGE.value: to_metatensor(image)})[Keys.IMAGE.value]
        return torch.as_tensor(out).float()

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw network outputs ``(B, C, S, S)`` for a preprocessed batch ``(B, 1, S, S)`` (float32)."""
        batch = torch.as_tensor(batch).float().to(self.device, non_blocking=True)
        runner = self._runner or self.prepare(batch)
        return runner(batch).float()  # autocast, if chosen, is inside the runner

    def calibrate(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities from logits: the artifact's calibration, else its temperature and the activation."""
        return apply_calibration(logits, self.artifact.calibration or self.temperature)

    def predict_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities ``(B, C, S, S)`` for a preprocessed batch, at the network's resolution."""
        return self.calibrate(self.logits(batch))

    def finish(self, prob_small: torch.Tensor, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Network-resolution probabilities ``(C, S, S)`` → probabilities and mask at the original ``(rows, cols)``."""
        prob = restore_original_size(torch.as_tensor(prob_small).float().cpu(), tuple(shape)).numpy()
        prob = prob.astype(np.float32, copy=False)
        if self.num_classes == 1:
            mask = (prob[0] > self.threshold).astype(np.uint8)
        else:
            mask = prob.argmax(axis=0).astype(np.uint8)
        if self.postprocess is not None:
            mask = np.asarray(self.postprocess(mask), dtype=np.uint8)
        return prob, mask

    def quality(
        self, prob_small: torch.Tensor, image_small: torch.Tensor | None = None, tta_prob: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Confidence, QC flags (with reasons) and scores of one prediction at the network's resolution.

        Args:
            prob_small: ``(C, S, S)`` calibrated probabilities.
            image_small: ``(1, S, S)`` network input (for the "outside the body" score).
            tta_prob: ``(C, S, S)`` calibrated probabilities of the flipped input, flipped back.
        """
        prob = torch.as_tensor(prob_small).float().cpu().numpy()
        if self.num_classes > 1 and "lung" not in self.artifact.class_names and not self.artifact.qc_reference:
            return prediction_quality(prob, self.threshold)  # no lung to judge (e.g. tissue classes): entropy only
        if self.num_classes == 1:
            mask = (prob[0] > self.threshold).astype(np.uint8)
            if self.artifact.cleanup:  # judged as it will be written (the reference was built the same way)
                from pipeline.postprocessing.cleanup import clean_lung_mask

                mask = clean_lung_mask(mask).astype(np.uint8)
        else:
            mask = prob.argmax(axis=0).astype(np.uint8)
        return assess(prob, mask, self.artifact.qc_reference or None,
                      tta_prob=None if tta_prob is None else torch.as_tensor(tta_prob).float().cpu().numpy(),
                      image_small=None if image_small is None else torch.as_tensor(image_small).float().cpu().numpy())

    def predict_batch(self, batch: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list[Prediction]:
        """Segment a preprocessed batch: the single road every entry point takes.

        Args:
            batch: ``(B, 1, S, S)`` from :meth:`preprocess` (stacked).
            shapes: the original ``(rows, cols)`` of each image, in batch order.

        Returns:
            One :class:`Prediction` per image, at its original size, with quality control.
        """
        batch = torch.as_tensor(batch)
        if batch.ndim != 4 or batch.shape[0] != len(shapes):
            raise ValueError(f"batch must be (B, 1, S, S) with one shape per image; got {tuple(batch.shape)} and "
                             f"{len(shapes)} shapes.")
        if batch.shape[0] == 0:
            return []
        t0 = time.perf_counter()
        n = batch.shape[0]
        if self.qc_tta:  # the flipped images ride in the same network call
            logits = self.logits(torch.cat([batch, torch.flip(batch, dims=(-1,))]))
            probs = self.calibrate(logits[:n]).float().cpu()
            flipped = self.calibrate(logits[n:].flip(-1)).float().cpu()
        else:
            probs, flipped = self.predict_tensor(batch).float().cpu(), None
        model_share = (time.perf_counter() - t0) / len(shapes)
        out = []
        for i, (prob_small, shape) in enumerate(zip(probs, shapes)):
            t1 = time.perf_counter()
            prob, mask = self.finish(prob_small, shape)
            quality = self.quality(prob_small, batch[i], None if flipped is None else flipped[i])
            out.append(Prediction(prob, mask, prob_small, quality,
                                  {"model": model_share, "postprocess": time.perf_counter() - t1}))
        return out

    def predict_images(self, images: Sequence[XRayImage]) -> list[Prediction]:
        """Preprocess and segment already-read images as one batch."""
        if not images:
            return []
        t0 = time.perf_counter()
        batch = torch.stack([self.preprocess(im) for im in images])
        share = (time.perf_counter() - t0) / len(images)
        results = self.predict_batch(batch, [im.shape for im in images])
        for image, result in zip(images, results):
            result.image = image
            result.seconds["preprocess"] = share
        return results

    def predict_array(self, pixels: np.ndarray, spacing: tuple[float, float] | None = None) -> Prediction:
        """Segment a 2D array (display polarity, any size)."""
        image = XRayImage(np.asarray(pixels, dtype=np.float32), "<array>", "array", spacing)
        return self.predict_images([image])[0]

    def predict_file(self, path: str | Path) -> Prediction:
        """Read (any supported format, chosen by content) and segment one file."""
        t0 = time.perf_counter()
        image = read_image(path, voi=self.voi)
        read_seconds = time.perf_counter() - t0
        result = self.predict_images([image])[0]
        result.seconds["read"] = read_seconds
        return result
