"""Tests of the physics-based synthetic radiograph generator (pipeline.data.synthetic)."""

from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.synthetic import (
    BODY_PARTS,
    LABEL_EPS_CM,
    Canvas,
    SyntheticRadiographGenerator,
    generate_sample,
    polychromatic_transmission,
    resolve_body_part,
    sample_seed,
    write_dataset,
    xray_spectrum,
)

SIZE = 96  # small images keep the module well under the time budget


@pytest.fixture(scope="module")
def samples() -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """One sample with noise-free physics maps per body part, metal forced on."""
    return {
        part: generate_sample(11, part, size=SIZE, metal_probability=1.0, return_maps=True) for part in BODY_PARTS
    }


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_arrays() -> None:
    a = generate_sample(7, size=SIZE)
    b = generate_sample(7, size=SIZE)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2]["detector_signal"], b[2]["detector_signal"])
    assert a[2]["body_part"] == b[2]["body_part"]


def test_different_seed_gives_different_arrays() -> None:
    a = generate_sample(7, "knee", size=SIZE)
    b = generate_sample(8, "knee", size=SIZE)
    assert not np.array_equal(a[0], b[0])
    assert not np.array_equal(a[1], b[1])


def test_sample_seed_is_derived_from_dataset_seed_and_index() -> None:
    assert sample_seed(0, 5) == sample_seed(0, 5)
    assert len({sample_seed(0, i) for i in range(100)}) == 100
    assert sample_seed(0, 5) != sample_seed(1, 5)


# ------------------------------------------------------------------------------------------ body parts
@pytest.mark.parametrize("part", list(BODY_PARTS))
def test_every_body_part_has_all_classes_and_valid_ranges(part, samples) -> None:
    image, label, info = samples[part]
    assert info["body_part"] == part
    assert image.shape == label.shape == (SIZE, SIZE)
    assert image.dtype == np.uint16 and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {0, 1, 2}  # open beam + soft tissue + bone everywhere
    assert 0 <= int(image.min()) and int(image.max()) <= 2**info["bits"] - 1
    assert info["photometric_interpretation"] == "MONOCHROME2"
    fractions = info["class_fractions"]
    assert abs(sum(fractions.values()) - 1.0) < 1e-6
    assert min(fractions.values()) > 0


def test_random_selection_covers_every_body_part() -> None:
    gen = SyntheticRadiographGenerator(size=48)
    seen = {gen.generate(sample_seed(3, i))[2]["body_part"] for i in range(40)}
    assert seen == set(BODY_PARTS)


def test_body_part_aliases_and_unknown_names() -> None:
    assert resolve_body_part("Wrist").name == "hand"
    assert resolve_body_part("ankle").name == "foot"
    assert generate_sample(1, "leg", size=48)[2]["body_part"] == "knee"
    with pytest.raises(KeyError, match="valid"):
        generate_sample(1, "tail", size=48)


def test_invalid_generator_arguments() -> None:
    with pytest.raises(ValueError):
        SyntheticRadiographGenerator(bits=11)
    with pytest.raises(ValueError):
        SyntheticRadiographGenerator(metal_probability=1.5)
    with pytest.raises(ValueError):
        SyntheticRadiographGenerator(size=16)


# ------------------------------------------------------------------------------------------ physics
def test_physics_attenuation_order_with_controlled_thickness() -> None:
    energies, weights = xray_spectrum(70.0, filtration_mm_al=2.5, n_bins=8)
    assert abs(weights.sum() - 1.0) < 1e-9
    soft = np.array([0.0, 5.0, 5.0, 5.0, 5.0], np.float32)
    bone = np.array([0.0, 0.0, 1.0, 0.0, 0.0], np.float32)
    metal = np.array([0.0, 0.0, 0.0, 1.0, 0.0], np.float32)
    t_ti = polychromatic_transmission(soft, bone, metal, energies, weights, metal="titanium")
    t_fe = polychromatic_transmission(soft, bone, metal, energies, weights, metal="steel")
    assert t_ti[0] == 1.0  # open beam: nothing in the beam
    assert t_ti[0] > t_ti[1] > t_ti[2] > t_ti[3]  # open > soft > soft+bone > soft+titanium
    assert t_fe[3] < t_ti[3]  # steel attenuates more than titanium
    assert t_ti[4] == t_ti[1]


def test_physics_beam_hardening_and_tiny_paths() -> None:
    energies, weights = xray_spectrum(80.0)
    thick = np.array([2.0, 10.0, 20.0], np.float32)
    t = polychromatic_transmission(thick, 0.0, 0.0, energies, weights)
    mu_eff = -np.log(t) / thick
    assert mu_eff[0] > mu_eff[1] > mu_eff[2]  # polychromatic: the beam hardens with depth
    tiny = polychromatic_transmission(np.float32(LABEL_EPS_CM * 1.5), 0.0, 0.0, energies, weights)
    assert tiny < 1.0


def test_labels_match_phantom_geometry(samples) -> None:
    for part, (_, label, info) in samples.items():
        paths = info["paths_cm"]
        total = paths["soft"] + paths["bone"] + paths["metal"]
        assert np.array_equal(total > 0, label > 0), part
        assert np.all(label[paths["metal"] > 0] == 2), part  # metal is labelled bone
        assert np.all(info["transmission"][label == 0] == 1.0), part
        assert np.all(info["transmission"][label > 0] < 1.0), part


def test_canvas_ignores_paths_below_eps() -> None:
    canvas = Canvas(32, 10.0)
    canvas.ellipsoid((0.0, 0.0), (3.0, 3.0), LABEL_EPS_CM / 4, material="soft")
    maps = canvas.finish()
    assert not maps.label.any() and not maps.soft.any()


def test_open_beam_is_brightest_detector_signal(samples) -> None:
    for part, (_, label, info) in samples.items():
        signal = info["detector_signal"]
        assert signal.dtype == np.float32
        top = signal >= np.quantile(signal, 0.99)
        assert np.all(label[top] == 0), part
        assert np.median(signal[label == 0]) > np.quantile(signal[label == 1], 0.95), part
        assert signal[label == 0].mean() > signal[label > 0].mean(), part


def test_bone_attenuates_more_than_soft_tissue_of_equal_thickness(samples) -> None:
    for part, (_, label, info) in samples.items():
        soft, trans = info["paths_cm"]["soft"], info["transmission"]
        bins = np.quantile(soft[label > 0], [0.2, 0.4, 0.6, 0.8])
        compared = 0
        for lo, hi in zip(bins[:-1], bins[1:]):
            band = (soft >= lo) & (soft < hi)
            s, b = band & (label == 1), band & (label == 2)
            if s.sum() >= 10 and b.sum() >= 10:
                assert np.median(trans[b]) < np.median(trans[s]), part
                compared += 1
        assert compared >= 1, part


def test_metal_attenuates_most(samples) -> None:
    checked = 0
    for part, (_, label, info) in samples.items():
        metal = info["paths_cm"]["metal"] > 0
        if metal.sum() < 5:
            continue
        trans = info["transmission"]
        assert info["has_metal"]
        assert np.median(trans[metal]) < np.median(trans[(label == 2) & ~metal]), part
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("bits", [12, 14, 16])
def test_stored_values_within_bit_range(bits) -> None:
    image, _, info = generate_sample(4, "hand", size=64, bits=bits)
    assert info["bits"] == bits
    assert image.dtype == np.uint16
    assert int(image.max()) <= 2**bits - 1
    assert int(image.max()) > 2 ** (bits - 1)  # the range is used, not just declared


def test_open_beam_dark_bone_bright_in_stored_image(samples) -> None:
    for part, (image, label, _) in samples.items():
        assert np.median(image[label == 0]) < np.median(image[label == 2]), part


# ------------------------------------------------------------------------------------------ writer
def test_write_dataset_layout_manifest_and_readback(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    manifest = write_dataset(out, n=5, seed=3, size=64, body_parts=["hand", "chest"], progress=False)
    assert manifest == out / "manifest.csv"
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    assert {"id", "body_part", "seed", "has_metal", "frac_open_beam", "frac_soft_tissue", "frac_bone"} <= set(rows[0])
    for i, row in enumerate(rows):
        assert row["body_part"] in {"hand", "chest"}
        assert int(row["seed"]) == sample_seed(3, i)
        with Image.open(out / row["image"]) as im:
            assert im.mode == "I;16"
            image = np.array(im)
        with Image.open(out / row["mask"]) as m:
            mask = np.array(m)
        assert image.dtype == np.uint16 and image.max() <= 4095
        assert set(np.unique(mask).tolist()) <= {0, 1, 2}
        fractions = [float(row[k]) for k in ("frac_open_beam", "frac_soft_tissue", "frac_bone")]
        assert abs(sum(fractions) - 1.0) < 1e-3
        # every sample can be regenerated alone from the seed in the manifest
        again, again_mask, _ = SyntheticRadiographGenerator(size=64, body_parts=["hand", "chest"]).generate(
            int(row["seed"])
        )
        np.testing.assert_array_equal(image, again)
        np.testing.assert_array_equal(mask, again_mask)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"open_beam": 0, "soft_tissue": 1, "bone": 2}
    assert not list(out.rglob("*.tmp*"))  # atomic writes leave no temporary files


def test_command_line_script(tmp_path: Path, repo_root: Path) -> None:
    # run the script's main() in-process: a subprocess would spend seconds re-importing torch
    script = runpy.run_path(str(repo_root / "scripts" / "make_synthetic_dataset.py"), run_name="synthetic_cli")
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--n", "2", "--size", "48", "--seed", "1", "--body-parts", "wrist,knee", "--no-progress"]
    assert script["main"](argv) == 0
    assert len(list((out / "images").glob("*.png"))) == 2
    assert len(list((out / "masks").glob("*.png"))) == 2
    with open(out / "manifest.csv", newline="") as fh:
        assert {row["body_part"] for row in csv.DictReader(fh)} <= {"hand", "knee"}
    with pytest.raises(SystemExit):
        script["build_parser"]().parse_args(["--help"])
