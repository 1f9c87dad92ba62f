"""Synthetic radiographs with exact 3-class labels (XNet's task: open beam / soft tissue / bone).

:class:`SyntheticRadiographGenerator` draws a randomised body-part phantom
(:mod:`~pipeline.data.synthetic.phantoms`), optionally adds a metal implant
(:mod:`~pipeline.data.synthetic.implants`), takes the label from the phantom geometry and forms the
image with the polychromatic X-ray model of :mod:`~pipeline.data.synthetic.physics`.

Conventions:

- ``image``: ``uint16`` "for presentation" radiograph, MONOCHROME2 (bright = more attenuation; open
  beam dark, bone bright), values in ``[0, 2^bits - 1]`` (12-bit by default).
- ``label``: ``uint8``; 0 = open beam (the ray crosses no tissue), 1 = soft tissue, 2 = bone or metal.
  A pixel is tissue when the path length through the skin envelope exceeds
  :data:`~pipeline.data.synthetic.canvas.LABEL_EPS_CM` and bone when the path through bone or metal
  does; open-beam pixels have exactly zero path in every material.
- ``info['detector_signal']``: the raw linear detector signal (quanta per pixel, ``float32``), before
  the log transform and inversion; open beam is the *brightest* signal there.

Reference: Bullock J., Cuesta-Lazaro C., Quera-Bofarull A. "XNet: a convolutional neural network
(CNN) implementation for medical X-Ray image segmentation suitable for small datasets." SPIE Medical
Imaging 2019 (arXiv:1812.00548).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from .canvas import Canvas, PhantomMaps
from .implants import add_implant
from .phantoms import BODY_PARTS, BodyPart, resolve_body_part
from .physics import Acquisition, simulate_projection

__all__ = ["SyntheticRadiographGenerator", "generate_sample", "sample_seed", "CLASS_NAMES"]

logger = logging.getLogger(__name__)

#: Class index -> name of the label map.
CLASS_NAMES: tuple[str, ...] = ("open_beam", "soft_tissue", "bone")

_MIN_FRACTIONS = (0.01, 0.02, 0.004)  # open beam, soft tissue, bone: rejection thresholds
_MAX_ATTEMPTS = 8


@lru_cache(maxsize=8)
def _smooth_basis(n: int, k: int) -> np.ndarray:
    """``n x k`` partition-of-unity Gaussian basis used to interpolate ``k`` control values smoothly."""
    x = (np.arange(n) + 0.5) / n * (k - 1)
    w = np.exp(-0.5 * ((x[:, None] - np.arange(k)[None, :]) / 0.7) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


@lru_cache(maxsize=4)
def _texture_bank(n: int) -> np.ndarray:
    """``2n x 2n`` band-pass noise tile (fixed seed) from which per-sample trabecular textures are cut."""
    noise = np.random.default_rng(20190331).standard_normal((2 * n, 2 * n)).astype(np.float32)
    fine = ndimage.gaussian_filter(noise, 0.8, mode="wrap")
    band = fine - ndimage.gaussian_filter(fine, 2.5, mode="wrap")
    band /= max(float(band.std()), 1e-6)
    return (1.0 + 0.25 * np.tanh(1.5 * band)).astype(np.float32)


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` of a dataset generated with base ``seed`` (independent streams).

    Args:
        seed: dataset seed (non-negative).
        index: sample index (non-negative).

    Returns:
        A 32-bit integer seed derived with :class:`numpy.random.SeedSequence` from ``(seed, index)``.

    Examples::

        >>> sample_seed(0, 1) == sample_seed(0, 1) != sample_seed(0, 2)
        True
    """
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass
class SyntheticRadiographGenerator:
    """Physics-based generator of labelled synthetic radiographs.

    Args:
        size: image edge in pixels (square images), >= 32.
        bits: stored bit depth of the image (12-16); values lie in ``[0, 2^bits - 1]``.
        body_parts: body parts drawn when none is requested (names or aliases); default all of
            :data:`~pipeline.data.synthetic.phantoms.BODY_PARTS`, uniformly.
        metal_probability: probability that a sample carries a metal implant.
        edge_enhancement: mean detail-band gain of the presentation processing (0 = none).
        range_compression: mean dynamic-range compression of the presentation processing (0 = none);
            with both set to 0 the image is a windowed log image.

    Raises:
        ValueError: on an invalid size, bit depth or probability.
        KeyError: on an unknown body part.

    Examples::

        >>> gen = SyntheticRadiographGenerator(size=64)
        >>> image, label, info = gen.generate(seed=3, body_part="knee")
        >>> image.dtype.name, label.dtype.name, info["body_part"], int(image.max()) <= 4095
        ('uint16', 'uint8', 'knee', True)
    """

    size: int = 256
    bits: int = 12
    body_parts: Sequence[str] | None = None
    metal_probability: float = 0.25
    edge_enhancement: float = 0.5
    range_compression: float = 0.6

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"size must be >= 32, got {self.size}")
        if not 12 <= self.bits <= 16:
            raise ValueError(f"bits must be in [12, 16], got {self.bits}")
        if not 0.0 <= self.metal_probability <= 1.0:
            raise ValueError(f"metal_probability must be in [0, 1], got {self.metal_probability}")
        names = list(BODY_PARTS) if self.body_parts is None else list(self.body_parts)
        if not names:
            raise ValueError("body_parts must not be empty")
        self._parts: list[BodyPart] = [resolve_body_part(n) for n in names]

    # ------------------------------------------------------------------ phantom
    def _warp(self, rng: np.random.Generator, amplitude_cm: float) -> tuple[np.ndarray, np.ndarray]:
        """Smooth random displacement field (cm): 6 x 6 random control values, Gaussian-interpolated."""
        basis = _smooth_basis(self.size, 6)
        fields = []
        for _ in range(2):
            coarse = rng.standard_normal((6, 6)).astype(np.float32) * np.float32(amplitude_cm)
            half = (basis[:, :, None] * coarse[None, :, :]).sum(axis=1)  # (n, 6)
            field = np.zeros((self.size, self.size), np.float32)
            for k in range(6):  # sum of outer products: no BLAS call on a shared machine
                field += np.multiply.outer(half[:, k], basis[:, k])
            fields.append(field)
        return fields[0], fields[1]

    def _trabecular_texture(self, rng: np.random.Generator) -> np.ndarray:
        """Multiplicative trabecular texture: a random crop, flip and transpose of a cached band-pass
        noise tile (features ~1-3 pixels), soft-clipped into a mesh, mean 1, amplitude ~0.25."""
        bank = _texture_bank(self.size)
        oy, ox = (int(x) for x in rng.integers(0, self.size, 2))
        tex = bank[oy : oy + self.size, ox : ox + self.size]
        if rng.random() < 0.5:
            tex = tex[::-1]
        if rng.random() < 0.5:
            tex = tex.T
        return tex

    def _phantom(
        self, part: BodyPart, rng: np.random.Generator, with_metal: bool, shrink: float
    ) -> tuple[PhantomMaps, float, str, dict]:
        fov = rng.uniform(*part.fov_cm)
        scale = rng.uniform(*part.scale) * shrink
        angle = math.radians(rng.uniform(-part.max_angle_deg, part.max_angle_deg))
        mirror = bool(rng.random() < 0.5) and part.mirror
        shift = rng.normal(0.0, part.shift_cm, 2)
        au = -part.anchor[0] if mirror else part.anchor[0]
        ca, sa = math.cos(angle), math.sin(angle)
        # place the body-local anchor at the image centre (plus the random shift)
        av = part.anchor[1]
        center = (shift[0] - scale * (ca * au - sa * av), shift[1] - scale * (sa * au + ca * av))
        canvas = Canvas(self.size, fov, center=center, angle=angle, scale=scale, mirror=mirror,
                        warp=self._warp(rng, part.warp_cm))
        sites = part.build(canvas, rng)
        implant = add_implant(canvas, rng, sites) if with_metal else ""
        maps = canvas.finish(texture=self._trabecular_texture(rng))
        pose = {"fov_cm": fov, "scale": scale, "angle_deg": math.degrees(angle), "mirror": mirror}
        return maps, canvas.pixel_cm, implant, pose

    # ------------------------------------------------------------------ public
    def generate(
        self, seed: int, body_part: str | None = None, *, return_maps: bool = False
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """Generate one labelled radiograph, deterministically from ``seed``.

        Args:
            seed: random seed (``numpy.random.default_rng(seed)`` drives every random choice).
            body_part: body part name or alias; ``None`` draws one from ``body_parts``.
            return_maps: also return the noise-free physics in ``info`` (``transmission``,
                ``scatter``, ``heel`` and the ``paths_cm`` dict of soft/bone/metal path maps).

        Returns:
            ``(image, label, info)``: ``image`` ``uint16 (size, size)`` MONOCHROME2 in
            ``[0, 2^bits - 1]``; ``label`` ``uint8 (size, size)`` in {0, 1, 2}; ``info`` dict with
            ``body_part``, ``seed``, ``has_metal``, ``implant``, ``metal``, ``bits``, ``kvp``,
            ``photons_per_pixel``, ``pixel_spacing_mm``, ``class_fractions`` (open_beam, soft_tissue,
            bone), ``photometric_interpretation`` (``"MONOCHROME2"``), ``log_window``, pose entries and
            ``detector_signal`` (raw linear signal, ``float32``; open beam brightest).

        Raises:
            KeyError: if ``body_part`` is unknown.
        """
        rng = np.random.default_rng(seed)
        if body_part is None:
            part = self._parts[int(rng.integers(len(self._parts)))]
        else:
            part = resolve_body_part(body_part)
        with_metal = bool(rng.random() < self.metal_probability)
        shrink = 1.0
        for attempt in range(_MAX_ATTEMPTS):
            maps, pixel_cm, implant, pose = self._phantom(part, rng, with_metal, shrink)
            fractions = np.bincount(maps.label.ravel(), minlength=3) / maps.label.size
            if all(f >= m for f, m in zip(fractions, _MIN_FRACTIONS)):
                break
            logger.debug("seed %s %s attempt %d rejected, class fractions %s", seed, part.name, attempt, fractions)
            shrink *= 0.93
        else:
            logger.warning("seed %s %s: class fractions %s below minimum after %d attempts", seed, part.name,
                           fractions, _MAX_ATTEMPTS)
        metal = str(rng.choice(["titanium", "steel"])) if implant not in ("prosthesis", "fillings") else "steel"
        acq = Acquisition(
            kvp=float(rng.uniform(*part.kvp)),
            filtration_mm_al=float(rng.uniform(2.5, 4.0)),
            aec_quanta=_log_uniform(rng, *part.photons),
            heel_strength=float(rng.uniform(0.05, 0.25)),
            heel_angle=float(rng.uniform(0.0, 2 * math.pi)),
            sid_cm=part.sid_cm,
            scatter_per_10cm=float(rng.uniform(*part.scatter_per_10cm)),
            scatter_sigma_cm=float(rng.uniform(3.0, 6.0)),
            psf_sigma_cm=float(rng.uniform(0.05, 0.1)),
            electronic_noise=float(rng.uniform(2.0, 10.0)),
            metal=metal,
            edge_enhancement=self.edge_enhancement * float(rng.uniform(0.6, 1.4)),
            range_compression=min(self.range_compression * float(rng.uniform(0.75, 1.35)), 0.9),
            tone_gamma=float(rng.uniform(1.0, 3.0)),
            bits=self.bits,
        )
        proj = simulate_projection(maps.soft, maps.bone, maps.metal, acq, pixel_cm, rng)
        info: dict = {
            "body_part": part.name,
            "seed": int(seed),
            "has_metal": bool(maps.metal.any()),
            "implant": implant,
            "metal": metal if implant else "",
            "bits": self.bits,
            "photometric_interpretation": "MONOCHROME2",
            "kvp": acq.kvp,
            "photons_per_pixel": proj.extra["photons_per_pixel"],
            "pixel_spacing_mm": pixel_cm * 10.0,
            "class_fractions": dict(zip(CLASS_NAMES, (float(f) for f in fractions))),
            "log_window": proj.log_window,
            **pose,
            "detector_signal": proj.detector_signal,
        }
        if return_maps:
            info.update(transmission=proj.transmission, scatter=proj.scatter, heel=proj.heel,
                        paths_cm={"soft": maps.soft, "bone": maps.bone, "metal": maps.metal})
        return proj.image, maps.label, info

    def __call__(self, seed: int, body_part: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """Alias of :meth:`generate`."""
        return self.generate(seed, body_part)


def generate_sample(
    seed: int, body_part: str | None = None, size: int = 256, **kwargs
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generate one labelled synthetic radiograph with a default :class:`SyntheticRadiographGenerator`.

    Args:
        seed: random seed; the same seed gives identical arrays.
        body_part: body part or alias (``hand``/``wrist``, ``knee``/``leg``, ``foot``/``ankle``,
            ``elbow``/``arm``, ``chest``, ``pelvis``, ``skull``); ``None`` draws one at random.
        size: image edge in pixels.
        **kwargs: further :class:`SyntheticRadiographGenerator` arguments (``bits``,
            ``metal_probability``, ``edge_enhancement``) and ``return_maps``.

    Returns:
        ``(image uint16, label uint8, info dict)``, see :meth:`SyntheticRadiographGenerator.generate`.

    Examples::

        >>> image, label, info = generate_sample(0, "hand", size=64)
        >>> sorted(set(label.ravel().tolist()))
        [0, 1, 2]
    """
    return_maps = bool(kwargs.pop("return_maps", False))
    return SyntheticRadiographGenerator(size=size, **kwargs).generate(seed, body_part, return_maps=return_maps)
