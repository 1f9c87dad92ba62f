"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

One scalar ``T > 0`` divides the logits before the activation: ``sigmoid(z / T)`` for the one-channel lung output,
``softmax(z / T)`` for multi-class. ``T`` is fitted on validation logits and labels by minimising the pixel negative
log-likelihood with L-BFGS (over ``log T``, so ``T`` stays positive). ``T > 1`` softens an over-confident network;
the arg-max (and the 0.5-threshold mask) does not change, only the probabilities do.

Only probabilities at hand (e.g. :class:`pipeline.reporting.EvaluationCase`)? :func:`probabilities_to_logits` recovers
logits that reproduce them, so ``fit_temperature(torch.stack([probabilities_to_logits(c.prob) for c in val]),
torch.stack([torch.from_numpy(c.label) for c in val]))`` works too.

Storage: a tiny JSON file ``{"temperature": T}`` (:func:`save_temperature`) or the key ``"temperature"`` of a checkpoint
dict; :func:`load_temperature` reads either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.metrics import CalibrationErrorMetric
from monai.networks.utils import one_hot
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor
from torch import nn

from pipeline.metrics.calibration import CALIBRATION_BINS

__all__ = [
    "TEMPERATURE_KEY",
    "ApplyTemperature",
    "ApplyTemperatured",
    "TemperatureScaler",
    "calibration_before_after",
    "fit_temperature",
    "load_temperature",
    "probabilities_to_logits",
    "rescale_probabilities",
    "save_temperature",
]

logger = logging.getLogger(__name__)

TEMPERATURE_KEY: str = "temperature"
"""Key of the temperature in the JSON file and in checkpoint dicts."""

_T_RANGE = (1e-2, 1e2)


def _flatten(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, *S)`` logits and ``(N, *S)`` / ``(N, 1, *S)`` labels to ``(P, C)`` and ``(P,)``."""
    z = convert_to_tensor(logits, track_meta=False, dtype=torch.float32)
    y = convert_to_tensor(labels, track_meta=False).long()
    if z.ndim < 3:
        raise ValueError(f"logits must be (N, C, *spatial), got shape {tuple(z.shape)}.")
    if y.ndim == z.ndim:
        if y.shape[1] != 1:
            raise ValueError("labels must be class indices (N, *spatial) or (N, 1, *spatial), not one-hot.")
        y = y[:, 0]
    c = z.shape[1]
    return z.movedim(1, -1).reshape(-1, c), y.reshape(-1)


def _nll(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if z.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(z[:, 0] / t, y.float())
    return F.cross_entropy(z / t, y)


def fit_temperature(
    logits: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    max_iter: int = 100,
    max_pixels: int = 1_000_000,
    seed: int = 0,
) -> float:
    """Fit the temperature minimising the pixel NLL of ``activation(logits / T)``.

    Args:
        logits: raw network outputs ``(N, C, H, W)``; ``C == 1`` means sigmoid, ``C > 1`` softmax.
        labels: ground-truth classes ``(N, H, W)`` or ``(N, 1, H, W)`` (0/1 for the binary task).
        max_iter: L-BFGS iterations.
        max_pixels: pixels used for the fit, drawn uniformly with ``seed`` when there are more.
        seed: seed of that subsample.

    Returns:
        ``T``, clipped to [0.01, 100].

    Example::

        >>> T = fit_temperature(val_logits, val_labels)   # e.g. 1.8 for an over-confident U-Net
    """
    z, y = _flatten(torch.as_tensor(logits), torch.as_tensor(labels))
    if z.shape[0] > max_pixels:
        idx = torch.from_numpy(np.random.default_rng(seed).choice(z.shape[0], size=max_pixels, replace=False))
        z, y = z[idx], y[idx]
    z = z.detach().double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _nll(z, y, log_t.exp())
        loss.backward()
        return loss

    with torch.enable_grad():
        before = float(_nll(z, y, torch.ones(1, dtype=torch.float64)))
        opt.step(closure)
    t = float(np.clip(log_t.exp().item(), *_T_RANGE))
    after = float(_nll(z, y, torch.tensor(t)))
    logger.info("temperature %.4f (NLL %.5f -> %.5f on %d pixels)", t, before, after, len(y))
    return t


def probabilities_to_logits(prob: torch.Tensor | np.ndarray, eps: float = 1e-7) -> torch.Tensor:
    """Logits that reproduce channel-first probabilities ``(C, ...)``: ``logit(p)`` for one channel, ``log p`` else.

    Softmax logits are recovered up to an additive constant, which softmax ignores. Probabilities are clipped to
    ``[eps, 1 - eps]`` first, so saturated float32 outputs map to finite logits.
    """
    p = convert_to_tensor(prob, track_meta=False, dtype=torch.float64).clamp(eps, 1 - eps)
    return torch.logit(p) if p.shape[0] == 1 else torch.log(p)


def rescale_probabilities(prob: torch.Tensor | np.ndarray, temperature: float) -> np.ndarray:
    """Apply a temperature to probabilities ``(C, H, W)`` already activated (via :func:`probabilities_to_logits`).

    Returns:
        float32 probabilities of the same shape.
    """
    z = probabilities_to_logits(prob) / float(temperature)
    out = torch.sigmoid(z) if z.shape[0] == 1 else torch.softmax(z, dim=0)
    return out.float().numpy()


def _as_probabilities(logits: torch.Tensor, t: float) -> torch.Tensor:
    z = logits / t
    return torch.sigmoid(z) if z.shape[1] == 1 else torch.softmax(z, dim=1)


def calibration_before_after(
    logits: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    temperature: float,
    num_bins: int = CALIBRATION_BINS,
) -> dict[str, float]:
    """Expected calibration error without and with the temperature (MONAI ``CalibrationErrorMetric``).

    Args:
        logits: ``(N, C, H, W)`` raw outputs.
        labels: ``(N, H, W)`` or ``(N, 1, H, W)`` classes.
        temperature: ``T`` from :func:`fit_temperature`.
        num_bins: calibration bins.

    Returns:
        ``{"temperature", "ece_before", "ece_after"}``: class-wise ECE averaged over images and classes (for a
        one-channel output: the lung channel, the quantity the validation handler logs).
    """
    z = convert_to_tensor(logits, track_meta=False, dtype=torch.float32)
    y = convert_to_tensor(labels, track_meta=False).long()
    if y.ndim == z.ndim - 1:
        y = y[:, None]
    y = y.float() if z.shape[1] == 1 else one_hot(y, num_classes=z.shape[1], dim=1)
    out = {"temperature": float(temperature)}
    for name, t in (("ece_before", 1.0), ("ece_after", float(temperature))):
        metric = CalibrationErrorMetric(num_bins=num_bins, calibration_reduction="expected")
        metric(y_pred=_as_probabilities(z, t), y=y)
        out[name] = float(metric.aggregate())
    return out


def save_temperature(path: str | Path, temperature: float, **extra: Any) -> Path:
    """Write ``{"temperature": T, **extra}`` as JSON (e.g. ``extra`` = the fit's ``ece_before``/``ece_after``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({TEMPERATURE_KEY: float(temperature), **extra}, indent=2) + "\n")
    return p


def load_temperature(source: str | Path | Mapping[str, Any] | float) -> float:
    """Read a temperature from a number, a JSON file, a checkpoint file (``.pt``/``.pth``) or a checkpoint dict.

    Raises:
        KeyError: when the file or dict has no ``"temperature"`` key.
    """
    if isinstance(source, (int, float)):
        return float(source)
    if isinstance(source, Mapping):
        return float(source[TEMPERATURE_KEY])
    p = Path(source)
    if p.suffix.lower() == ".json":
        return float(json.loads(p.read_text())[TEMPERATURE_KEY])
    from pipeline.model import ModelArtifact, read_artifact  # a model file: the temperature in its artifact

    return read_artifact(p, default=ModelArtifact()).temperature  # (the default only matters for bare weights)


class TemperatureScaler(nn.Module):
    """``nn.Module`` dividing logits by a fitted temperature; wrap it after a network or call it on logits.

    Args:
        temperature: initial ``T`` (1 = identity).

    Example::

        >>> scaler = TemperatureScaler().fit(val_logits, val_labels)
        >>> model = torch.nn.Sequential(net, scaler)                 # calibrated logits
        >>> ckpt = {"model": net.state_dict(), **scaler.checkpoint_entry()}
        >>> TemperatureScaler.from_checkpoint(ckpt).temperature
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.register_buffer("_temperature", torch.tensor(float(temperature)))

    @property
    def temperature(self) -> float:
        """The current ``T``."""
        return float(self._temperature)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits / T``, any shape."""
        return logits / self._temperature

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities of ``(N, C, ...)`` logits: sigmoid for ``C == 1``, softmax over ``C`` else."""
        return _as_probabilities(logits, self.temperature)

    def fit(
        self, logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, **kwargs: Any
    ) -> TemperatureScaler:
        """Fit ``T`` with :func:`fit_temperature` (keyword arguments passed on) and return ``self``."""
        self._temperature.fill_(fit_temperature(logits, labels, **kwargs))
        return self

    def checkpoint_entry(self) -> dict[str, float]:
        """``{"temperature": T}``, to merge into a checkpoint dict."""
        return {TEMPERATURE_KEY: self.temperature}

    def save(self, path: str | Path) -> Path:
        """Write the JSON file (:func:`save_temperature`)."""
        return save_temperature(path, self.temperature)

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any] | float) -> TemperatureScaler:
        """Build from anything :func:`load_temperature` reads."""
        return cls(load_temperature(source))

    from_checkpoint = load


class ApplyTemperature(Transform):
    """Array transform dividing channel-first logits by ``T``; put it before the activation.

    Args:
        temperature: ``T`` as a number, or a JSON/checkpoint path or dict for :func:`load_temperature`; ``None``
            is the identity (no calibration), so one config can switch it off.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, temperature: float | str | Path | Mapping[str, Any] | None = None) -> None:
        self.temperature = None if temperature is None else load_temperature(temperature)

    def __call__(self, img: Any) -> Any:
        if self.temperature is None or self.temperature == 1.0:
            return img
        out, *_ = convert_to_dst_type(convert_to_tensor(img, track_meta=False) / self.temperature, img)
        return out


class ApplyTemperatured(MapTransform):
    """Dictionary version of :class:`ApplyTemperature`.

    Example (bundle YAML, before ``Activationsd``)::

        - _target_: pipeline.postprocessing.ApplyTemperatured
          keys: pred
          temperature: "$@bundle_root + '/models/temperature.json'"
    """

    def __init__(
        self,
        keys: KeysCollection,
        temperature: float | str | Path | Mapping[str, Any] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ApplyTemperature(temperature)

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
