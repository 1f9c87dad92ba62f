"""Probability calibration of a segmentation network: fit on validation pixels, apply from a small description.

A calibration is a plain, JSON-serialisable ``dict`` that travels in the model artifact
(:attr:`pipeline.model.ModelArtifact.calibration`) and is applied at inference by ONE function,
:func:`apply_calibration`. Three methods (compared in ``docs/results.md``, ``scripts/benchmark_qc.py``):

==========================  ===================================================================================
description                 meaning
==========================  ===================================================================================
``{"method": "none"}``      the plain activation (also ``{}`` / ``None``)
``{"method": "temperature",  ``activation(logits / T)`` (Guo et al., ICML 2017). ``fit`` records which pixels
"temperature": T,           ``T`` was fitted on: ``"all"`` (every validation pixel) or ``"boundary"`` (the band
"fit": "all"}``             of pixels within ``band`` pixels of a ground-truth lung border, where the pixels a
                            reader looks at are)
``{"method": "isotonic",    a monotone piecewise-linear map of the lung probability ``p = sigmoid(z)``:
"x": [...], "y": [...]}``   ``np.interp(p, x, y)`` (Zadrozny & Elkan, KDD 2002: isotonic regression,
                            ``sklearn.isotonic.IsotonicRegression`` on validation pixels). One-channel outputs only.
==========================  ===================================================================================

Why three: one global temperature fitted on all pixels is dominated by the millions of easy background pixels and
trades the lung border for the bulk (ECE improves while ACE and MCE, the border bins, get worse); the boundary
temperature and the per-bin isotonic map do not.

Example::

    >>> cal = fit_calibration(val_logits, val_labels, method="isotonic")   # at the end of training
    >>> prob = apply_calibration(logits, cal)                              # at inference, from the artifact alone
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from pipeline.postprocessing.temperature import _flatten, fit_temperature, probabilities_to_logits

__all__ = [
    "CALIBRATION_METHODS",
    "apply_calibration",
    "boundary_band",
    "calibration_description",
    "fit_calibration",
]

logger = logging.getLogger(__name__)

CALIBRATION_METHODS: tuple[str, ...] = ("none", "temperature", "boundary_temperature", "isotonic")
"""Names :func:`fit_calibration` accepts (``boundary_temperature`` is stored as ``temperature`` with ``fit``)."""

_LOGIT_BINS = np.linspace(-20.0, 20.0, 801)  # pre-binning of the isotonic fit: 0.05 logit units


def boundary_band(labels: np.ndarray | torch.Tensor, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` pixels of a ground-truth class border, per image.

    Args:
        labels: ``(N, H, W)`` (or ``(N, 1, H, W)``) class indices.
        width: half-width of the band in pixels (the band is the dilation minus the erosion, 8-connected).

    Returns:
        ``(N, H, W)`` boolean.
    """
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if y.ndim == 4:
        y = y[:, 0]
    out = np.zeros(y.shape, dtype=bool)
    st = np.ones((3, 3), dtype=bool)
    for i, lab in enumerate(y):
        for k in np.unique(lab):
            m = lab == k
            out[i] |= ndimage.binary_dilation(m, st, iterations=width) & ~ndimage.binary_erosion(
                m, st, iterations=width, border_value=1
            )
    return out


def _fit_isotonic(z: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Isotonic map of ``sigmoid(z)`` to the label frequency, on 0.05-logit pre-bins (at most ~800 knots)."""
    from sklearn.isotonic import IsotonicRegression

    zc = np.clip(z, _LOGIT_BINS[0], _LOGIT_BINS[-1])
    idx = np.clip(np.digitize(zc, _LOGIT_BINS) - 1, 0, len(_LOGIT_BINS) - 2)
    n = np.bincount(idx, minlength=len(_LOGIT_BINS) - 1).astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    sum_p = np.bincount(idx, weights=p, minlength=len(n))
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=len(n))
    filled = n > 0
    x_mean, y_mean, w = sum_p[filled] / n[filled], sum_y[filled] / n[filled], n[filled]
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(x_mean, y_mean, sample_weight=w)
    xs = np.round(np.concatenate([[0.0], iso.X_thresholds_, [1.0]]), 7)
    ys = np.round(np.concatenate([[iso.y_thresholds_[0]], iso.y_thresholds_, [iso.y_thresholds_[-1]]]), 7)
    xs, keep = np.unique(xs, return_index=True)  # sorted, one value per knot (after rounding for JSON)
    return [float(v) for v in xs], [float(v) for v in ys[keep]]


def fit_calibration(
    logits: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    method: str = "isotonic",
    band: int = 2,
    max_pixels: int = 2_000_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a calibration on validation logits and labels; return its description for the model artifact.

    Args:
        logits: raw network outputs ``(N, C, H, W)`` (``C == 1`` sigmoid, ``C > 1`` softmax).
        labels: ground-truth classes ``(N, H, W)`` or ``(N, 1, H, W)``.
        method: one of :data:`CALIBRATION_METHODS`.
        band: half-width in pixels of the border band for ``boundary_temperature``.
        max_pixels: pixels used (uniform subsample with ``seed`` when there are more).
        seed: seed of that subsample.

    Returns:
        A JSON-serialisable description (see the module docstring) with ``pixels`` (how many were used).

    Raises:
        ValueError: an unknown method, or ``isotonic`` on a multi-class output.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_METHODS)}.")
    z_t = torch.as_tensor(logits).detach().float().cpu()
    y_t = torch.as_tensor(labels).detach().cpu()
    if method == "none":
        return {"method": "none"}
    if method == "temperature":
        t = fit_temperature(z_t, y_t.round().long(), max_pixels=max_pixels, seed=seed)
        return {"method": "temperature", "temperature": round(t, 6), "fit": "all", "pixels": int(y_t.numel())}
    if method == "boundary_temperature":
        sel = torch.from_numpy(boundary_band(y_t.round().long(), band))
        y = y_t[:, 0] if y_t.ndim == z_t.ndim else y_t
        zb = z_t.movedim(1, -1)[sel]  # (P, C)
        yb = y[sel].round().long()
        t = fit_temperature(zb.T[None], yb[None], max_pixels=max_pixels, seed=seed)
        return {"method": "temperature", "temperature": round(t, 6), "fit": "boundary", "band": int(band),
                "pixels": int(sel.sum())}
    if z_t.shape[1] != 1:
        raise ValueError(f"isotonic calibration maps one lung probability; this output has {z_t.shape[1]} classes: "
                         "use method='temperature' for multi-class networks.")
    z, y = _flatten(z_t, y_t.round().long())
    z, y = z[:, 0].numpy(), y.numpy()
    if len(z) > max_pixels:
        idx = np.random.default_rng(seed).choice(len(z), size=max_pixels, replace=False)
        z, y = z[idx], y[idx]
    xs, ys = _fit_isotonic(z, y)
    logger.info("isotonic calibration: %d knots from %d validation pixels", len(xs), len(z))
    return {"method": "isotonic", "x": xs, "y": ys, "pixels": int(len(z))}


def _interp(p: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``np.interp`` for tensors (any device): linear between knots, constant outside."""
    p = p.clamp(float(x[0]), float(x[-1]))
    i = torch.searchsorted(x, p.contiguous()).clamp(1, len(x) - 1)
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    w = ((p - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return y0 + w * (y1 - y0)


def calibration_description(calibration: Mapping[str, Any] | float | None) -> dict[str, Any]:
    """Normalise what an artifact may hold: ``None``/``{}`` → none, a number → that temperature.

    Raises:
        ValueError: an unknown method or a malformed description (the message says which keys are needed).
    """
    if calibration is None:
        return {"method": "none"}
    if isinstance(calibration, (int, float)):
        return {"method": "temperature", "temperature": float(calibration)}
    cal = dict(calibration)
    method = cal.get("method", "none" if not cal else None)
    if method == "temperature":
        if not float(cal.get("temperature", 0)) > 0:
            raise ValueError(f"temperature calibration needs 'temperature' > 0, got {cal.get('temperature')!r}.")
    elif method == "isotonic":
        x, y = cal.get("x"), cal.get("y")
        if not x or not y or len(x) != len(y) or len(x) < 2:
            raise ValueError("isotonic calibration needs lists 'x' and 'y' of the same length (>= 2).")
    elif method != "none":
        raise ValueError(f"unknown calibration {cal!r}: 'method' must be none, temperature or isotonic.")
    cal["method"] = method
    return cal


def apply_calibration(
    logits_or_prob: torch.Tensor | np.ndarray,
    calibration: Mapping[str, Any] | float | None,
    from_logits: bool = True,
) -> torch.Tensor | np.ndarray:
    """Calibrated probabilities from raw logits (or uncalibrated probabilities): the one function inference calls.

    Args:
        logits_or_prob: ``(B, C, H, W)`` or ``(C, H, W)`` network outputs; ``C == 1`` is a sigmoid output, ``C > 1``
            softmax over the channel axis (dimension ``-3``).
        calibration: a description from :func:`fit_calibration` (``ModelArtifact.calibration``), a temperature, or
            ``None``/``{}`` for the plain activation.
        from_logits: ``False`` when the input already holds (uncalibrated) probabilities.

    Returns:
        Probabilities of the input's shape, as a float32 tensor (same device) or NumPy array, matching the input.

    Example::

        >>> apply_calibration(torch.zeros(1, 1, 4, 4), {"method": "temperature", "temperature": 2.0}).unique()
        tensor([0.5000])
    """
    cal = calibration_description(calibration)
    is_numpy = isinstance(logits_or_prob, np.ndarray)
    x = torch.as_tensor(logits_or_prob).float()
    binary = x.shape[-3] == 1
    if not from_logits:
        if cal["method"] == "isotonic":
            p = x
        else:
            x = probabilities_to_logits(x.movedim(-3, 0)).movedim(0, -3).float()
    if from_logits or cal["method"] != "isotonic":
        z = x / float(cal["temperature"]) if cal["method"] == "temperature" else x
        p = torch.sigmoid(z) if binary else torch.softmax(z, dim=-3)
    if cal["method"] == "isotonic":
        if not binary:
            raise ValueError("an isotonic calibration applies to one-channel (lung) outputs only.")
        knots = torch.tensor(cal["x"], dtype=torch.float32, device=p.device)
        values = torch.tensor(cal["y"], dtype=torch.float32, device=p.device)
        p = _interp(p, knots, values)
    return p.cpu().numpy() if is_numpy else p
