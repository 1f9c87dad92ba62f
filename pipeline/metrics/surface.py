"""Boundary distances of one image: 95th-percentile Hausdorff distance (HD95) and average surface distance (ASD).

Both come from MONAI (``compute_hausdorff_distance(percentile=95)`` and ``compute_average_surface_distance(
symmetric=True)``), in pixels and, when the pixel spacing is known, in millimetres (MONAI's ``spacing`` argument, given
in ``(row_mm, col_mm)`` order like :attr:`pipeline.io.XRayImage.spacing`).

Empty masks: a distance to an empty set is undefined, so such a class gets **NaN** and a status string saying why
(``"both_empty"``, ``"empty_pred"``, ``"empty_gt"``) instead of MONAI's ``nan``/``inf`` mix. Means over images skip
NaNs; count the statuses to see how many cases were left out.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

from pipeline.metrics.utils import one_hot_tensor

__all__ = ["HD_PERCENTILE", "SURFACE_STATUSES", "surface_distances"]

HD_PERCENTILE: float = 95.0
"""Percentile of the symmetric boundary distances reported as HD95."""

SURFACE_STATUSES: tuple[str, ...] = ("ok", "both_empty", "empty_pred", "empty_gt", "skipped")
"""Possible values of the per-class ``status`` returned by :func:`surface_distances`."""


def _status(pred_any: bool, gt_any: bool) -> str:
    if pred_any and gt_any:
        return "ok"
    if not pred_any and not gt_any:
        return "both_empty"
    return "empty_pred" if gt_any else "empty_gt"


def surface_distances(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    num_classes: int,
    spacing: Sequence[float] | None = None,
    percentile: float = HD_PERCENTILE,
    classes: Sequence[int] | None = None,
) -> dict[str, np.ndarray | list[str]]:
    """HD95 and symmetric ASD of every class of one image.

    Args:
        pred: predicted label map ``(H, W)``.
        label: ground-truth label map ``(H, W)``.
        num_classes: ``K``.
        spacing: pixel spacing ``(row_mm, col_mm)``; ``None`` leaves the millimetre values NaN.
        percentile: Hausdorff percentile, 95 by default (100 gives the classic maximum Hausdorff distance).
        classes: classes to compute (default all); the others get NaN and the status ``"skipped"``. For a binary
            task the background boundary is the lung boundary again, so callers usually pass ``[1]``.

    Returns:
        ``{"hd95_px", "asd_px", "hd95_mm", "asd_mm"}``: ``(K,)`` float64 arrays, NaN where undefined, and
        ``"status"``: list of ``K`` strings from :data:`SURFACE_STATUSES`. With isotropic spacing the millimetre
        values are the pixel values times the spacing (exact for the Euclidean distance); otherwise MONAI recomputes
        them with the anisotropic spacing.

    Example::

        >>> a = np.zeros((9, 9), int); a[2:5, 2:5] = 1
        >>> b = np.zeros((9, 9), int); b[2:5, 3:6] = 1
        >>> surface_distances(b, a, 2)["hd95_px"][1]  # the squares are one column apart
        1.0
    """
    wanted = list(range(num_classes)) if classes is None else sorted({int(c) for c in classes})
    yp = one_hot_tensor(pred, num_classes)[:, wanted]
    y = one_hot_tensor(label, num_classes)[:, wanted]
    status = ["skipped"] * num_classes
    for i, c in enumerate(wanted):
        status[c] = _status(bool(yp[0, i].any()), bool(y[0, i].any()))
    ok = np.array([status[c] == "ok" for c in wanted])

    def _compute(sp: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
        hd_all, asd_all = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
        if ok.any():
            with warnings.catch_warnings():  # empty classes are reported through ``status``
                warnings.simplefilter("ignore")
                hd = compute_hausdorff_distance(yp, y, include_background=True, percentile=percentile, spacing=sp)
                asd = compute_average_surface_distance(yp, y, include_background=True, symmetric=True, spacing=sp)
            hd_all[wanted] = np.where(ok, hd[0].double().numpy(), np.nan)
            asd_all[wanted] = np.where(ok, asd[0].double().numpy(), np.nan)
        return hd_all, asd_all

    hd_px, asd_px = _compute(None)
    if spacing is None:
        hd_mm = asd_mm = np.full(num_classes, np.nan)
    elif len(set(map(float, spacing))) == 1:
        hd_mm, asd_mm = hd_px * float(spacing[0]), asd_px * float(spacing[0])
    else:
        hd_mm, asd_mm = _compute([float(s) for s in spacing])
    return {"hd95_px": hd_px, "asd_px": asd_px, "hd95_mm": hd_mm, "asd_mm": asd_mm, "status": status}
