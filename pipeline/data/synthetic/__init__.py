"""Physics-based synthetic radiographs with exact open-beam / soft-tissue / bone labels (XNet's task).

Public API::

    from pipeline.data.synthetic import generate_sample, write_dataset, SyntheticRadiographGenerator

    image, label, info = generate_sample(seed=0, body_part="hand", size=256)
    write_dataset("out/synthetic", n=1000, seed=0, size=256)

See ``docs/synthetic.md`` for the physical model.
"""

from __future__ import annotations

from .attenuation import MATERIALS, linear_attenuation, mass_attenuation
from .canvas import LABEL_EPS_CM, Canvas, PhantomMaps
from .generator import CLASS_NAMES, SyntheticRadiographGenerator, generate_sample, sample_seed
from .implants import IMPLANT_KINDS, ImplantSite, add_implant
from .phantoms import BODY_PART_ALIASES, BODY_PARTS, BodyPart, resolve_body_part
from .physics import Acquisition, Projection, heel_field, polychromatic_transmission, simulate_projection, xray_spectrum
from .writer import MANIFEST_FIELDS, save_png_atomic, write_dataset

__all__ = [
    "Acquisition",
    "BODY_PARTS",
    "BODY_PART_ALIASES",
    "BodyPart",
    "CLASS_NAMES",
    "Canvas",
    "IMPLANT_KINDS",
    "ImplantSite",
    "LABEL_EPS_CM",
    "MANIFEST_FIELDS",
    "MATERIALS",
    "PhantomMaps",
    "Projection",
    "SyntheticRadiographGenerator",
    "add_implant",
    "generate_sample",
    "heel_field",
    "linear_attenuation",
    "mass_attenuation",
    "polychromatic_transmission",
    "resolve_body_part",
    "sample_seed",
    "save_png_atomic",
    "simulate_projection",
    "write_dataset",
    "xray_spectrum",
]
