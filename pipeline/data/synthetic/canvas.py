"""Projected path-length canvas: renders 3D primitives as beam-direction thickness maps.

A phantom is a set of 3D solids seen in a parallel beam along the z axis. For every detector pixel
the canvas stores the path length (cm) that the ray through that pixel travels inside each material:

- ``envelope``: soft-tissue outline (skin surface); overlapping soft-tissue solids are combined with a
  maximum, because they describe one body rather than stacked layers.
- ``outer``: path through the outer surface of bones (used for the label: the ray hits bone).
- ``cortical``: path through compact (cortical) bone.
- ``cancellous``: cortical-bone-equivalent path of trabecular bone / marrow, i.e. the geometric path
  times the bone volume fraction ``fill``.
- ``metal``: path through implants.
- ``air``: path through air cavities inside the body (lungs, sinuses, bowel gas).

Two primitive shapes cover the anatomy:

- :meth:`Canvas.sweep` a tube along a polyline with a varying elliptical cross-section (long bones,
  phalanges, ribs, clavicles, limbs, wires, screws with threads, plates with a box profile). A tube of
  in-plane semi-axis ``r`` and beam semi-axis ``d`` gives the chord ``2 d sqrt(1 - (rho/r)^2)`` at
  distance ``rho`` from its axis; a cortical shell of thickness ``c`` is the difference between that
  chord and the chord of the inner tube ``(r - c, d - c)``, which is why cortices look like two dense
  "tram lines" along a shaft, as in real radiographs.
- :meth:`Canvas.ellipsoid` a (super-)ellipsoid with in-plane semi-axes ``a, b`` and beam semi-axis
  ``c``; chord ``2 c sqrt(1 - q)`` with ``q = |x/a|^n + |y/b|^n``; optional cortical shell and
  half-plane clipping (carpals, tarsals, condyles, patella, femoral heads, vertebrae, skull vault).

Bones made of several primitives are rendered inside :meth:`Canvas.bone` so that their parts merge
into one bone (outer and medullary chords combined with a maximum, cortex = outer - medullary), while
distinct bones overlapping in projection add up, as the attenuation of superimposed bones does.

Primitives are evaluated only inside their pixel bounding box, which keeps a 256^2 phantom with
dozens of bones at a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

__all__ = ["Canvas", "PhantomMaps", "LABEL_EPS_CM"]

#: Path length (cm) above which a ray counts as passing through a material (10 micrometres).
LABEL_EPS_CM = 1e-3

_MATERIALS = ("soft", "bone", "metal", "air")
_FAR = 1e9  # normalised squared distance of pixels no segment reaches (finite: avoids inf * 0)


@dataclass
class PhantomMaps:
    """Final per-pixel path lengths (cm) and the exact class map of one phantom.

    Attributes:
        soft: soft-tissue path (envelope minus the volume displaced by bone, metal and air).
        bone: cortical-bone-equivalent path (cortical path + volume fraction x trabecular path).
        metal: implant path.
        label: ``uint8`` classes: 0 open beam, 1 soft tissue, 2 bone or metal.
    """

    soft: np.ndarray
    bone: np.ndarray
    metal: np.ndarray
    label: np.ndarray


class _Group:
    """Full-size buffers of one multi-part bone: outer and inner (medullary) chords and the cancellous
    path are each combined with a maximum, and the cortex of the merged bone is ``outer - inner``, so
    the shell of one part does not show inside another part of the same bone."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.outer = np.zeros(shape, np.float32)
        self.inner = np.zeros(shape, np.float32)
        self.cancellous = np.zeros(shape, np.float32)
        self.rows = [shape[0], 0]
        self.cols = [shape[1], 0]

    def extend(self, sl: tuple[slice, slice]) -> None:
        self.rows = [min(self.rows[0], sl[0].start), max(self.rows[1], sl[0].stop)]
        self.cols = [min(self.cols[0], sl[1].start), max(self.cols[1], sl[1].stop)]


class Canvas:
    """Pixel grid in a body-local coordinate frame that accumulates projected path lengths.

    The image has ``size x size`` pixels covering ``fov_cm`` (square field of view). Pixel centres
    are mapped to body-local coordinates ``(u, v)`` in cm (``u`` to the image right, ``v`` down) by a
    similarity transform (``center``, ``angle``, ``scale``, optional mirror) after an optional smooth
    displacement ``warp`` in world cm, so that every primitive is drawn in anatomical units and the
    pose and deformation are applied once for all of them.

    Args:
        size: image edge in pixels.
        fov_cm: field of view edge in cm.
        center: world position (cm, from the image centre) of the body-local origin.
        angle: rotation of the body in the image (radians, counter-clockwise on screen).
        scale: anatomical scale factor (1 = adult reference size).
        mirror: mirror the body left-right (left vs right limb).
        warp: optional ``(dx, dy)`` arrays of shape ``(size, size)``: world displacement (cm) added
            to each pixel position before the body transform (smooth soft deformation).

    Examples::

        >>> c = Canvas(64, 20.0)
        >>> c.ellipsoid((0.0, 0.0), (5.0, 5.0), 3.0, material="soft")
        >>> with c.bone():
        ...     c.sweep([(0.0, -4.0), (0.0, 4.0)], [1.0, 1.0], shell=0.3, fill=0.1)
        >>> maps = c.finish()
        >>> sorted(set(maps.label.ravel().tolist()))
        [0, 1, 2]
    """

    def __init__(
        self,
        size: int,
        fov_cm: float,
        *,
        center: tuple[float, float] = (0.0, 0.0),
        angle: float = 0.0,
        scale: float = 1.0,
        mirror: bool = False,
        warp: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {size}")
        if fov_cm <= 0 or scale <= 0:
            raise ValueError(f"fov_cm and scale must be positive, got fov_cm={fov_cm}, scale={scale}")
        self.size = int(size)
        self.pixel_cm = float(fov_cm) / self.size
        self.center = (float(center[0]), float(center[1]))
        self.angle = float(angle)
        self.scale = float(scale)
        self.mirror = bool(mirror)
        coords = (np.arange(self.size, dtype=np.float32) + 0.5 - self.size / 2) * self.pixel_cm
        x, y = np.meshgrid(coords, coords)
        self._warp_px = 0.0
        if warp is not None:
            x = x + warp[0]
            y = y + warp[1]
            self._warp_px = float(max(np.abs(warp[0]).max(), np.abs(warp[1]).max())) / self.pixel_cm
        x -= self.center[0]
        y -= self.center[1]
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        self.u = ((ca * x + sa * y) / self.scale).astype(np.float32)
        self.v = ((-sa * x + ca * y) / self.scale).astype(np.float32)
        if self.mirror:
            self.u = -self.u
        # local (u, v) -> pixel (col, row) affine coefficients, used for bounding boxes
        m = -1.0 if self.mirror else 1.0
        k = self.scale / self.pixel_cm
        half = self.size / 2 - 0.5
        self._affine = (self.center[0] / self.pixel_cm + half, k * ca * m, -k * sa,
                        self.center[1] / self.pixel_cm + half, k * sa * m, k * ca)
        shape = (self.size, self.size)
        self.envelope = np.zeros(shape, np.float32)
        self.outer = np.zeros(shape, np.float32)
        self.cortical = np.zeros(shape, np.float32)
        self.cancellous = np.zeros(shape, np.float32)
        self.metal = np.zeros(shape, np.float32)
        self.air = np.zeros(shape, np.float32)
        self._group: _Group | None = None

    # ------------------------------------------------------------------ geometry helpers
    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """Map body-local points ``(k, 2)`` (cm) to ``(row, col)`` pixel coordinates (ignoring the warp).

        Args:
            points: array ``(k, 2)`` of ``(u, v)`` body-local coordinates in cm.

        Returns:
            Array ``(k, 2)`` of ``(row, col)`` floating-point pixel coordinates.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        u = -pts[:, 0] if self.mirror else pts[:, 0]
        v = pts[:, 1]
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        x = self.center[0] + self.scale * (ca * u - sa * v)
        y = self.center[1] + self.scale * (sa * u + ca * v)
        col = x / self.pixel_cm + self.size / 2 - 0.5
        row = y / self.pixel_cm + self.size / 2 - 0.5
        return np.stack([row, col], axis=1)

    def _bbox(self, points: np.ndarray, radius: float) -> tuple[slice, slice] | None:
        """Pixel bounding box of local ``points`` grown by ``radius`` (plus the warp), or ``None``."""
        c0, cu, cv, r0, ru, rv = self._affine
        rows, cols = [], []
        for u, v in np.asarray(points, dtype=np.float64).reshape(-1, 2).tolist():
            rows.append(r0 + ru * u + rv * v)
            cols.append(c0 + cu * u + cv * v)
        pad = radius * self.scale / self.pixel_cm + self._warp_px + 1.5
        r_lo = max(int(math.floor(min(rows) - pad)), 0)
        r_hi = min(int(math.ceil(max(rows) + pad)) + 1, self.size)
        c_lo = max(int(math.floor(min(cols) - pad)), 0)
        c_hi = min(int(math.ceil(max(cols) + pad)) + 1, self.size)
        if r_lo >= r_hi or c_lo >= c_hi:
            return None
        return slice(r_lo, r_hi), slice(c_lo, c_hi)

    # ------------------------------------------------------------------ accumulation
    @contextmanager
    def bone(self) -> Iterator[None]:
        """Context in which bone primitives are merged (maximum) into one bone before being added.

        Yields:
            Nothing; draw the parts of one bone inside the ``with`` block.

        Raises:
            RuntimeError: if bone groups are nested.
        """
        if self._group is not None:
            raise RuntimeError("Canvas.bone() groups cannot be nested")
        self._group = _Group(self.envelope.shape)
        try:
            yield
        finally:
            group, self._group = self._group, None
            if group.rows[0] < group.rows[1] and group.cols[0] < group.cols[1]:
                sl = (slice(*group.rows), slice(*group.cols))
                self.outer[sl] += group.outer[sl]
                self.cortical[sl] += np.clip(group.outer[sl] - group.inner[sl], 0.0, None)
                self.cancellous[sl] += group.cancellous[sl]

    def _deposit(
        self,
        sl: tuple[slice, slice],
        outer: np.ndarray,
        inner: np.ndarray | None,
        material: str,
        fill: float | np.ndarray,
    ) -> None:
        if material == "soft":
            np.maximum(self.envelope[sl], outer, out=self.envelope[sl])
        elif material == "air":
            self.air[sl] += outer
        elif material == "tissue":  # soft tissue displacing air (heart in front of the lungs)
            self.air[sl] -= outer
        elif material == "metal":
            self.metal[sl] += outer
        else:  # bone
            cortical = outer if inner is None else outer - inner
            cancellous = None if inner is None else fill * inner
            if self._group is None:
                self.outer[sl] += outer
                self.cortical[sl] += cortical
                if cancellous is not None:
                    self.cancellous[sl] += cancellous
            else:
                g = self._group
                g.extend(sl)
                np.maximum(g.outer[sl], outer, out=g.outer[sl])
                if inner is not None:
                    np.maximum(g.inner[sl], inner, out=g.inner[sl])
                    np.maximum(g.cancellous[sl], cancellous, out=g.cancellous[sl])

    def _deposit_layer(self, sl: tuple[slice, slice], outer: np.ndarray, cancellous: np.ndarray) -> None:
        """Deposit a trabecular layer: label extent ``outer``, bone-equivalent path ``cancellous``."""
        if self._group is None:
            self.outer[sl] += outer
            self.cancellous[sl] += cancellous
        else:
            g = self._group
            g.extend(sl)
            np.maximum(g.outer[sl], outer, out=g.outer[sl])
            np.maximum(g.inner[sl], outer, out=g.inner[sl])
            np.maximum(g.cancellous[sl], cancellous, out=g.cancellous[sl])

    @staticmethod
    def _check_material(material: str) -> None:
        if material not in _MATERIALS + ("tissue",):
            raise ValueError(f"material must be one of {_MATERIALS + ('tissue',)}, got {material!r}")

    # ------------------------------------------------------------------ primitives
    def sweep(
        self,
        points: Sequence[Sequence[float]],
        radii: Sequence[float] | float,
        *,
        depths: Sequence[float] | float | None = None,
        material: str = "bone",
        shell: Sequence[float] | float = 0.0,
        fill: Sequence[float] | float = 0.0,
        flat_ends: bool = False,
        box: bool = False,
        thread_pitch: float | None = None,
        thread_depth: float = 0.0,
    ) -> None:
        """Draw a tube along a polyline with a per-vertex elliptical cross-section.

        Args:
            points: polyline vertices ``(u, v)`` in cm, at least two.
            radii: in-plane semi-axis (cm) per vertex, or one value for all.
            depths: beam-direction semi-axis (cm) per vertex or one value; default equal to ``radii``
                (circular cross-section).
            material: ``"soft"``, ``"bone"``, ``"metal"``, ``"air"`` or ``"tissue"`` (removes air).
            shell: cortical shell thickness (cm) for bone, per vertex or one value (a thick diaphyseal
                cortex thinning towards the metaphysis); 0 makes a solid cortical-bone tube.
            fill: bone volume fraction of the interior (trabecular bone ~0.2-0.35, diaphyseal marrow
                ~0.05-0.1), per vertex or one value.
            flat_ends: cut the tube flat at the first and last vertex instead of rounding the ends.
            box: rectangular cross-section (constant path ``2 * depth`` inside the tube), for plates.
            thread_pitch: if set, the radius is modulated with a saw-tooth of this pitch (cm) along
                the axis (screw threads).
            thread_depth: depth (cm) of that modulation.

        Raises:
            ValueError: on fewer than two points, mismatched profile lengths or an unknown material.
        """
        self._check_material(material)
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        n = len(pts)
        if n < 2:
            raise ValueError("sweep needs at least two points")
        rad = np.broadcast_to(np.asarray(radii, dtype=np.float32), (n,)).copy()
        dep = rad.copy() if depths is None else np.broadcast_to(np.asarray(depths, np.float32), (n,)).copy()
        shl = np.broadcast_to(np.asarray(shell, dtype=np.float32), (n,)).copy()
        has_shell = material == "bone" and bool(np.any(shl > 0))
        fil = np.broadcast_to(np.asarray(fill, dtype=np.float32), (n,)).copy()
        vary_fill = has_shell and bool(np.ptp(fil) > 0)
        sl = self._bbox(pts, float(rad.max()))
        if sl is None:
            return
        shape = (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        best_q = np.full(shape, _FAR, np.float32)
        best_r = np.zeros(shape, np.float32)
        best_d = np.zeros(shape, np.float32)
        best_c = np.zeros(shape, np.float32) if has_shell else None
        best_f = np.zeros(shape, np.float32) if vary_fill else None
        arc = 0.0
        for k in range(n - 1):
            ax, ay = float(pts[k, 0]), float(pts[k, 1])
            bx, by = float(pts[k + 1, 0]), float(pts[k + 1, 1])
            abx, aby = bx - ax, by - ay
            seg2 = abx * abx + aby * aby
            seg_len = math.sqrt(seg2)
            sub = self._bbox(pts[k : k + 2], float(max(rad[k], rad[k + 1])))
            if seg2 <= 1e-12 or sub is None:
                arc += seg_len
                continue
            # each segment is evaluated only in its own bounding box (a view into the sweep's box)
            rel = (slice(sub[0].start - sl[0].start, sub[0].stop - sl[0].start),
                   slice(sub[1].start - sl[1].start, sub[1].stop - sl[1].start))
            du, dv = self.u[sub] - ax, self.v[sub] - ay
            t = (du * abx + dv * aby) / seg2
            outside = None
            if flat_ends and k == 0:
                outside = t < 0
            if flat_ends and k == n - 2:
                outside = (t > 1) if outside is None else (outside | (t > 1))
            np.clip(t, 0.0, 1.0, out=t)
            ex, ey = du - t * abx, dv - t * aby
            r = rad[k] + t * (rad[k + 1] - rad[k])
            if thread_pitch:
                r -= thread_depth * (((arc + t * seg_len) / thread_pitch) % 1.0)
            q = (ex * ex + ey * ey) / np.maximum(r * r, 1e-8)
            if outside is not None:
                q[outside] = _FAR
            view_q = best_q[rel]
            better = q < view_q
            if not better.any():
                arc += seg_len
                continue
            view_q[better] = q[better]
            best_r[rel][better] = r[better]
            best_d[rel][better] = (dep[k] + t * (dep[k + 1] - dep[k]))[better]
            if best_c is not None:
                best_c[rel][better] = (shl[k] + t * (shl[k + 1] - shl[k]))[better]
            if best_f is not None:
                best_f[rel][better] = (fil[k] + t * (fil[k + 1] - fil[k]))[better]
            arc += seg_len
        inside = best_q < 1.0
        if not inside.any():
            return
        if box:
            outer = np.where(inside, 2.0 * best_d, 0.0).astype(np.float32)
            self._deposit(sl, outer, None, material, 0.0)
            return
        outer = 2.0 * best_d * np.sqrt(np.clip(1.0 - best_q, 0.0, None))
        inner = None
        if best_c is not None:
            ri = np.maximum(best_r - best_c, 1e-4)
            di = np.maximum(best_d - best_c, 0.0)
            qi = best_q * (best_r * best_r) / (ri * ri)
            inner = 2.0 * di * np.sqrt(np.clip(1.0 - qi, 0.0, None))
        self._deposit(sl, outer, inner, material, float(fil[0]) if best_f is None else best_f)

    def ellipsoid(
        self,
        center: Sequence[float],
        axes: Sequence[float],
        depth: float,
        *,
        angle: float = 0.0,
        material: str = "bone",
        shell: float = 0.0,
        fill: float = 0.0,
        shell_fill: float | None = None,
        exponent: float = 2.0,
        depth_exponent: float = 2.0,
        clip: Sequence[float] | None = None,
    ) -> None:
        """Draw a (super-)ellipsoid with in-plane semi-axes ``axes`` and beam semi-axis ``depth``.

        Args:
            center: ``(u, v)`` centre in cm.
            axes: in-plane semi-axes ``(a, b)`` in cm, before rotation.
            depth: beam-direction semi-axis in cm.
            angle: in-plane rotation of the axes (radians).
            material: ``"soft"``, ``"bone"``, ``"metal"``, ``"air"`` or ``"tissue"``.
            shell: cortical shell thickness (cm) for bone; 0 makes a solid cortical-bone body.
            fill: bone volume fraction of the interior.
            shell_fill: if set, the shell is trabecular bone with this volume fraction instead of compact
                bone (e.g. the diploe between the skull tables); it is then textured like cancellous bone.
            exponent: super-ellipse exponent of the in-plane outline (2 = ellipse, >2 boxier).
            depth_exponent: exponent of the beam-direction profile, chord ``2 c (1 - q)^(1/m)``
                (2 = ellipsoid; larger values give flatter, block-like bones such as carpals).
            clip: optional ``(nx, ny, offset)``: keep only ``nx*(u-cu) + ny*(v-cv) <= offset``.

        Raises:
            ValueError: on non-positive axes or an unknown material.
        """
        self._check_material(material)
        a, b = float(axes[0]), float(axes[1])
        if min(a, b, depth) <= 0:
            raise ValueError(f"ellipsoid axes and depth must be positive, got {axes}, {depth}")
        cu, cv = float(center[0]), float(center[1])
        sl = self._bbox(np.array([[cu, cv]]), max(a, b) * (1.3 if exponent > 2 else 1.0))
        if sl is None:
            return
        du, dv = self.u[sl] - cu, self.v[sl] - cv
        ca, sa = math.cos(angle), math.sin(angle)
        x = ca * du + sa * dv
        y = -sa * du + ca * dv

        def _q(aa: float, bb: float) -> np.ndarray:
            if exponent == 2.0:
                return (x / aa) ** 2 + (y / bb) ** 2
            return np.abs(x / aa) ** exponent + np.abs(y / bb) ** exponent

        def _chord(qq: np.ndarray, half: float) -> np.ndarray:
            inside = np.clip(1.0 - qq, 0.0, None)
            return 2.0 * half * (np.sqrt(inside) if depth_exponent == 2.0 else inside ** (1.0 / depth_exponent))

        outer = _chord(_q(a, b), depth)
        inner = None
        if shell > 0 and material == "bone" and min(a, b, depth) > shell:
            inner = _chord(_q(a - shell, b - shell), depth - shell)
        if clip is not None:
            keep = (clip[0] * du + clip[1] * dv) <= clip[2]
            outer = np.where(keep, outer, 0.0)
            if inner is not None:
                inner = np.where(keep, inner, 0.0)
        if shell_fill is not None and inner is not None and material == "bone":
            outer_f = outer.astype(np.float32)
            layer = (outer - inner).astype(np.float32)
            self._deposit_layer(sl, outer_f, shell_fill * layer)
            return
        self._deposit(sl, outer.astype(np.float32), None if inner is None else inner.astype(np.float32), material, fill)

    # ------------------------------------------------------------------ output
    def finish(self, texture: np.ndarray | None = None, eps: float = LABEL_EPS_CM) -> PhantomMaps:
        """Resolve overlaps and return the material path lengths and the exact label map.

        Bone and metal displace soft tissue; air cavities displace at most 90 % of the soft tissue so
        that a ray through the lungs still crosses the chest wall. The skin envelope is raised where
        the bone and metal volume would exceed it. A pixel is soft tissue when
        the envelope path exceeds ``eps`` and bone when the bone or metal path exceeds ``eps``; all
        paths of open-beam pixels are set to exactly zero so that the labels and the physics agree.

        Args:
            texture: optional multiplicative trabecular texture (mean ~1, >= 0) applied to the
                cancellous bone path.
            eps: path length (cm) below which a material counts as absent.

        Returns:
            :class:`PhantomMaps` with ``float32`` paths (cm) and the ``uint8`` label.
        """
        cancellous = self.cancellous if texture is None else self.cancellous * texture
        bone = self.cortical + cancellous
        hard = self.outer + self.metal
        envelope = np.maximum(self.envelope, self.cortical + self.cancellous + self.metal)
        air = np.clip(self.air, 0.0, None)
        air = np.minimum(air, 0.9 * np.clip(envelope - bone - self.metal, 0.0, None))
        soft = np.clip(envelope - bone - self.metal - air, 0.0, None)
        label = np.zeros(envelope.shape, np.uint8)
        label[envelope > eps] = 1
        label[hard > eps] = 2
        soft = np.where(label > 0, soft, 0.0).astype(np.float32)
        bone = np.where(label == 2, bone, 0.0).astype(np.float32)
        metal = np.where(label == 2, self.metal, 0.0).astype(np.float32)
        return PhantomMaps(soft=soft, bone=bone, metal=metal, label=label)
