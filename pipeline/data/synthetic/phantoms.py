"""Randomised 2D projection phantoms of body parts, drawn on a :class:`Canvas`.

Each builder draws one body part in a body-local frame (cm, ``u`` to the right, ``v`` down, adult
reference size) from soft-tissue solids (skin envelope), air cavities and bones, with randomised
proportions, and returns the :class:`~pipeline.data.synthetic.implants.ImplantSite` list where metal
can be fixed. Pose (position, rotation, scale, mirror) and a smooth deformation are applied by the
canvas, so builders only deal with anatomy.

Body parts (view):

- ``hand`` (PA hand and wrist): forearm, palm, five rays; radius/ulna, 8 carpals, metacarpals,
  14 phalanges.
- ``knee`` (AP knee / leg): thigh-leg envelope; femur with condyles, patella, tibia with plateau and
  spines, fibula.
- ``foot`` (lateral foot and ankle): leg, foot and heel pad; tibia, fibula, talus, calcaneus,
  navicular, cuboid, cuneiforms, 5 metatarsals, toes.
- ``elbow`` (AP elbow / arm) with a random carrying angle: humerus with epicondyles, capitulum and
  trochlea, ulna with olecranon, radius with head.
- ``chest`` (PA chest): thorax, neck, shoulders, optional arms; air-filled lungs, trachea and bronchi,
  heart and mediastinum, stomach bubble; 10 pairs of ribs, clavicles, scapulae, humeral heads, spine.
- ``pelvis`` (AP pelvis): abdomen and thighs with bowel gas; L4-L5, sacrum, iliac wings, pubic and
  ischial rami, acetabular roofs, femoral heads, necks, trochanters and shafts.
- ``skull`` (PA skull): head, face and neck; vault as a cortical shell, orbital rims, petrous ridges,
  sinuses and nasal cavity, nasal septum, zygomatic arches, mandible, teeth, cervical spine.

Bone material: cortical shells use cortical bone (ICRU-44); interiors use a bone volume fraction
``fill`` (trabecular epiphyses ~0.3, diaphyseal marrow ~0.05-0.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .canvas import Canvas
from .implants import ImplantSite

__all__ = ["BodyPart", "BODY_PARTS", "BODY_PART_ALIASES", "resolve_body_part"]

Builder = Callable[[Canvas, np.random.Generator], list[ImplantSite]]


@dataclass(frozen=True)
class BodyPart:
    """Phantom builder plus the pose and exposure ranges of one body part.

    Args:
        name: canonical name.
        build: ``build(canvas, rng) -> sites`` drawing the anatomy.
        fov_cm: field-of-view range (cm).
        anchor: body-local point placed at the image centre before the random shift.
        shift_cm: standard deviation of the random shift of the body in the field (cm).
        max_angle_deg: maximum absolute in-plane rotation.
        scale: anatomical scale range.
        kvp: tube voltage range.
        photons: automatic-exposure target, quanta per pixel behind the body (log-uniform range).
        scatter_per_10cm: scatter-to-primary ratio per 10 cm water range.
        sid_cm: source-image distance.
        warp_cm: amplitude of the smooth random deformation (cm).
        mirror: whether the body may be mirrored left-right (limbs: left/right side); off for the
            chest so that the heart stays on the patient's left (image right).
    """

    name: str
    build: Builder
    fov_cm: tuple[float, float]
    anchor: tuple[float, float]
    shift_cm: float
    max_angle_deg: float
    scale: tuple[float, float]
    kvp: tuple[float, float]
    photons: tuple[float, float]
    scatter_per_10cm: tuple[float, float]
    sid_cm: float
    warp_cm: float
    mirror: bool = True


def _rot(points: list[tuple[float, float]] | np.ndarray, angle: float, origin=(0.0, 0.0)) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64) - origin
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], axis=1) + origin


def _mirror(points: list[tuple[float, float]], side: float) -> list[tuple[float, float]]:
    return [(side * u, v) for u, v in points]


def _ring(center: tuple[float, float], a: float, b: float, n: int = 16) -> list[tuple[float, float]]:
    t = np.linspace(0.0, 2 * math.pi, n + 1)
    return [(center[0] + a * math.cos(x), center[1] + b * math.sin(x)) for x in t]


def _bone_segment(
    c: Canvas,
    start: np.ndarray,
    end: np.ndarray,
    radii: tuple[float, float, float, float],
    *,
    shell: float,
    fill: float,
    flat: float = 0.85,
) -> None:
    """Small tubular bone (phalanx, metacarpal, metatarsal) from ``start`` to ``end``: flared base,
    waist and head; the rounded ends are pulled in so that the bone ends at the given points."""
    axis = end - start
    length = float(np.linalg.norm(axis))
    d = axis / max(length, 1e-6)
    start = start + d * min(radii[0] * 0.8, 0.3 * length)
    end = end - d * min(radii[3] * 0.8, 0.3 * length)
    p = [start, start + (end - start) * 0.25, start + (end - start) * 0.75, end]
    r = np.asarray(radii)
    c.sweep(p, r, depths=r * flat, shell=shell, fill=fill)


# ---------------------------------------------------------------------------------------------- hand
def _hand(c: Canvas, rng: np.random.Generator) -> list[ImplantSite]:
    u = rng.uniform
    sites: list[ImplantSite] = []
    girth = u(0.9, 1.15)
    # soft tissue: forearm, palm, thenar / hypothenar eminences
    c.sweep([(0.0, 2.5), (0.0, 7.0), (0.0, 26.0)], np.array([3.8, 3.1, 3.6]) * girth,
            depths=np.array([1.7, 1.9, 2.4]) * girth, material="soft")
    c.ellipsoid((0.0, -0.4), (4.6, 4.2), 1.55 * girth, exponent=2.6, material="soft")
    c.ellipsoid((-2.6, 0.6), (1.7, 2.6), 1.8 * girth, angle=0.4, material="soft")
    c.ellipsoid((3.0, 0.7), (1.3, 2.6), 1.5 * girth, angle=-0.1, material="soft")
    # radius and ulna (distal): shaft flaring into a wide epiphysis, styloid processes
    with c.bone():
        c.sweep([(-1.2, 26.0), (-1.2, 9.5), (-1.3, 6.6)], [0.7, 0.75, 1.45], depths=[0.6, 0.65, 0.95],
                shell=[0.18, 0.16, 0.04], fill=0.12, flat_ends=True)
        c.ellipsoid((-1.35, 6.6), (1.6, 0.75), 1.0, angle=-0.1, exponent=2.4, shell=0.08, fill=0.4)
        c.ellipsoid((-2.65, 6.0), (0.35, 0.6), 0.55, shell=0.07, fill=0.4)
    with c.bone():
        c.sweep([(1.7, 26.0), (1.6, 9.5), (1.55, 6.9)], [0.55, 0.55, 0.72], shell=[0.16, 0.14, 0.04], fill=0.12,
                flat_ends=True)
        c.ellipsoid((1.55, 6.9), (0.75, 0.55), 0.75, shell=0.07, fill=0.4)
        c.ellipsoid((2.15, 6.5), (0.25, 0.45), 0.35, shell=0.06, fill=0.4)
    sites.append(ImplantSite("shaft", (-1.2, 16.0), (-1.3, 7.5), 0.9))
    # carpals: distal row (trapezium, trapezoid, capitate, hamate), proximal row (scaphoid, lunate,
    # triquetrum, pisiform)
    carpals = [((-2.5, 2.9), (0.95, 0.85), 0.3), ((-1.35, 2.7), (0.7, 0.7), 0.0), ((-0.1, 3.05), (0.85, 1.25), 0.0),
               ((1.45, 2.95), (0.9, 1.1), -0.2), ((-1.95, 4.75), (0.72, 1.25), 0.7), ((-0.3, 5.0), (0.9, 0.78), 0.0),
               ((1.25, 4.7), (0.8, 0.7), 0.2), ((1.65, 5.0), (0.5, 0.5), 0.0)]
    for (cu, cv), (a, b), ang in carpals:
        c.ellipsoid((cu + rng.normal(0, 0.07), cv + rng.normal(0, 0.07)), (a * u(0.92, 1.08), b * u(0.92, 1.08)),
                    0.75 * u(0.9, 1.1), angle=ang, shell=0.06, fill=0.3, exponent=2.3, depth_exponent=3.0)
    # fingers: metacarpal head position, ray angle, phalanx lengths, radius scale
    spread = u(0.3, 1.4)
    rays = [(-2.9, -3.6, -7.0, (4.0, 2.4, 1.7), 1.0), (-0.95, -3.85, -1.0, (4.5, 2.8, 1.8), 1.05),
            (0.95, -3.65, 5.0, (4.1, 2.6, 1.8), 1.0), (2.8, -3.2, 12.0, (3.3, 1.9, 1.6), 0.88)]
    index_head = None
    for hu, hv, ang_deg, lengths, rs in rays:
        ang = math.radians(ang_deg * spread + rng.normal(0, 2.5))
        d = np.array([math.sin(ang), -math.cos(ang)])
        head = np.array([hu, hv]) + rng.normal(0, 0.1, 2)
        index_head = head if index_head is None else index_head
        base = np.array([hu * 0.65, 1.6 - 0.12 * abs(hu)])
        _bone_segment(c, base, head, (0.6 * rs, 0.42 * rs, 0.42 * rs, 0.58 * rs), shell=0.14, fill=0.12)
        sites.append(ImplantSite("small", tuple(base), tuple(head), 0.45 * rs))
        p = head + d * 0.78
        joints = [head - d * 1.2]
        for k, (length, r0) in enumerate(zip(lengths, (0.48, 0.39, 0.32))):
            length *= u(0.92, 1.08)
            r = r0 * rs
            _bone_segment(c, p, p + d * length, (r * 1.12, r * 0.8, r * 0.8, r * (1.0 if k < 2 else 0.85)),
                          shell=0.1, fill=0.15)
            p = p + d * (length + 0.2)
            joints.append(p)
        c.sweep([joints[0], joints[1], joints[2], joints[3], p + d * 0.1], np.array([1.0, 0.95, 0.88, 0.8, 0.68]) * rs,
                depths=np.array([0.95, 0.85, 0.78, 0.7, 0.56]) * rs, material="soft")
    # thumb: metacarpal from the trapezium, two phalanges, thenar web to the index
    ang = math.radians(-42.0 + rng.normal(0, 6.0))
    d = np.array([math.sin(ang), -math.cos(ang)])
    base = np.array([-2.9, 2.2])
    p = base
    joints = [base]
    for k, (length, r) in enumerate(zip((4.4, 3.1, 2.4), (0.58, 0.52, 0.42))):
        length *= u(0.92, 1.08)
        end = p + d * length
        _bone_segment(c, p, end, (r * 1.12, r * 0.8, r * 0.8, r * (1.0 if k < 2 else 0.85)), shell=0.12, fill=0.14)
        p = end + d * 0.25
        joints.append(p)
    c.sweep([joints[0] + d * 1.0, joints[1], joints[2], p + d * 0.1], [1.6, 1.2, 1.05, 0.8],
            depths=[1.5, 1.0, 0.9, 0.66], material="soft")
    web = (joints[1] + index_head) / 2
    c.ellipsoid(tuple(web + np.array([0.0, 0.6])), (1.8, 1.4), 0.9, angle=-0.5, material="soft")
    return sites


# ---------------------------------------------------------------------------------------------- knee
def _knee(c: Canvas, rng: np.random.Generator) -> list[ImplantSite]:
    u = rng.uniform
    g = u(0.85, 1.25)
    c.sweep([(0, -24), (0, -10), (0, -3), (0, 2), (0, 9), (0, 24)],
            np.array([7.2, 6.6, 5.5, 5.1, 5.5, 4.5]) * g, depths=np.array([7.0, 6.4, 5.2, 4.9, 5.3, 4.2]) * g,
            material="soft")
    gap = u(0.35, 0.7)
    w = u(0.92, 1.08)
    with c.bone():  # femur
        c.sweep([(0.4, -26), (0.2, -12), (0.0, -8.0), (0.0, -4.5)], np.array([1.45, 1.5, 2.3, 3.5]) * w,
                depths=[1.45, 1.45, 2.0, 2.6], shell=[0.45, 0.4, 0.15, 0.1], fill=[0.06, 0.08, 0.3, 0.35],
                flat_ends=True)
        c.ellipsoid((0.0, -4.0 - gap / 2), (3.7 * w, 2.4), 2.7, exponent=2.6, shell=0.12, fill=0.35)
        c.ellipsoid((-2.05 * w, -2.0 - gap / 2), (1.95 * w, 2.0), 2.8, shell=0.15, fill=0.35)
        c.ellipsoid((2.1 * w, -2.0 - gap / 2), (1.8 * w, 1.95), 2.8, shell=0.15, fill=0.35)
    c.ellipsoid((u(-0.4, 0.8), -3.6 + u(-1, 1)), (2.0, 2.45), 1.1, shell=0.15, fill=0.4)  # patella
    with c.bone():  # tibia
        c.ellipsoid((0.0, 1.3 + gap / 2), (4.1 * w, 1.2), 2.7, exponent=2.6, shell=0.12, fill=0.4)
        c.ellipsoid((-0.5, 0.45 + gap / 2), (0.35, 0.5), 0.6, shell=0.1, fill=0.4)
        c.ellipsoid((0.55, 0.5 + gap / 2), (0.35, 0.45), 0.6, shell=0.1, fill=0.4)
        c.sweep([(0.0, 1.6 + gap / 2), (0.0, 6.0), (0.2, 12.0), (0.3, 26.0)], np.array([3.7, 2.2, 1.45, 1.3]) * w,
                depths=[2.6, 2.0, 1.6, 1.5], shell=[0.1, 0.2, 0.4, 0.45], fill=[0.35, 0.25, 0.08, 0.06],
                flat_ends=True)
    with c.bone():  # fibula
        fu = 4.0 * w
        c.ellipsoid((fu, 3.4 + gap / 2), (0.95, 1.15), 1.1, shell=0.1, fill=0.4)
        c.sweep([(fu, 3.8), (fu - 0.2, 12.0), (fu - 0.5, 26.0)], [0.65, 0.5, 0.5], shell=0.18, fill=0.06)
    return [ImplantSite("shaft", (0.3, -20.0), (0.05, -7.0), 1.5 * w),
            ImplantSite("shaft", (0.1, 5.0), (0.3, 20.0), 1.5 * w)]


# ---------------------------------------------------------------------------------------------- foot
def _foot(c: Canvas, rng: np.random.Generator) -> list[ImplantSite]:
    u = rng.uniform
    g = u(0.9, 1.2)
    c.sweep([(-4.2, -20), (-4.0, -8), (-4.0, -2)], np.array([4.4, 3.6, 3.3]) * g,
            depths=np.array([4.4, 3.6, 3.2]) * g, material="soft")
    c.sweep([(-7.0, 2.4), (-5.5, 2.0), (-2.5, 1.3), (1.5, 1.6), (6.5, 2.7), (10.5, 3.3), (12.5, 3.5)],
            np.array([2.2, 2.9, 3.1, 2.6, 1.7, 1.05, 0.75]) * g, depths=[2.8, 3.2, 3.5, 4.0, 4.3, 3.8, 3.0],
            material="soft")
    c.ellipsoid((-6.3, 2.9), (2.3 * g, 2.0 * g), 3.0, material="soft")
    with c.bone():  # tibia
        c.sweep([(-3.6, -22), (-3.7, -6), (-3.9, -1.45)], [1.35, 1.55, 2.1], depths=[1.4, 1.6, 2.2],
                shell=0.35, fill=0.1, flat_ends=True)
    with c.bone():  # fibula
        c.sweep([(-4.8, -22), (-5.0, -6), (-5.25, -0.4)], [0.6, 0.65, 0.85], shell=0.18, fill=0.12)
    with c.bone():  # talus
        c.ellipsoid((-3.8, 0.2), (2.1, 1.25), 2.1, shell=0.12, fill=0.4)
        c.ellipsoid((-1.8, 0.55), (1.2, 0.9), 1.6, shell=0.1, fill=0.4)
    with c.bone():  # calcaneus
        c.ellipsoid((-5.5, 2.05), (2.9, 1.45), 2.0, angle=-0.15, shell=0.12, fill=0.38, exponent=2.4)
        c.ellipsoid((-7.4, 2.35), (1.1, 1.3), 1.8, shell=0.12, fill=0.38)
    c.ellipsoid((-0.45, 0.75), (0.7, 1.0), 1.5, shell=0.1, fill=0.4)  # navicular
    c.ellipsoid((-1.3, 2.3), (1.3, 0.9), 1.4, shell=0.1, fill=0.4, exponent=2.5)  # cuboid
    c.ellipsoid((0.85, 1.1), (1.0, 1.05), 2.0, shell=0.1, fill=0.4, exponent=2.5)  # cuneiforms
    sites = [ImplantSite("shaft", (-3.6, -18.0), (-3.8, -5.0), 1.5),
             ImplantSite("small", (-4.8, -18.0), (-5.1, -3.0), 0.65)]
    for i in range(5):
        base = np.array([1.75 + 0.15 * i, 1.05 + 0.28 * i + rng.normal(0, 0.08)])
        head = np.array([7.7 - 0.45 * i, 2.85 + 0.06 * i + rng.normal(0, 0.08)])
        r = 0.62 if i == 0 else 0.45
        _bone_segment(c, base, head, (r * 1.1, r * 0.8, r * 0.75, r * 1.1), shell=0.12, fill=0.12)
        sites.append(ImplantSite("small", tuple(base), tuple(head), r))
        d = (head - base) / np.linalg.norm(head - base)
        d = _rot(d[None], -0.25 + rng.normal(0, 0.05))[0]
        p = head + d * (r + 0.15)
        for length, rr in zip((2.6 if i == 0 else 2.0, 0.9, 0.8)[: 2 if i == 0 else 3], (0.42, 0.32, 0.28)):
            _bone_segment(c, p, p + d * length, (rr * 1.1, rr * 0.8, rr * 0.75, rr), shell=0.1, fill=0.15)
            p = p + d * (length + 0.15)
    return sites


# ---------------------------------------------------------------------------------------------- elbow
def _elbow(c: Canvas, rng: np.random.Generator) -> list[ImplantSite]:
    u = rng.uniform
    g = u(0.9, 1.2)
    carry = math.radians(u(3.0, 20.0))
    c.sweep([(0, -22), (0, -8), (0, -1)], np.array([4.4, 4.2, 4.4]) * g, depths=np.array([4.0, 3.9, 3.4]) * g,
            material="soft")
    fore = _rot([(0, -1), (0, 8), (0, 22)], carry)
    c.sweep(fore, np.array([4.4, 3.8, 3.0]) * g, depths=np.array([3.4, 3.3, 2.5]) * g, material="soft")
    with c.bone():  # humerus
        c.sweep([(0.0, -26), (0.0, -10), (0.1, -3.0)], [1.2, 1.2, 2.0], depths=[1.2, 1.2, 1.3],
                shell=[0.35, 0.3, 0.1], fill=[0.06, 0.08, 0.35], flat_ends=True)
        c.ellipsoid((0.1, -2.4), (3.1, 1.35), 1.5, exponent=2.6, shell=0.12, fill=0.4)
        c.ellipsoid((1.3, -1.1), (1.0, 0.95), 1.2, shell=0.1, fill=0.4)
        c.ellipsoid((-0.9, -1.0), (1.25, 0.95), 1.5, shell=0.1, fill=0.4)
    with c.bone():  # ulna
        c.ellipsoid((-0.8, -0.3), (0.9, 1.1), 1.1, shell=0.1, fill=0.3)
        c.sweep(_rot([(-0.9, 0.4), (-1.2, 10.0), (-1.3, 24.0)], carry), [0.95, 0.7, 0.6], shell=[0.1, 0.25, 0.25],
                fill=[0.3, 0.08, 0.08])
    with c.bone():  # radius
        c.ellipsoid(_rot([(1.45, 0.95)], carry)[0], (1.0, 0.5), 1.0, angle=carry, shell=0.08, fill=0.3)
        c.sweep(_rot([(1.45, 1.3), (1.5, 4.0), (1.9, 12.0), (1.7, 24.0)], carry), [0.6, 0.7, 0.8, 0.95],
                shell=[0.1, 0.2, 0.25, 0.25], fill=[0.3, 0.1, 0.08, 0.08])
    ulna = _rot([(-1.2, 5.0), (-1.3, 18.0)], carry)
    radius = _rot([(1.6, 5.0), (1.8, 18.0)], carry)
    return [ImplantSite("shaft", (0.0, -20.0), (0.0, -6.0), 1.2),
            ImplantSite("shaft", tuple(ulna[0]), tuple(ulna[1]), 0.7),
            ImplantSite("shaft", tuple(radius[0]), tuple(radius[1]), 0.8)]


# ---------------------------------------------------------------------------------------------- chest
def _vessel_tree(c: Canvas, rng: np.random.Generator, hilum: np.ndarray, side: float, n: int) -> None:
    """Pulmonary vessels: tapering soft-tissue branches fanning out from the hilum into the lung."""
    for _ in range(n):
        ang = rng.uniform(-0.45, 1.0) * math.pi if side > 0 else rng.uniform(0.0, 1.45) * math.pi
        d = np.array([math.cos(ang), math.sin(ang)])
        length = rng.uniform(5.0, 11.0)
        bend = rng.normal(0.0, 0.25)
        d2 = _rot(d[None], bend)[0]
        p0 = hilum + rng.normal(0.0, 0.6, 2)
        p1 = p0 + d * length * 0.45
        p2 = p1 + d2 * length * 0.55
        r0 = rng.uniform(0.3, 0.45)
        c.sweep([p0, p1, p2], [r0, r0 * 0.6, 0.06], material="tissue")
        if rng.random() < 0.6:
            d3 = _rot(d[None], rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.7))[0]
            c.sweep([p1, p1 + d3 * length * 0.45], [r0 * 0.5, 0.05], material="tissue")


def _chest(c: Canvas, rng: np.random.Generator) -> list[ImplantSite]:
    u = rng.uniform
    w = u(12.5, 15.0)  # half width of the thorax
    g = u(0.9, 1.25)  # habitus (soft-tissue thickness)
    c.ellipsoid((0.0, 7.0), (w, 25.0), 10.0 * g, exponent=3.5, material="soft")
    c.sweep([(0.0, -26.0), (0.0, -15.0)], 5.0, depths=5.5, material="soft")
    arms = rng.random() < 0.35
    for side in (-1.0, 1.0):
        c.sweep(_mirror([(3.0, -17.0), (w - 1.0, -14.5), (w + 2.5, -12.0)], side), [4.0, 4.5, 4.2],
                depths=np.array([6.0, 6.5, 4.5]) * g, material="soft")
        if arms:
            c.sweep(_mirror([(w + 2.5, -12.0), (w + 3.8, -2.0), (w + 4.3, 12.0)], side), [4.0, 3.7, 3.5],
                    depths=[4.2, 3.8, 3.5], material="soft")
    # air: lungs (inflated lung is ~0.26 g/cm^3, so a lung displaces ~75 % of its volume of tissue),
    # trachea, bronchi, stomach bubble; heart, mediastinum and vessels displace lung
    for side in (-1.0, 1.0):
        base = 2.5 + (0.8 if side > 0 else 0.0) + u(-1.0, 1.0)
        lw = (w - 1.2) / 13.5
        c.sweep(_mirror([(5.5, -15.5), (7.6 * lw + 0.5, -10.0), (8.6 * lw, -3.0), (9.0 * lw, base)], side),
                np.array([2.0, 4.2, 5.0, 5.0]) * lw, depths=np.array([3.0, 6.0, 7.5, 7.0]) * g * 0.75, material="air")
    heart_u = u(2.0, 3.2)
    c.ellipsoid((heart_u, 3.3), (u(5.8, 7.0), 5.3), 6.0 * g, angle=-0.5, material="tissue")
    c.ellipsoid((0.3, -6.5), (3.0, 8.0), 5.0 * g, material="tissue")
    for side in (-1.0, 1.0):
        _vessel_tree(c, rng, np.array([side * 2.8, -4.5]), side, int(rng.integers(10, 16)))
    c.sweep([(0.0, -26.0), (0.0, -15.0), (0.3, -7.5)], 0.9, material="air")
    c.sweep([(0.3, -7.5), (-2.3, -5.4)], 0.6, material="air")
    c.sweep([(0.3, -7.5), (2.5, -5.0)], 0.55, material="air")
    if rng.random() < 0.7:
        c.ellipsoid((u(4.0, 7.0), u(8.5, 10.5)), (u(1.5, 3.0), u(1.0, 2.0)), 2.5, material="air")
    # spine
    for k, v in enumerate(np.arange(-23.0, 20.0, 2.65)):
        with c.bone():
            c.ellipsoid((0.0, v), (1.6 + 0.04 * k, 1.05), 1.5, exponent=3.0, shell=0.08, fill=0.22, depth_exponent=3.0)
            for side in (-1.0, 1.0):
                c.ellipsoid((side * (1.25 + 0.02 * k), v - 0.3), (0.33, 0.48), 0.7, shell=0.08, fill=0.35)
    # ribs: posterior arc from the spine, lateral turn, fainter anterior arc going medially down
    frac = [0.5, 0.68, 0.8, 0.88, 0.94, 0.98, 1.0, 1.0, 0.97, 0.92]
    for i, f in enumerate(frac):
        v0 = -16.5 + i * 2.45
        lat = (w - 0.8) * f
        pts = [(1.8, v0), (4.5, v0 - 0.7), (0.6 * lat + 1.5, v0 - 0.4 + 0.1 * i), (0.9 * lat, v0 + 1.5 + 0.2 * i),
               (lat, v0 + 3.8 + 0.3 * i), (0.85 * lat, v0 + 6.5 + 0.3 * i), (0.55 * lat, v0 + 8.3 + 0.3 * i),
               (0.3 * lat, v0 + 9.3 + 0.3 * i)]
        rad = [0.55, 0.6, 0.62, 0.62, 0.6, 0.55, 0.5, 0.45]
        for side in (-1.0, 1.0):
            jitter = rng.normal(0, 0.15)
            pp = [(x, y + jitter) for x, y in _mirror(pts, side)]
            c.sweep(pp[:6], rad[:6], depths=0.33, shell=0.08, fill=0.25)
            c.sweep(pp[5:], rad[5:], depths=0.28, shell=0.05, fill=0.1)
    for side in (-1.0, 1.0):
        c.sweep(_mirror([(1.5, -15.2), (5.0, -16.2), (9.5, -16.8), (w + 0.8, -18.0)], side), 0.75,
                depths=0.65, shell=0.18, fill=0.25)
        c.ellipsoid((side * (w - 2.0), -9.0), (3.0, 6.2), 0.4, angle=side * 0.25, shell=0.08, fill=0.5)
        with c.bone():
            c.ellipsoid((side * (w + 1.8), -13.0), (2.5, 2.5), 2.5, shell=0.1, fill=0.35)
            c.sweep(_mirror([(w + 2.0, -12.0), (w + 3.0, -2.0), (w + 3.5, 12.0)], side), [1.9, 1.3, 1.2],
                    shell=[0.1, 0.35, 0.35], fill=0.07)
    return [ImplantSite("midline", (0.0, -12.0), (0.0, 0.5), 1.0),
            ImplantSite("shaft", (2.0, -16.4), (9.0, -16.3), 0.75)]


# ---------------------------------------------------------------------------------------------- pelvis
def _pelvis(c: Canvas, rng: np.random.Generator) -> list[ImplantSite]:
    u = rng.uniform
    g = u(0.9, 1.25)
    c.sweep([(0, -36), (0, -12), (0, -2), (0, 5)], np.array([14.5, 16.0, 17.5, 16.5]) * g,
            depths=np.array([10.0, 10.5, 11.0, 10.5]) * g, material="soft", flat_ends=True)
    c.ellipsoid((0.0, 5.0), (14.0 * g, 5.0), 9.5 * g, material="soft")
    for side in (-1.0, 1.0):
        c.sweep(_mirror([(9.5, 4.0), (10.2, 14.0), (10.6, 30.0)], side), np.array([8.3, 7.6, 6.8]) * g,
                depths=np.array([8.0, 7.4, 6.8]) * g, material="soft")
    for _ in range(int(rng.integers(2, 9))):  # bowel gas
        c.ellipsoid((u(-11, 11), u(-24, -3)), (u(0.6, 2.2), u(0.5, 1.5)), u(0.6, 2.0), angle=u(0, math.pi),
                    material="air")
    for v in (-19.0, -15.5):  # L4, L5 with transverse processes and spinous process
        with c.bone():
            c.ellipsoid((0.0, v), (2.5, 1.3), 1.7, exponent=3.0, shell=0.12, fill=0.35, depth_exponent=3.0)
            c.sweep([(-4.0, v - 0.4), (4.0, v - 0.4)], 0.45, depths=0.5, shell=0.1, fill=0.35)
            c.ellipsoid((0.0, v + 0.3), (0.35, 0.8), 0.9, shell=0.1, fill=0.35)
    with c.bone():  # sacrum and coccyx
        c.sweep([(0, -12.8), (0, -6.5), (0, -1.0)], [5.2, 3.4, 1.3], depths=[1.6, 1.4, 1.0], shell=0.15,
                fill=0.3, flat_ends=True)
        c.sweep([(0, -1.0), (0, 1.8)], [0.9, 0.5], shell=0.1, fill=0.35)
    for k in range(4):  # sacral foramina (less bone)
        for side in (-1.0, 1.0):
            c.ellipsoid((side * (2.2 - 0.25 * k), -10.5 + 2.2 * k), (0.45, 0.4), 0.8, material="air")
    sites = []
    for side in (-1.0, 1.0):
        head = (side * 9.7, 1.8)
        with c.bone():  # ilium with acetabulum
            c.ellipsoid((side * 9.3, -7.8), (4.8, 5.6), 1.0, angle=side * 0.5, shell=0.22, fill=0.4,
                        exponent=2.3, clip=(-side * 0.6, 0.8, 2.6))
            c.sweep(_mirror([(5.0, -4.0), (8.0, -0.5), (9.4, 0.6)], side), [1.8, 2.4, 2.2], depths=1.6,
                    shell=0.15, fill=0.35)
            ang = np.linspace(math.pi * 1.1, math.pi * 1.85, 8)
            roof = [(head[0] + 2.8 * math.cos(a), head[1] + 2.8 * math.sin(a)) for a in ang]
            c.sweep(roof, 0.4, depths=1.6, shell=0.15, fill=0.5)
        with c.bone():  # pubis and ischium
            c.sweep(_mirror([(7.8, 2.6), (4.5, 4.6), (1.3, 5.6)], side), [1.4, 0.8, 0.9], depths=[1.4, 0.9, 1.2],
                    shell=0.15, fill=0.35)
            c.ellipsoid((side * 1.5, 6.6), (1.0, 1.7), 1.3, shell=0.12, fill=0.35)
            c.sweep(_mirror([(1.3, 7.6), (3.8, 9.0), (6.4, 8.6)], side), 0.8, shell=0.15, fill=0.35)
            c.sweep(_mirror([(8.4, 3.2), (8.0, 5.8), (6.8, 8.4)], side), [1.7, 1.3, 1.5], depths=1.5,
                    shell=0.15, fill=0.35)
            c.ellipsoid((side * 6.9, 8.4), (1.3, 1.0), 1.4, shell=0.12, fill=0.35)
        with c.bone():  # proximal femur
            c.ellipsoid(head, (2.4, 2.4), 2.4, shell=0.12, fill=0.38)
            c.sweep(_mirror([(10.5, 2.6), (12.6, 5.2)], side), [1.6, 1.8], depths=1.5, shell=0.15, fill=0.35)
            c.ellipsoid((side * 14.0, 4.4), (1.8, 2.4), 2.0, shell=0.1, fill=0.35)
            c.sweep(_mirror([(13.3, 5.5), (12.8, 10.5), (11.5, 30.0)], side), [2.6, 1.55, 1.4],
                    shell=[0.15, 0.45, 0.5], fill=0.08)
            c.ellipsoid((side * 11.4, 8.6), (0.8, 1.0), 0.8, shell=0.1, fill=0.35)
        sites.append(ImplantSite("neck", head, (side * 12.6, 5.2), 1.6))
        sites.append(ImplantSite("shaft", (side * 12.8, 11.0), (side * 12.0, 24.0), 1.5))
    return sites


# ---------------------------------------------------------------------------------------------- skull
def _skull(c: Canvas, rng: np.random.Generator) -> list[ImplantSite]:
    u = rng.uniform
    hw, hh = u(7.0, 8.0), u(9.2, 10.2)
    c.ellipsoid((0.0, -1.8), (hw + 0.7, hh + 0.8), 9.8, material="soft")
    c.ellipsoid((0.0, 4.5), (hw - 1.0, 6.0), 8.5, material="soft")
    c.sweep([(0.0, 7.0), (0.0, 20.0)], 5.6, depths=5.8, material="soft")
    for side in (-1.0, 1.0):
        c.ellipsoid((side * (hw + 0.9), 1.0), (0.7, 2.8), 0.5, material="soft")
    c.ellipsoid((0.0, 3.4), (1.1, 2.0), 2.5, material="air")  # nasal cavity
    for side in (-1.0, 1.0):
        c.ellipsoid((side * 2.9, 3.5), (1.4, 1.6), 1.6, material="air")  # maxillary sinus
    c.ellipsoid((0.0, -4.7), (u(1.0, 2.2), 0.9), 1.0, material="air")  # frontal sinus
    # vault: outer table, diploe (trabecular), inner table
    t_out, t_dip, t_in = u(0.1, 0.15), u(0.2, 0.45), u(0.08, 0.12)
    vc, vd = (0.0, -2.3), 9.0
    c.ellipsoid(vc, (hw, hh), vd, shell=t_out, fill=0.0)
    c.ellipsoid(vc, (hw - t_out, hh - t_out), vd - t_out, shell=t_dip, shell_fill=0.4)
    e = t_out + t_dip
    c.ellipsoid(vc, (hw - e, hh - e), vd - e, shell=t_in, fill=0.0)
    # skull base seen end-on: petrous ridges and sphenoid, orbital rims, zygomatic arches
    for side in (-1.0, 1.0):
        c.sweep(_mirror([(1.2, 0.9), (4.0, -0.1), (hw - 0.6, 0.7)], side), 0.65, depths=1.5, shell=0.2, fill=0.5)
        c.sweep(_ring((side * 3.3, -0.2), 1.9, 1.7), 0.35, depths=0.8, shell=0.12, fill=0.4)
        c.sweep(_mirror([(4.6, 1.9), (hw - 0.2, 2.7)], side), 0.5, depths=1.2, shell=0.12, fill=0.35)
    c.ellipsoid((0.0, 1.0), (3.0, 1.2), 2.0, shell=0.1, fill=0.3)  # sphenoid body
    c.sweep([(0.0, 1.3), (0.0, 5.2)], 0.12, depths=2.0)  # nasal septum
    with c.bone():  # maxilla / hard palate
        c.ellipsoid((0.0, 5.6), (3.6, 0.6), 2.5, shell=0.1, fill=0.4)
    with c.bone():  # mandible
        mand = [(-hw + 1.6, 2.5), (-hw + 1.4, 6.3), (-hw + 2.4, 8.8), (-2.4, 10.2), (0, 10.6), (2.4, 10.2),
                (hw - 2.4, 8.8), (hw - 1.4, 6.3), (hw - 1.6, 2.5)]
        c.sweep(mand, [0.9, 0.9, 1.0, 1.0, 1.1, 1.0, 1.0, 0.9, 0.9], depths=[0.6, 0.6, 1.5, 2.0, 1.2, 2.0, 1.5, 0.6,
                0.6], shell=0.25, fill=0.35)
    for v, sign in ((6.4, -1.0), (7.8, 1.0)):  # teeth
        for x in np.linspace(-3.7, 3.7, 14):
            if rng.random() < 0.07:
                continue
            size = 0.5 if abs(x) > 2.2 else 0.32
            c.ellipsoid((x, v + 0.05 * x * x * -sign), (size, 0.65), 0.4 + 0.3 * (abs(x) > 2.2))
    for v in np.arange(8.5, 20.0, 1.9):  # cervical spine
        with c.bone():
            c.ellipsoid((0.0, v), (1.5, 0.75), 1.5, exponent=2.8, shell=0.12, fill=0.35)
            for side in (-1.0, 1.0):
                c.ellipsoid((side * 1.9, v), (0.5, 0.7), 1.0, shell=0.1, fill=0.35)
    return [ImplantSite("teeth", (-3.5, 7.0), (3.5, 7.0), 0.5),
            ImplantSite("vault", (-hw * 0.6, -hh * 0.9), (hw * 0.6, -hh * 0.95), 0.5)]


#: Registry of body parts, in canonical order.
BODY_PARTS: dict[str, BodyPart] = {
    "hand": BodyPart("hand", _hand, (21.0, 27.0), (0.0, 0.5), 1.2, 30.0, (0.85, 1.1), (48.0, 60.0),
                     (500.0, 4000.0), (0.05, 0.12), 110.0, 0.4),
    "knee": BodyPart("knee", _knee, (30.0, 38.0), (0.0, 0.0), 1.5, 12.0, (0.85, 1.12), (60.0, 75.0),
                     (500.0, 4000.0), (0.2, 0.45), 110.0, 0.6),
    "foot": BodyPart("foot", _foot, (26.0, 32.0), (2.0, -3.0), 1.2, 15.0, (0.85, 1.1), (50.0, 65.0),
                     (500.0, 4000.0), (0.1, 0.3), 110.0, 0.5),
    "elbow": BodyPart("elbow", _elbow, (28.0, 34.0), (0.0, 0.0), 1.5, 20.0, (0.85, 1.12), (55.0, 68.0),
                      (500.0, 4000.0), (0.12, 0.3), 110.0, 0.5),
    "chest": BodyPart("chest", _chest, (34.0, 40.0), (0.0, -2.5), 1.0, 5.0, (0.88, 1.08), (100.0, 130.0),
                      (800.0, 5000.0), (0.25, 0.55), 180.0, 0.8, False),
    "pelvis": BodyPart("pelvis", _pelvis, (40.0, 46.0), (0.0, -2.0), 1.0, 6.0, (0.88, 1.08), (70.0, 85.0),
                       (300.0, 2500.0), (0.2, 0.45), 110.0, 0.8),
    "skull": BodyPart("skull", _skull, (28.0, 33.0), (0.0, 1.0), 1.0, 10.0, (0.88, 1.08), (65.0, 80.0),
                      (400.0, 3000.0), (0.25, 0.5), 110.0, 0.4),
}

#: Alternative names accepted by :func:`resolve_body_part`.
BODY_PART_ALIASES: dict[str, str] = {
    "wrist": "hand", "leg": "knee", "ankle": "foot", "arm": "elbow", "thorax": "chest", "hip": "pelvis",
    "head": "skull",
}


def resolve_body_part(name: str) -> BodyPart:
    """Look up a body part by canonical name or alias (case-insensitive).

    Args:
        name: e.g. ``"hand"``, ``"wrist"``, ``"knee"``, ``"chest"``.

    Returns:
        The :class:`BodyPart`.

    Raises:
        KeyError: if the name is unknown; the message lists the valid names and aliases.

    Examples::

        >>> resolve_body_part("Wrist").name
        'hand'
    """
    key = name.strip().lower()
    key = BODY_PART_ALIASES.get(key, key)
    if key not in BODY_PARTS:
        raise KeyError(f"unknown body part {name!r}; valid: {list(BODY_PARTS)} (aliases: {BODY_PART_ALIASES})")
    return BODY_PARTS[key]
