"""The Predictor: one object that turns radiographs into lung (or tissue) masks at their original size.

The batch command, the bundle's inference config, the web page and the benchmarks all call this class, so every
image takes the same road: read → preprocess (the training chain, without augmentation) → network → probabilities
→ back to the original size → threshold → optional cleanup.
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

from pipeline.io import ImageReadError, XRayImage, read_image, write_mask_nifti, write_mask_png
from pipeline.keys import Keys
from pipeline.transforms.io import to_metatensor
from pipeline.transforms.presets import preprocessing, restore_original_size

__all__ = ["Prediction", "Predictor", "load_checkpoint", "read_checkpoint"]

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """The result for one image.

    Attributes:
        image: the image as read (original size, display polarity).
        prob: float32 probabilities at the original size, shape ``(C, rows, cols)``; ``C == 1`` for the binary lung
            task (lung probability), else one channel per class.
        mask: uint8 mask at the original size: 0/1 for binary, class indices otherwise.
        seconds: timing of the steps (``read``, ``preprocess``, ``model``, ``postprocess``).
    """

    image: XRayImage
    prob: np.ndarray
    mask: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def foreground_prob(self) -> np.ndarray:
        """Probability of the foreground (lung) class, ``(rows, cols)``; for multi-class, 1 - P(class 0)."""
        return self.prob[0] if self.prob.shape[0] == 1 else 1.0 - self.prob[0]


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint saved by the bundle's ``CheckpointSaver`` (a state dict, or ``{"model": state_dict, ...}``).

    Returns:
        ``(weights, extras)``: the network's state dict and the entries stored beside it (``settings``,
        ``temperature``), possibly empty.

    Raises:
        FileNotFoundError: the checkpoint does not exist; the message says how to make one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: checkpoint not found. Train first (`python -m monai.bundle run training --config_file "
            "configs/train.yaml`) or pass the path of a model.pt."
        )
    state = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        return state["model"], {k: v for k, v in state.items() if k != "model"}
    return state, {}


def load_checkpoint(network: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the weights of a bundle checkpoint into ``network`` (see :func:`read_checkpoint`).

    Returns:
        The extra entries stored beside the weights (e.g. ``temperature``), possibly empty.
    """
    weights, extras = read_checkpoint(path, map_location)
    network.load_state_dict(weights)
    return extras


class Predictor:
    """Segment radiographs with a trained network, returning masks at the original image size.

    Args:
        network: the network (returns logits).
        image_size: side the network was trained at. Defaults to 256.
        intensity: intensity scaling used in training (``"minmax"`` or ``"percentile"``).
        num_classes: network output channels: 1 = binary sigmoid, more = softmax.
        threshold: probability threshold for the binary case. Defaults to 0.5.
        device: ``"cuda"``, ``"cpu"`` or ``None`` for CUDA when available.
        amp: use low precision where it is fast and matches fp32: bf16/fp16 autocast on CUDA, and bf16 on CPUs that
            compute it natively (AVX512-BF16 / AMX). The masks are checked against fp32 on first use after weights load
            (:func:`~pipeline.inference.acceleration.optimize_for_inference`); ``False`` keeps fp32. Defaults to True.
        temperature: logits are divided by this before the activation (temperature scaling). Defaults to 1.
        voi: apply the DICOM VOI LUT / window before scaling. Defaults to False (as in training).
        postprocess: optional ``mask -> mask`` callable applied at the original size (e.g. lung cleanup).
        model_name: name recorded with outputs (e.g. the registered model name).
        model_version: version recorded with outputs.

    Examples::

        >>> predictor = Predictor.from_bundle("bundles/chest_xray_lung_segmentation")
        >>> result = predictor.predict_file("chest.dcm")
        >>> result.mask.shape == result.image.shape
        True
    """

    def __init__(
        self,
        network: nn.Module,
        image_size: int = 256,
        intensity: str = "minmax",
        num_classes: int = 1,
        threshold: float = 0.5,
        device: str | torch.device | None = None,
        amp: bool = True,
        temperature: float = 1.0,
        voi: bool = False,
        postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        model_name: str = "",
        model_version: str = "",
    ) -> None:
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu"
        )
        self.network = network.to(self.device).eval()
        self.image_size = int(image_size)
        self.intensity = intensity
        self.num_classes = int(num_classes)
        self.threshold = float(threshold)
        self.amp = bool(amp)
        self.temperature = float(temperature)
        self.voi = voi
        self.postprocess = postprocess
        self.model_name = model_name
        self.model_version = model_version
        self._transform = Compose(
            preprocessing(self.image_size, self.intensity, self.num_classes, with_label=False, load=False)
        )
        self._runner: nn.Module | None = None  # the network as it runs (bf16 / compile / ...), chosen on first use
        self._acceleration: dict[str, Any] = {}
        self._runner_lock = threading.Lock()

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_bundle(
        cls,
        bundle_dir: str | Path,
        checkpoint: str | Path | None = None,
        config_file: str = "configs/train.yaml",
        overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Build the network and preprocessing settings from a bundle's config and load its checkpoint.

        Settings saved in the checkpoint (image size, intensity, classes, threshold, network and its arguments:
        :class:`pipeline.engines.ModelSettings`) win over the bundle config, so a model trained with other settings
        (e.g. the 128² CPU default) is run the way it was trained; ``overrides`` win over both.

        Args:
            bundle_dir: the bundle folder.
            checkpoint: weights file; defaults to the bundle's ``ckpt_dir/model.pt``.
            config_file: config (relative to the bundle) that defines ``network_def`` and the preprocessing keys.
            overrides: config overrides, e.g. ``{"network_name": "xnet"}``.
            kwargs: passed to the constructor (``device``, ``postprocess``, ...).
        """
        from monai.bundle import ConfigParser

        from pipeline.engines.model_settings import SETTINGS_KEY

        bundle_dir = Path(bundle_dir)
        parser = ConfigParser()
        parser.read_config(str(bundle_dir / config_file))
        parser["bundle_root"] = str(bundle_dir)
        for key, value in (overrides or {}).items():
            parser[key] = value
        ckpt = Path(checkpoint) if checkpoint else Path(parser.get_parsed_content("ckpt_dir")) / "model.pt"
        weights, extras = read_checkpoint(ckpt)
        for key, value in dict(extras.get(SETTINGS_KEY) or {}).items():
            if key not in (overrides or {}) and key in parser:
                parser[key] = value
        network = parser.get_parsed_content("network_def")
        network.load_state_dict(weights)
        kwargs.setdefault("temperature", float(extras.get("temperature", 1.0)))
        kwargs.setdefault("model_name", str(parser.get_parsed_content("network_name")))
        return cls(
            network,
            image_size=parser.get_parsed_content("image_size"),
            intensity=parser.get_parsed_content("intensity"),
            num_classes=parser.get_parsed_content("num_classes"),
            threshold=parser.get_parsed_content("threshold"),
            **kwargs,
        )

    def load_checkpoint(self, path: str | Path) -> Predictor:
        """Load weights into the network (and a stored temperature, if any); returns ``self``.

        The inference path (bf16, channels-last, compile) is chosen again, for the new weights, on next use.
        """
        extras = load_checkpoint(self.network, path, map_location=self.device)
        if "temperature" in extras:
            self.temperature = float(extras["temperature"])
        self.network.eval()
        with self._runner_lock:
            self._runner, self._acceleration = None, {}
        return self

    @property
    def runner(self) -> nn.Module:
        """The network as inference runs it: the fastest path whose masks match eager fp32 (see ``amp``).

        Chosen on first use (so once per loaded set of weights) by
        :func:`~pipeline.inference.acceleration.optimize_for_inference`; it shares its weights with :attr:`network`
        or holds a copy of them.
        """
        with self._runner_lock:
            if self._runner is None:
                from pipeline.inference.acceleration import optimize_for_inference

                n = 2 if self.device.type != "cuda" else 8
                self._runner, self._acceleration = optimize_for_inference(
                    self.network, self.device, (n, 1, self.image_size, self.image_size), low_precision=self.amp,
                    cpu_bf16=self.amp, example=self._check_batch(n) if self.amp else None,
                )
            return self._runner

    @property
    def acceleration(self) -> dict[str, Any]:
        """What the choice of :attr:`runner` measured: ``chosen`` (e.g. ``"bf16"``), differences, timings, errors."""
        _ = self.runner
        return self._acceleration

    def _check_batch(self, n: int) -> torch.Tensor | None:
        """``n`` real radiographs from the embedded sample, preprocessed: what low precision is checked on.

        Noise inputs drive a trained network into logits it never produces on radiographs; the masks that must
        agree with fp32 are those of real images. ``None`` (noise then) if the sample cannot be read.
        """
        from pipeline.data.resolve import sample_dir

        files = sorted((sample_dir() / "images").glob("*.png"))[:n]
        try:
            return torch.stack([torch.as_tensor(self.preprocess(read_image(f))) for f in files])
        except (ImageReadError, OSError, RuntimeError) as err:
            logger.warning("low-precision check on noise: the embedded sample could not be read (%s)", err)
            return None

    # ---- the road -----------------------------------------------------------------------------------------------
    def preprocess(self, image: XRayImage) -> torch.Tensor:
        """The training preprocessing (resize, [-1, 1]) of one image: a ``(1, S, S)`` tensor."""
        return self._transform({Keys.IMAGE.value: to_metatensor(image)})[Keys.IMAGE.value]

    @torch.inference_mode()
    def predict_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B, C, S, S)`` for a preprocessed batch ``(B, 1, S, S)``."""
        batch = torch.as_tensor(batch).to(self.device, non_blocking=True)
        logits = self.runner(batch).float() / self.temperature  # autocast, if chosen, is inside the runner
        return torch.sigmoid(logits) if self.num_classes == 1 else torch.softmax(logits, dim=1)

    def finish(self, image: XRayImage, prob_small: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Model-resolution probabilities ``(C, S, S)`` → probabilities and mask at the original size of ``image``."""
        prob = restore_original_size(prob_small.cpu(), image.shape).numpy().astype(np.float32)
        if self.num_classes == 1:
            mask = (prob[0] > self.threshold).astype(np.uint8)
        else:
            mask = prob.argmax(axis=0).astype(np.uint8)
        if self.postprocess is not None:
            mask = np.asarray(self.postprocess(mask), dtype=np.uint8)
        return prob, mask

    def predict_images(self, images: Sequence[XRayImage]) -> list[Prediction]:
        """Segment already-read images as one batch."""
        if not images:
            return []
        t0 = time.perf_counter()
        batch = torch.stack([torch.as_tensor(self.preprocess(im)) for im in images])
        t1 = time.perf_counter()
        probs = self.predict_tensor(batch)
        t2 = time.perf_counter()
        out = []
        for image, prob_small in zip(images, probs):
            t3 = time.perf_counter()
            prob, mask = self.finish(image, prob_small)
            seconds = {
                "preprocess": (t1 - t0) / len(images),
                "model": (t2 - t1) / len(images),
                "postprocess": time.perf_counter() - t3,
            }
            out.append(Prediction(image, prob, mask, seconds))
        return out

    def predict_array(self, pixels: np.ndarray, spacing: tuple[float, float] | None = None) -> Prediction:
        """Segment a 2D array (display polarity, any size)."""
        image = XRayImage(np.asarray(pixels, dtype=np.float32), "<array>", "array", spacing)
        return self.predict_images([image])[0]

    def predict_file(self, path: str | Path) -> Prediction:
        """Read (any supported format, chosen by content) and segment one file."""
        t0 = time.perf_counter()
        image = read_image(path, voi=self.voi)
        result = self.predict_images([image])[0]
        result.seconds["read"] = time.perf_counter() - t0 - sum(result.seconds.values())
        return result

    def predict_folder(
        self,
        input_dir: str | Path,
        output_dir: str | Path,
        formats: Sequence[str] = ("png",),
        batch_size: int = 8,
    ) -> list[dict[str, Any]]:
        """Segment every image in a folder (recursively) and write masks at the original size.

        Masks go to ``output_dir/<relative path>_mask.png`` (and ``.nii.gz`` when ``"nifti"`` is in ``formats``);
        files that cannot be read are listed with the reason and skipped. For DICOM SEG, manifests and resume, use
        the batch command (``xray-seg predict``).

        Returns:
            One record per file: ``{"path", "status": "ok" | "error", "reason", "outputs"}``.
        """
        from tqdm.auto import tqdm

        from pipeline.data.pairing import file_stem, list_image_files

        input_dir, output_dir = Path(input_dir), Path(output_dir)
        if not input_dir.is_dir():
            raise FileNotFoundError(f"{input_dir}: input folder not found.")
        files = list_image_files(input_dir)
        records: list[dict[str, Any]] = []
        pending: list[tuple[Path, XRayImage]] = []

        def flush() -> None:
            for (path, _), result in zip(pending, self.predict_images([im for _, im in pending])):
                rel = path.relative_to(input_dir)
                base = output_dir / rel.parent / file_stem(rel)
                outputs = []
                if "png" in formats:
                    outputs.append(str(write_mask_png(f"{base}_mask.png", result.mask, binary=self.num_classes == 1)))
                if "nifti" in formats:
                    outputs.append(str(write_mask_nifti(f"{base}_mask.nii.gz", result.mask, result.image.spacing)))
                records.append({"path": str(path), "status": "ok", "reason": "", "outputs": outputs})
            pending.clear()

        for path in tqdm(files, desc="predict", unit="image", disable=None):
            try:
                pending.append((path, read_image(path, voi=self.voi)))
            except ImageReadError as err:
                logger.warning("skipped %s", err)
                records.append({"path": str(path), "status": "error", "reason": str(err), "outputs": []})
                continue
            if len(pending) >= batch_size:
                flush()
        flush()
        n_ok = sum(r["status"] == "ok" for r in records)
        logger.info("wrote masks for %d of %d files to %s (%d errors)", n_ok, len(records), output_dir, len(records) - n_ok)
        return records
