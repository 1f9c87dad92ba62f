"""The node against a real PACS (Orthanc 1.10 + DICOMweb plugin) in a private network namespace.

One scenario (``orthanc_scenario.py``, re-executed under ``unshare -n`` as root) sends real radiographs (the embedded
sample in several encodings and polarities, a lateral and a broken file) to ``xray-seg listen`` processes forwarding
to Orthanc, kills the node with SIGKILL mid-way and restarts it, takes Orthanc down and up again, and uses STOW-RS;
the tests below judge what Orthanc holds against what ``xray-seg predict`` writes for the same files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.dicom import make_radiograph_dicom, read_segmentation_mask

from node_fixtures import PATIENT_NAME, make_inputs

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("orthanc_scenario.py")
REPO = Path(__file__).resolve().parents[2]
SEG_CLASS, SC_CLASS = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.7"


def _namespace_problem() -> str | None:
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; .ci/run does it)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare / ip (util-linux, iproute2) are missing"
    if os.geteuid() != 0:
        return "not root: a private network namespace (unshare -n) needs root here"
    probe = subprocess.run(["unshare", "-n", "--", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces are unavailable: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, tiny_model) -> dict:
    problem = _namespace_problem()
    if problem:
        pytest.skip(f"SKIPPED LOUDLY: the Orthanc round trip cannot run: {problem}")
    work = tmp_path_factory.mktemp("orthanc")
    dimse = make_inputs(work / "in")
    stow = {k: v for k, v in make_inputs(work / "in-stow", seed="stow").items()
            if "explicit" in k or "lateral" in k}
    image = np.asarray(Image.open(sorted((REPO / "pipeline/data/sample/jsrt30/images").glob("*.png"))[5]).convert("L"))
    late = make_radiograph_dicom(image, work / "late" / "late.dcm", uid_seed="late-arrival")
    via_pacs = make_radiograph_dicom(image[::-1].copy(), work / "via-pacs" / "pushed.dcm", uid_seed="pushed",
                                     modality="CR", photometric="MONOCHROME1")
    reference = work / "predict"
    inputs = [str(work / "in"), str(work / "in-stow"), str(late.parent), str(via_pacs.parent)]
    assert main(["predict", *inputs, "--out", str(reference), "--model", str(tiny_model), "--workers", "0",
                 "--no-progress"]) == 0
    plan = {"model": str(tiny_model), "dimse": [str(p) for p in dimse.values()], "late": [str(late)],
            "stow": [str(p) for p in stow.values()], "via_pacs": [str(via_pacs)]}
    (work / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(["unshare", "-n", "--", sys.executable, str(SCRIPT), str(work), str(work / "plan.json")],
                          env=env, capture_output=True, text=True, timeout=900)
    obs = json.loads((work / "observations.json").read_text())
    with open(reference / "manifest.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    obs.update(work=work, plan=plan, reference=reference, predict_rows=rows, output=proc.stdout + proc.stderr,
               uids={str(p): str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                     for p in [*dimse.values(), *stow.values(), late, via_pacs]},
               studies={str(p): str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID)
                        for p in [*dimse.values(), *stow.values(), late, via_pacs]})
    assert not obs["errors"], f"the scenario failed: {obs['errors']}\n{obs['output'][-3000:]}"
    return obs


def _segmented(obs: dict, files: list[str]) -> list[str]:
    return [f for f in files if obs["predict_rows"][str(Path(f).resolve())]["status"] == "ok"]


def _check_study(obs: dict, path: str) -> list[dict]:
    """The SEGs Orthanc holds in the file's study; checks each references the file with its geometry and mask."""
    study = obs["orthanc"].get(obs["studies"][path], [])
    segs = [i for i in study if i["modality"] == "SEG"]
    uid = obs["uids"][path]
    row = obs["predict_rows"][str(Path(path).resolve())]
    expected = np.asarray(Image.open(obs["reference"] / row["mask_png"])) > 0
    for seg in segs:
        ds = pydicom.dcmread(seg["file"])
        refs = [r.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence]
        assert refs == [uid]
        assert (ds.Rows, ds.Columns) == (int(row["rows"]), int(row["cols"])) == expected.shape
        got = read_segmentation_mask(seg["file"], uid) > 0
        assert np.array_equal(got, expected), f"{Path(path).name}: the PACS's SEG differs from xray-seg predict"
    return segs


def test_every_instance_is_accepted_and_the_kill_struck_mid_way(scenario):
    assert set(scenario["store_status"].values()) == {0}, scenario["store_status"]
    at_kill = scenario["states_at_kill"]
    assert len(at_kill) == len(scenario["plan"]["dimse"])  # everything answered Success was on disk
    assert any(s != "done" for s in at_kill), f"the kill came too late to test anything: {at_kill}"


def test_each_segmented_image_has_exactly_one_seg_equal_to_predict(scenario):
    frontal = _segmented(scenario, scenario["plan"]["dimse"])
    assert len(frontal) == 5
    for path in frontal:
        segs = _check_study(scenario, path)
        assert len(segs) == 1, f"{Path(path).name}: {len(segs)} SEGs in its study after kill -9 + restart"


def test_lateral_and_broken_files_are_recorded_not_forwarded(scenario):
    others = [f for f in scenario["plan"]["dimse"] if f not in _segmented(scenario, scenario["plan"]["dimse"])]
    assert sorted(Path(f).stem for f in others) == ["broken", "dx_mono2_12bit_lateral"]
    for path in others:
        assert not [i for i in scenario["orthanc"].get(scenario["studies"][path], []) if i["modality"] == "SEG"]
    with open(scenario["work"] / "node" / "results" / "manifest.csv", newline="") as f:
        rows = {r["sop_instance_uid"]: r for r in csv.DictReader(f)}
    for path in scenario["plan"]["dimse"]:
        row = rows[scenario["uids"][path]]
        assert row["calling_ae"] == "SENDER" and row["node_state"] == "done"
        if path in others:
            assert row["forward_status"] == "not_forwarded"
            assert row["forward_reason"] in ("skipped: lateral", "error: decode_failed"), row["forward_reason"]
        else:
            assert row["forward_status"] == "delivered" and row["forward_response"] == "0x0000"


def test_a_resent_image_is_not_processed_twice(scenario):
    assert set(scenario["resend_status"].values()) == {0}
    assert len(scenario["states_after_resend"]) == len(scenario["plan"]["dimse"])


def test_the_pacs_routes_an_image_to_the_node_and_gets_its_seg(scenario):
    (pushed,) = scenario["plan"]["via_pacs"]
    study = scenario["orthanc"][scenario["studies"][pushed]]
    assert sorted(i["modality"] for i in study) == ["CR", "SEG"]
    assert len(_check_study(scenario, pushed)) == 1


def test_seg_waits_while_the_pacs_is_down_and_arrives_afterwards(scenario):
    assert set(scenario["late_status"].values()) == {0}
    (waiting,) = scenario["late_while_down"]
    (entry,) = waiting.values()
    assert entry["status"] == "pending" and entry["attempts"] >= 2, entry
    (after,) = scenario["late_after"].values()
    (entry,) = after.values()
    assert entry["status"] == "delivered", entry
    late = scenario["plan"]["late"][0]
    assert len(_check_study(scenario, late)) == 1


def test_sigterm_stops_the_node_cleanly(scenario):
    assert scenario["node_exit_on_sigterm"] == 0
    assert scenario["stow_exit_on_sigterm"] == 0
    assert scenario["node_sigterm_seconds"] < 30


def test_stow_rs_to_orthanc_dicomweb_with_overlay_secondary_capture(scenario):
    assert scenario["dicomweb_plugin"], "orthanc-dicomweb is not installed"
    for path in _segmented(scenario, scenario["plan"]["stow"]):
        assert len(_check_study(scenario, path)) == 1
        study = scenario["orthanc"][scenario["studies"][path]]
        (sc,) = [pydicom.dcmread(i["file"]) for i in study if pydicom.dcmread(i["file"]).SOPClassUID == SC_CLASS]
        assert sc.SeriesDescription == "AI lung segmentation, not for clinical use"
        assert sc.ReferencedImageSequence[0].ReferencedSOPInstanceUID == scenario["uids"][path]
    for forward in scenario["stow_states"].values():
        for entry in (forward or {}).values():
            assert entry["status"] == "delivered" and entry["response"].startswith("HTTP 200"), entry


def test_logs_show_uids_not_patients(scenario):
    for name in ("node.log", "stow.log"):
        text = (scenario["work"] / name).read_text()
        assert "processed" in text and "forwarded" in text
        assert PATIENT_NAME not in text and "SYN-0001" not in text
