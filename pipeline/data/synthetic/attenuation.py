"""Energy-dependent X-ray attenuation of the materials used by the synthetic radiograph generator.

The mass attenuation coefficients are the tabulated values of the NIST X-Ray Mass Attenuation
Coefficients database (J. H. Hubbell and S. M. Seltzer, NIST Standard Reference Database 126,
NISTIR 5632, Tables 3 and 4), sampled at the diagnostic energies 15-150 keV. Between the tabulated
energies the coefficients are interpolated linearly in log-log space, the usual practice for
photo-electric dominated curves. Absorption edges inside the range (the caesium and iodine K edges of
the CsI scintillator) are kept as two points one eV apart.

Materials (density in g/cm^3):

- ``soft_tissue``: Tissue, Soft (ICRU-44), 1.06. Muscle, skin, fat and marrow are all approximated by it.
- ``cortical_bone``: Bone, Cortical (ICRU-44), 1.92. Trabecular bone is modelled as a volume fraction of it.
- ``aluminium``: Al, 2.699 (tube filtration).
- ``titanium``: Ti, 4.54 (implants).
- ``steel``: Fe, 7.874 (stainless steel and cobalt-chrome implants, approximated by iron).
- ``csi``: Caesium iodide, 4.51 (detector scintillator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Material", "MATERIALS", "linear_attenuation", "mass_attenuation"]


@dataclass(frozen=True)
class Material:
    """Tabulated mass attenuation coefficients of one material.

    Args:
        name: material key.
        density: density in g/cm^3.
        energies_kev: tabulated photon energies in keV, non-decreasing.
        mu_rho: mass attenuation coefficients mu/rho in cm^2/g at ``energies_kev``.
        source: bibliographic source of the table.
    """

    name: str
    density: float
    energies_kev: tuple[float, ...]
    mu_rho: tuple[float, ...]
    source: str


_E = (15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0)
_NIST = "NIST SRD 126 (Hubbell & Seltzer), Table 4"

MATERIALS: dict[str, Material] = {
    "soft_tissue": Material(
        "soft_tissue", 1.06, _E, (1.699, 0.8230, 0.3790, 0.2688, 0.2264, 0.2048, 0.1823, 0.1693, 0.1492), _NIST
    ),
    "cortical_bone": Material(
        "cortical_bone", 1.92, _E, (9.032, 4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480), _NIST
    ),
    "aluminium": Material(
        "aluminium",
        2.699,
        _E,
        (7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378),
        "NIST SRD 126, Table 3 (Z=13)",
    ),
    "titanium": Material(
        "titanium",
        4.54,
        _E,
        (35.87, 15.85, 4.972, 2.214, 1.213, 0.7661, 0.4052, 0.2721, 0.1649),
        "NIST SRD 126, Table 3 (Z=22)",
    ),
    "steel": Material(
        "steel",
        7.874,
        _E,
        (57.08, 25.68, 8.176, 3.629, 1.958, 1.205, 0.5952, 0.3717, 0.1964),
        "NIST SRD 126, Table 3 (Z=26, iron)",
    ),
    "csi": Material(
        "csi",
        4.51,
        (15.0, 20.0, 30.0, 33.1694, 33.1704, 34.5483, 35.9846, 35.9856, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0),
        (58.15, 26.86, 9.045, 6.923, 21.22, 26.87, 17.19, 30.27, 22.97, 12.87, 7.921, 3.677, 2.035, 0.7290),
        _NIST,
    ),
}


def mass_attenuation(material: str, energies_kev: np.ndarray | float) -> np.ndarray:
    """Mass attenuation coefficient mu/rho (cm^2/g), log-log interpolated from the NIST table.

    Args:
        material: a key of :data:`MATERIALS`.
        energies_kev: photon energies in keV (15-150 keV is tabulated; outside it the end values are
            extrapolated flat in log-log space, which is never used by the generator).

    Returns:
        Array of mu/rho with the shape of ``energies_kev``.

    Raises:
        KeyError: if ``material`` is unknown; the message lists the valid names.

    Examples::

        >>> float(mass_attenuation("cortical_bone", 60.0))  # doctest: +ELLIPSIS
        0.3148...
    """
    if material not in MATERIALS:
        raise KeyError(f"unknown material {material!r}; valid: {sorted(MATERIALS)}")
    mat = MATERIALS[material]
    log_e = np.log(np.asarray(energies_kev, dtype=np.float64))
    return np.exp(np.interp(log_e, np.log(mat.energies_kev), np.log(mat.mu_rho)))


def linear_attenuation(material: str, energies_kev: np.ndarray | float) -> np.ndarray:
    """Linear attenuation coefficient mu (1/cm) = mu/rho * rho.

    Args:
        material: a key of :data:`MATERIALS`.
        energies_kev: photon energies in keV.

    Returns:
        Array of mu in 1/cm with the shape of ``energies_kev``.

    Examples::

        >>> mu = linear_attenuation("soft_tissue", [30.0, 60.0])
        >>> bool(mu[0] > mu[1])
        True
    """
    return mass_attenuation(material, energies_kev) * MATERIALS[material].density
