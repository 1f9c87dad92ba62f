"""Metal implants for the synthetic phantoms: plates with screws, nails, K-wires, hip screws,
hip prostheses, sternotomy wires, dental fillings and cranial mini-plates.

Every implant is drawn on the :class:`~pipeline.data.synthetic.canvas.Canvas` as ``metal`` path length,
so it is labelled class 2 (bone) by the generator, as XNet's task defines foreign metal. Implants are
anchored to :class:`ImplantSite` objects returned by the body-part builders (a bone axis with its radius)
so that they sit where a surgeon would put them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .canvas import Canvas

__all__ = ["ImplantSite", "IMPLANT_KINDS", "add_implant"]

#: Implant kinds that :func:`add_implant` can draw, by site kind.
IMPLANT_KINDS: dict[str, tuple[str, ...]] = {
    "shaft": ("plate", "nail", "kwires", "cerclage"),
    "small": ("kwires", "miniplate"),
    "neck": ("hip_screws", "prosthesis"),
    "midline": ("sternal_wires",),
    "teeth": ("fillings",),
    "vault": ("miniplate",),
}


@dataclass(frozen=True)
class ImplantSite:
    """A place where an implant can be fixed: a bone axis in body-local cm.

    Args:
        kind: ``"shaft"`` (long-bone diaphysis), ``"small"`` (metacarpal/phalanx/metatarsal),
            ``"neck"`` (femoral neck: ``start`` = head centre, ``end`` = neck base, shaft below),
            ``"midline"`` (sternum), ``"teeth"`` (dental arch), ``"vault"`` (skull).
        start: ``(u, v)`` start of the axis.
        end: ``(u, v)`` end of the axis.
        radius: bone radius (cm) around the axis.
    """

    kind: str
    start: tuple[float, float]
    end: tuple[float, float]
    radius: float


def _frame(site: ImplantSite) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    a = np.asarray(site.start, dtype=np.float64)
    b = np.asarray(site.end, dtype=np.float64)
    axis = b - a
    length = float(np.linalg.norm(axis))
    t = axis / max(length, 1e-6)
    n = np.array([-t[1], t[0]])
    return a, t, n, length


def _screw(canvas: Canvas, p0: np.ndarray, p1: np.ndarray, radius: float, head: bool = True) -> None:
    canvas.sweep(
        [p0, p1], radius, material="metal", flat_ends=True, thread_pitch=radius * 0.8, thread_depth=radius * 0.35
    )
    if head:
        d = (p1 - p0) / max(float(np.linalg.norm(p1 - p0)), 1e-6)
        canvas.sweep([p0 - d * radius * 0.9, p0], radius * 2.0, depths=radius * 1.6, material="metal", flat_ends=True)


def _plate(canvas: Canvas, rng: np.random.Generator, site: ImplantSite, scale: float = 1.0) -> None:
    a, t, n, length = _frame(site)
    side = rng.choice([-1.0, 1.0])
    f0 = rng.uniform(0.1, 0.4)
    f1 = min(f0 + rng.uniform(0.3, 0.55), 0.95)
    off = n * side * (site.radius + 0.2 * scale)
    p0, p1 = a + t * length * f0 + off, a + t * length * f1 + off
    canvas.sweep([p0, p1], 0.2 * scale, depths=0.6 * scale, material="metal", box=True, flat_ends=True)
    n_screws = max(2, int(length * (f1 - f0) / (1.3 * scale)))
    for s in np.linspace(0.06, 0.94, n_screws):
        base = p0 + (p1 - p0) * s
        tilt = rng.normal(0.0, 0.08)
        d = -side * n * math.cos(tilt) + t * math.sin(tilt)
        _screw(canvas, base, base + d * (2 * site.radius + 0.5 * scale), 0.2 * scale)


def add_implant(canvas: Canvas, rng: np.random.Generator, sites: list[ImplantSite]) -> str:
    """Draw one randomly chosen implant at one randomly chosen site.

    Args:
        canvas: canvas of the phantom.
        rng: random generator.
        sites: candidate sites from the body-part builder.

    Returns:
        The implant kind drawn (a value of :data:`IMPLANT_KINDS`), or ``""`` if ``sites`` is empty.
    """
    if not sites:
        return ""
    site = sites[int(rng.integers(len(sites)))]
    kinds = IMPLANT_KINDS.get(site.kind, ("kwires",))
    kind = str(kinds[int(rng.integers(len(kinds)))])
    a, t, n, length = _frame(site)
    if kind == "plate":
        _plate(canvas, rng, site)
    elif kind == "miniplate":
        _plate(canvas, rng, site, scale=0.5 if site.kind == "small" else 0.6)
    elif kind == "nail":
        f0, f1 = rng.uniform(0.0, 0.1), rng.uniform(0.85, 1.0)
        r = 0.55 * site.radius
        canvas.sweep([a + t * length * f0, a + t * length * f1], r, material="metal")
        for f in (f0 + 0.06, f1 - 0.06):
            c = a + t * length * f
            _screw(canvas, c - n * (site.radius + 0.3), c + n * (site.radius + 0.3), 0.22)
    elif kind == "kwires":
        for _ in range(int(rng.integers(1, 4))):
            c = a + t * length * rng.uniform(0.2, 0.9) + n * rng.normal(0, site.radius * 0.3)
            ang = rng.uniform(-0.9, 0.9)
            d = t * math.cos(ang) + n * math.sin(ang)
            half = rng.uniform(2.0, 5.0) * max(site.radius, 0.5)
            canvas.sweep([c - d * half, c + d * half], rng.uniform(0.06, 0.1), material="metal")
    elif kind == "cerclage":
        for f in np.sort(rng.uniform(0.2, 0.85, int(rng.integers(2, 5)))):
            c = a + t * length * f
            w = site.radius + 0.1
            canvas.sweep([c - n * w, c + n * w], 0.07, depths=0.25, material="metal")
    elif kind == "hip_screws":
        head = a
        d = (a - np.asarray(site.end)) / max(float(np.linalg.norm(a - np.asarray(site.end))), 1e-6)
        base = np.asarray(site.end) + np.array([0.3 * np.sign(site.end[0] - a[0]), 2.0])
        for k in range(int(rng.integers(2, 4))):
            off = np.array([-d[1], d[0]]) * (k - 1) * 0.9
            _screw(canvas, base + off, head + off * 0.8 + d * 0.8, 0.35)
    elif kind == "prosthesis":
        head = a
        neck = np.asarray(site.end)
        down = np.array([-0.06 * np.sign(neck[0] - head[0]), 1.0])  # along the femoral shaft
        stem = [head, neck, neck + down * 4.0, neck + down * 12.0]
        canvas.sweep(stem, [0.8, 0.9, 0.7, 0.4], depths=[0.8, 0.9, 0.8, 0.45], material="metal")
        canvas.ellipsoid(head, (1.35, 1.35), 1.35, material="metal")
        ang = np.linspace(math.pi * 1.05, math.pi * 1.95, 10)
        cup = [head + 1.85 * np.array([math.cos(x), math.sin(x)]) for x in ang]
        canvas.sweep(cup, 0.18, depths=1.6, material="metal")
    elif kind == "sternal_wires":
        for v in np.linspace(0.0, 1.0, int(rng.integers(4, 7))):
            c = a + t * length * v
            ang = np.linspace(0, 2 * math.pi, 13)
            ring = [c + np.array([1.0 * math.cos(x), 0.35 * math.sin(x)]) for x in ang]
            canvas.sweep(ring, 0.06, depths=0.12, material="metal")
    elif kind == "fillings":
        for _ in range(int(rng.integers(1, 5))):
            c = a + t * length * rng.uniform(0.0, 1.0) + n * rng.normal(0, 0.2)
            canvas.ellipsoid(c, (rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.35)), 0.3, material="metal")
    return kind
