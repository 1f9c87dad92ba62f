"""X-ray image formation for projected path-length maps (polychromatic Beer-Lambert + detector).

The model follows the signal chain of a digital radiography system:

1. **Spectrum.** Kramers' law for a tungsten anode, photon fluence ``N(E) ~ (kVp - E) / E``, hardened
   by ``filtration_mm_al`` of aluminium, ``exp(-mu_Al(E) t_Al)``. The detector is an
   energy-integrating CsI scintillator, so each energy contributes ``E * eta(E) * N(E)`` to the
   signal, ``eta(E) = 1 - exp(-mu_CsI(E) t_CsI)``. The spectrum is collapsed to ``n_energy_bins``
   bins (signal-weighted mean energy per bin).
2. **Primary (Beer-Lambert, polychromatic).**
   ``T = sum_k w_k exp(-(mu_soft(E_k) t_soft + mu_bone(E_k) t_bone + mu_metal(E_k) t_metal))``. Because
   the low-energy bins die first, the effective attenuation drops with thickness (beam hardening).
3. **Heel effect and field non-uniformity.** ``H = (1 - heel * ((1 + s) / 2)^1.5) * cos^3(theta)``,
   with ``s`` the position along the anode-cathode axis in [-1, 1] and ``theta`` the ray obliquity at
   source-image distance ``sid_cm`` (inverse-square + obliquity fall-off).
4. **Scatter.** A scatter source proportional to the local primary and to the water-equivalent
   thickness, ``spr * P * t_we / 10 cm``, spread by a wide Gaussian kernel (``scatter_sigma_cm``),
   i.e. a scatter-kernel-superposition approximation of an anti-scatter-grid exam. Scatter also lands
   in the open beam next to the body (a halo), as in real images.
5. **Detector.** Expected quanta ``Q = N0 * (H T + S)``, with ``N0`` either given or set by automatic
   exposure control (median signal behind the body = ``aec_quanta``); Poisson quantum noise; a
   Gaussian PSF (scintillator light spread, ``psf_sigma_cm``); additive Gaussian electronic noise
   (``electronic_noise`` quanta). The result is the raw, linear *detector signal* (quanta per pixel,
   open beam = brightest).
6. **Presentation.** Offset/gain normalisation by the nominal open-field level ``N0`` (no flat-field
   correction of the heel effect), log transform ``p = -ln(D / N0)`` (the line integral), two-scale
   "for presentation" processing as in clinical systems (dynamic-range compression of the 3 cm
   low-pass band, ``range_compression``; boost of the detail band finer than 1 cm,
   ``edge_enhancement``), a window from the 0.1 % to the 99.9 % quantiles onto ``[0, 1]``, a film-like
   sigmoid tone curve (``tone_gamma``) and quantisation to ``[0, 2^bits - 1]``. The stored image is
   MONOCHROME2: **bright = more attenuation**, open beam dark, bone bright.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

from .attenuation import MATERIALS, linear_attenuation

__all__ = [
    "Acquisition",
    "Projection",
    "xray_spectrum",
    "polychromatic_transmission",
    "heel_field",
    "simulate_projection",
]

_E_MIN_KEV = 15.0


@dataclass(frozen=True)
class Acquisition:
    """Exposure and detector parameters of one synthetic radiograph.

    Args:
        kvp: tube voltage (kVp), 40-150.
        filtration_mm_al: total filtration in mm aluminium.
        photons_per_pixel: mean detected quanta per pixel in the open field (``N0``); sets the
            quantum noise (relative noise ``1/sqrt(N0 * T)``). Ignored when ``aec_quanta`` is set.
        aec_quanta: automatic exposure control: if set, ``N0`` is chosen so that the median expected
            signal behind the body (pixels with transmission < 0.99) is this many quanta, as an AEC
            chamber terminates the exposure at a fixed detector dose. ``None`` uses
            ``photons_per_pixel``.
        heel_strength: relative intensity loss from the cathode to the anode edge (0-0.4).
        heel_angle: direction of the anode side in the image (radians, 0 = image right).
        sid_cm: source-image distance (cm) for the inverse-square / obliquity fall-off.
        scatter_per_10cm: scatter-to-primary ratio produced per 10 cm water-equivalent thickness.
        scatter_sigma_cm: width (cm) of the scatter spread kernel.
        psf_sigma_cm: detector point-spread function sigma (cm).
        electronic_noise: electronic (additive) noise sigma in quanta.
        metal: implant material key of :data:`~pipeline.data.synthetic.attenuation.MATERIALS`.
        n_energy_bins: number of spectrum bins for the polychromatic sum.
        csi_mm: CsI scintillator thickness (mm) for the detector absorption efficiency.
        edge_enhancement: gain of the fine-detail band (log image minus its 1 cm low-pass) in the
            presentation processing (0 disables).
        range_compression: fraction of the coarse (3 cm low-pass) log signal removed by the
            dynamic-range compression of the presentation processing (0 disables).
        tone_gamma: slope of the film-like sigmoid tone curve applied after windowing (0 = linear).
        bits: stored bit depth of the presentation image (12-16).
    """

    kvp: float = 70.0
    filtration_mm_al: float = 2.5
    photons_per_pixel: float = 8000.0
    aec_quanta: float | None = None
    heel_strength: float = 0.15
    heel_angle: float = 0.0
    sid_cm: float = 110.0
    scatter_per_10cm: float = 0.3
    scatter_sigma_cm: float = 4.0
    psf_sigma_cm: float = 0.07
    electronic_noise: float = 4.0
    metal: str = "titanium"
    n_energy_bins: int = 8
    csi_mm: float = 0.5
    edge_enhancement: float = 0.4
    range_compression: float = 0.4
    tone_gamma: float = 2.0
    bits: int = 12

    def __post_init__(self) -> None:
        if not 40.0 <= self.kvp <= 150.0:
            raise ValueError(f"kvp must be in [40, 150], got {self.kvp}")
        if not 12 <= self.bits <= 16:
            raise ValueError(f"bits must be in [12, 16], got {self.bits}")
        if self.photons_per_pixel <= 0 or (self.aec_quanta is not None and self.aec_quanta <= 0):
            raise ValueError(f"photons_per_pixel and aec_quanta must be positive, got {self.photons_per_pixel}, "
                             f"{self.aec_quanta}")
        if self.metal not in MATERIALS:
            raise ValueError(f"metal must be one of {sorted(MATERIALS)}, got {self.metal!r}")


@dataclass
class Projection:
    """Outputs of :func:`simulate_projection`.

    Attributes:
        image: presentation image, ``uint16`` in ``[0, 2^bits - 1]``, MONOCHROME2 (bright = dense).
        detector_signal: raw linear detector signal (quanta per pixel, ``float32``); the open beam is
            the brightest signal here.
        transmission: noise-free polychromatic primary transmission ``T`` in (0, 1] (``float32``).
        scatter: noise-free scatter relative to ``N0`` (``float32``).
        heel: field non-uniformity ``H`` (``float32``).
        log_window: ``(p_low, p_high)`` of the log signal mapped to ``0`` and ``2^bits - 1``.
        extra: free-form diagnostics (effective energies, spectrum weights).
    """

    image: np.ndarray
    detector_signal: np.ndarray
    transmission: np.ndarray
    scatter: np.ndarray
    heel: np.ndarray
    log_window: tuple[float, float]
    extra: dict = field(default_factory=dict)


def xray_spectrum(
    kvp: float, filtration_mm_al: float = 2.5, n_bins: int = 8, csi_mm: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Detector-signal-weighted tungsten spectrum collapsed to a few energy bins.

    Args:
        kvp: tube voltage in kVp.
        filtration_mm_al: aluminium filtration in mm.
        n_bins: number of output bins (>= 1).
        csi_mm: CsI scintillator thickness in mm (absorption efficiency); 0 for an ideal detector.

    Returns:
        ``(energies_kev, weights)``: mean energy of each bin and its share of the open-field signal
        (weights sum to 1).

    Raises:
        ValueError: if ``kvp`` is not above the 15 keV lower cut or ``n_bins < 1``.

    Examples::

        >>> e, w = xray_spectrum(70.0, n_bins=6)
        >>> round(float(w.sum()), 6), bool(15.0 < e.min() < e.max() < 70.0)
        (1.0, True)
    """
    if kvp <= _E_MIN_KEV + 1 or n_bins < 1:
        raise ValueError(f"need kvp > {_E_MIN_KEV + 1} keV and n_bins >= 1, got kvp={kvp}, n_bins={n_bins}")
    e = np.arange(_E_MIN_KEV + 0.25, kvp, 0.5)
    photons = (kvp - e) / e
    photons *= np.exp(-linear_attenuation("aluminium", e) * filtration_mm_al / 10.0)
    eta = 1.0 - np.exp(-linear_attenuation("csi", e) * csi_mm / 10.0) if csi_mm > 0 else np.ones_like(e)
    signal = photons * e * eta
    edges = np.linspace(_E_MIN_KEV, kvp, n_bins + 1)
    idx = np.clip(np.digitize(e, edges) - 1, 0, n_bins - 1)
    weights = np.bincount(idx, weights=signal, minlength=n_bins)
    energies = np.bincount(idx, weights=signal * e, minlength=n_bins) / np.maximum(weights, 1e-30)
    keep = weights > 0
    energies, weights = energies[keep], weights[keep]
    return energies, weights / weights.sum()


def polychromatic_transmission(
    soft_cm: np.ndarray | float,
    bone_cm: np.ndarray | float,
    metal_cm: np.ndarray | float,
    energies_kev: np.ndarray,
    weights: np.ndarray,
    metal: str = "titanium",
) -> np.ndarray:
    """Noise-free polychromatic Beer-Lambert transmission of soft tissue, cortical bone and metal paths.

    ``T = sum_k w_k exp(-(mu_soft(E_k) t_soft + mu_bone(E_k) t_bone + mu_metal(E_k) t_metal))``

    Args:
        soft_cm: soft-tissue path length(s) in cm.
        bone_cm: cortical-bone-equivalent path length(s) in cm.
        metal_cm: metal path length(s) in cm.
        energies_kev: bin energies from :func:`xray_spectrum`.
        weights: bin weights from :func:`xray_spectrum`.
        metal: implant material key.

    Returns:
        Transmission in (0, 1], ``float32``, broadcast over the inputs; exactly 1 where all paths are 0.

    Examples::

        >>> e, w = xray_spectrum(60.0)
        >>> t = polychromatic_transmission([0.0, 3.0, 3.0], [0.0, 0.0, 1.0], 0.0, e, w)
        >>> bool(t[0] == 1.0 and t[0] > t[1] > t[2])
        True
    """
    soft = np.asarray(soft_cm, dtype=np.float32)
    bone = np.asarray(bone_cm, dtype=np.float32)
    met = np.asarray(metal_cm, dtype=np.float32)
    mu_s = linear_attenuation("soft_tissue", energies_kev)
    mu_b = linear_attenuation("cortical_bone", energies_kev)
    mu_m = linear_attenuation(metal, energies_kev)
    use_bone, use_metal = bool(np.any(bone)), bool(np.any(met))
    shape = np.broadcast_shapes(soft.shape, bone.shape, met.shape)
    # T = 1 - sum_k w_k (1 - exp(-line_k)), with expm1: exactly 1 for zero paths, < 1 for any positive
    # path however small, independent of float32 rounding of the weights
    absorbed = np.zeros(shape, np.float32)
    for k in range(len(energies_kev)):
        line = np.float32(mu_s[k]) * soft
        if use_bone:
            line = line + np.float32(mu_b[k]) * bone
        if use_metal:
            line = line + np.float32(mu_m[k]) * met
        absorbed -= np.float32(weights[k] / weights.sum()) * np.expm1(-line)
    return (1.0 - absorbed).astype(np.float32)


def heel_field(
    size: int, pixel_cm: float, strength: float, angle: float, sid_cm: float = 110.0
) -> np.ndarray:
    """Open-field intensity non-uniformity: anode heel effect times inverse-square/obliquity fall-off.

    Args:
        size: image edge in pixels.
        pixel_cm: pixel spacing in cm.
        strength: relative loss from the cathode edge to the anode edge.
        angle: direction of the anode side (radians, 0 = image right, counter-clockwise on screen).
        sid_cm: source-image distance in cm.

    Returns:
        ``float32`` array ``(size, size)`` with maximum about 1.
    """
    c = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) * pixel_cm
    x, y = np.meshgrid(c, c)
    half = size * pixel_cm / 2
    s = np.clip((math.cos(angle) * x - math.sin(angle) * y) / half, -1.0, 1.0)
    heel = 1.0 - strength * ((1.0 + s) / 2.0) ** 1.5
    cos3 = (1.0 + (x * x + y * y) / (sid_cm * sid_cm)) ** -1.5
    return (heel * cos3).astype(np.float32)


@lru_cache(maxsize=32)
def _upsampling_weights(n: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear-interpolation indices and weights from ``ceil(n / f)`` block centres back to ``n`` pixels."""
    m = -(-n // f)
    pos = np.clip((np.arange(n) + 0.5) / f - 0.5, 0.0, m - 1.0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, m - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def _smooth_wide(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur with a wide kernel: block-average by ``f``, blur, interpolate back (no BLAS calls,
    which oversubscribe small shared machines)."""
    f = max(1, int(sigma_px // 3))
    if f == 1:
        return ndimage.gaussian_filter(img, sigma_px, mode="nearest")
    h, w = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge") if (hp, wp) != (h, w) else img
    small = padded.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3), dtype=np.float32)
    small = ndimage.gaussian_filter(small, sigma_px / f, mode="nearest")
    lo, hi, t = _upsampling_weights(h, f)
    rows = small[lo] * (1.0 - t)[:, None] + small[hi] * t[:, None]
    lo, hi, t = _upsampling_weights(w, f)
    return (rows[:, lo] * (1.0 - t) + rows[:, hi] * t).astype(np.float32)


def simulate_projection(
    soft_cm: np.ndarray,
    bone_cm: np.ndarray,
    metal_cm: np.ndarray,
    acquisition: Acquisition,
    pixel_cm: float,
    rng: np.random.Generator,
) -> Projection:
    """Form a noisy radiograph from material path-length maps.

    Args:
        soft_cm: soft-tissue path map (cm), 2D.
        bone_cm: cortical-bone-equivalent path map (cm), same shape.
        metal_cm: metal path map (cm), same shape.
        acquisition: exposure and detector parameters.
        pixel_cm: pixel spacing in cm (sets the physical sizes of the blur kernels).
        rng: random generator for the quantum and electronic noise.

    Returns:
        :class:`Projection` with the presentation image and the raw detector signal.

    Raises:
        ValueError: if the maps are not 2D square arrays of one shape.

    Examples::

        >>> import numpy as np
        >>> z = np.zeros((32, 32), np.float32); s = z.copy(); s[8:24, 8:24] = 5.0
        >>> p = simulate_projection(s, z, z, Acquisition(), 0.1, np.random.default_rng(0))
        >>> bool(p.detector_signal[:4, :4].mean() > p.detector_signal[12:20, 12:20].mean())
        True
    """
    if soft_cm.ndim != 2 or soft_cm.shape != bone_cm.shape or soft_cm.shape != metal_cm.shape:
        raise ValueError("soft_cm, bone_cm and metal_cm must be 2D arrays of the same shape")
    if soft_cm.shape[0] != soft_cm.shape[1]:
        raise ValueError(f"maps must be square, got {soft_cm.shape}")
    acq = acquisition
    size = soft_cm.shape[0]
    energies, weights = xray_spectrum(acq.kvp, acq.filtration_mm_al, acq.n_energy_bins, acq.csi_mm)
    transmission = polychromatic_transmission(soft_cm, bone_cm, metal_cm, energies, weights, acq.metal)
    heel = heel_field(size, pixel_cm, acq.heel_strength, acq.heel_angle, acq.sid_cm)
    primary = heel * transmission
    # water-equivalent thickness drives how much scatter a column produces
    mu_ref = linear_attenuation("soft_tissue", energies) @ weights
    t_we = -np.log(np.maximum(transmission, 1e-6)) / mu_ref
    scatter = _smooth_wide(primary * (acq.scatter_per_10cm * t_we / 10.0), acq.scatter_sigma_cm / pixel_cm)
    relative = primary + scatter
    n0 = float(acq.photons_per_pixel)
    if acq.aec_quanta is not None:
        behind = relative[transmission < 0.99]
        level = float(np.median(behind)) if behind.size else 1.0
        n0 = float(np.clip(acq.aec_quanta / max(level, 1e-6), acq.aec_quanta, 5e6))
    expected = n0 * relative
    counts = rng.poisson(expected).astype(np.float32)
    psf_px = acq.psf_sigma_cm / pixel_cm
    if psf_px > 0.05:
        counts = ndimage.gaussian_filter(counts, psf_px, mode="nearest")
    noise = rng.standard_normal(counts.shape, dtype=np.float32)
    detector = counts + np.float32(acq.electronic_noise) * noise
    detector = np.maximum(detector, 0.0).astype(np.float32)
    # presentation: log transform (line integral), edge enhancement, window to the stored bit depth
    log_sig = -np.log(np.maximum(detector, 0.5) / np.float32(n0))
    if acq.range_compression > 0 or acq.edge_enhancement > 0:
        coarse = _smooth_wide(log_sig, 3.0 / pixel_cm)
        medium = _smooth_wide(log_sig, 1.0 / pixel_cm)
        # compress only the part of the coarse band that the pixel itself carries, so that the mapping
        # stays monotonic and the open beam (p ~ 0) is left untouched
        compressed = log_sig - acq.range_compression * np.minimum(coarse, np.maximum(log_sig, 0.0))
        log_sig = compressed + acq.edge_enhancement * (log_sig - medium)
    lo, hi = np.quantile(log_sig, [0.001, 0.999])
    span = max(float(hi - lo), 1e-3)
    lo, hi = float(lo) - 0.02 * span, float(hi) + 0.02 * span
    vmax = 2**acq.bits - 1
    x = np.clip((log_sig - lo) / (hi - lo), 0.0, 1.0)
    if acq.tone_gamma > 0:
        x = 0.5 + 0.5 * np.tanh(acq.tone_gamma * (x - 0.5)) / math.tanh(acq.tone_gamma / 2)
    image = x * vmax
    return Projection(
        image=np.rint(image).astype(np.uint16),
        detector_signal=detector,
        transmission=transmission,
        scatter=scatter.astype(np.float32),
        heel=heel,
        log_window=(lo, hi),
        extra={"energies_kev": energies, "weights": weights, "photons_per_pixel": n0},
    )
