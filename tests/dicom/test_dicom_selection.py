"""Selection rules, input discovery and safe naming for hospital DICOM batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from pipeline.dicom import (
    DEFAULT_RULES,
    DEFAULT_RULES_FILE,
    SelectionRules,
    discover_inputs,
    file_id,
    make_radiograph_dicom,
    path_uid,
    select_file,
    sniff_input,
    uid_to_filename,
)

CR = "1.2.840.10008.5.1.4.1.1.1"
DX = "1.2.840.10008.5.1.4.1.1.1.1"


def header(**attrs) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = attrs.pop("SOPClassUID", DX)
    ds.Modality = attrs.pop("Modality", "DX")
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def test_config_file_matches_builtin_defaults():
    assert DEFAULT_RULES_FILE.is_file()
    from_file = SelectionRules.from_file(DEFAULT_RULES_FILE)
    assert from_file.to_dict() == SelectionRules.from_mapping(DEFAULT_RULES).to_dict()
    assert SelectionRules.default() == SelectionRules.from_mapping(DEFAULT_RULES)


@pytest.mark.parametrize(
    "attrs, selected, code",
    [
        (dict(ViewPosition="PA"), True, "selected"),
        (dict(SOPClassUID=CR, Modality="CR", ViewPosition="AP", BodyPartExamined="CHEST"), True, "selected"),
        (dict(ViewPosition=""), True, "selected"),  # not stated: assumed frontal by default
        (dict(ImageType=["ORIGINAL", "PRIMARY", "PA"]), True, "selected"),
        (dict(ViewPosition="LL"), False, "lateral"),
        (dict(ViewPosition="OBL"), False, "view"),
        (dict(ImageType=["ORIGINAL", "PRIMARY", "LATERAL"]), False, "lateral"),
        (dict(BodyPartExamined="CSPINE", ViewPosition="AP"), False, "body_part"),
        (dict(BodyPartExamined="CHEST PA", ViewPosition="PA"), True, "selected"),
        (dict(PresentationIntentType="FOR PROCESSING", SOPClassUID=DX + ".1"), False, "for_processing"),
        (dict(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]), False, "image_type"),
        (dict(Modality="MR", SOPClassUID="1.2.840.10008.5.1.4.1.1.4"), False, "modality"),
        (dict(Modality="OT", SOPClassUID="1.2.840.10008.5.1.4.1.1.7"), False, "secondary"),
        (dict(Modality="DX", SOPClassUID="1.2.840.10008.5.1.4.1.1.7"), False, "secondary"),
        (dict(Modality="SR", SOPClassUID="1.2.840.10008.5.1.4.1.1.88.33"), False, "not_image"),
        (dict(Modality="SEG", SOPClassUID="1.2.840.10008.5.1.4.1.1.66.4"), False, "not_image"),
        (dict(Modality="DX", SOPClassUID="1.2.840.10008.5.1.4.1.1.12.1"), False, "sop_class"),  # XA storage
    ],
)
def test_rules(attrs, selected, code):
    verdict = SelectionRules.default().evaluate(header(**attrs))
    assert (verdict.selected, verdict.code) == (selected, code), verdict.reason
    ok, reason = verdict  # unpacks as (selected, reason)
    assert ok == selected and reason


def test_view_code_sequence_and_unknown_view_policy():
    lateral = header()
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "399198007", "SCT", "right lateral"
    lateral.ViewCodeSequence = [item]
    assert SelectionRules.default().evaluate(lateral).code == "lateral"
    strict = SelectionRules.from_mapping({"unknown_view": "skip"})
    assert strict.evaluate(header()).code == "view"


def test_rules_from_json_and_unknown_key(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"modalities": ["cr"], "body_parts": []}))
    rules = SelectionRules.from_file(path)
    assert rules.modalities == ("CR",) and rules.body_parts == ()
    assert rules.evaluate(header()).code == "modality"  # DX no longer selected
    assert rules.fingerprint() != SelectionRules.default().fingerprint()
    with pytest.raises(ValueError, match="unknown selection rule"):
        SelectionRules.from_mapping({"modality": ["CR"]})


def test_select_file_on_odd_inputs(tmp_path):
    rules = SelectionRules.default()
    (tmp_path / "zero.dcm").write_bytes(b"")
    (tmp_path / "text.dcm").write_text("this is not DICOM\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "film.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "film.jpg")
    dicom = make_radiograph_dicom(np.zeros((8, 8), np.uint8), tmp_path / "noext", preamble=False)
    got = {p.name: select_file(p, rules) for p in sorted(tmp_path.iterdir())}
    assert (got["zero.dcm"].status, got["zero.dcm"].code) == ("error", "empty")
    assert (got["text.dcm"].status, got["text.dcm"].code) == ("error", "not_dicom")
    assert (got["notes.txt"].status, got["notes.txt"].code) == ("skipped", "not_image")
    assert got["film.png"].selected and got["film.png"].sop_instance_uid == path_uid(tmp_path / "film.png")
    assert got["film.jpg"].selected and got["film.jpg"].format == "jpeg"
    assert got[dicom.name].selected and got[dicom.name].format == "dicom"
    assert all(str(tmp_path) not in s.reason for s in got.values())


def test_dicom_with_tiff_preamble_is_dicom():
    # pydicom's CT_small.dcm has a TIFF header in its preamble (dual-personality file)
    path = get_testdata_file("CT_small.dcm")
    assert sniff_input(path) == "dicom"
    assert select_file(path, SelectionRules.default()).code == "modality"


def test_discovery_is_recursive_sorted_unique_and_skips_output(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.dcm", "a/b/IM0001", "a/.hidden", "z.png", "a/Thumbs.db"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a" / "out").mkdir()
    (tmp_path / "a" / "out" / "seg.dcm").write_bytes(b"x")
    inputs = [tmp_path / "a", tmp_path / "a" / "x.dcm", tmp_path / "z.png"]
    found = discover_inputs(inputs, exclude=[tmp_path / "a" / "out"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/IM0001", "a/x.dcm", "z.png"]
    with pytest.raises(FileNotFoundError):
        discover_inputs([tmp_path / "missing"])


def test_names_come_from_uids_not_paths():
    assert uid_to_filename("1.2.840.10008.1", ".dcm") == "1.2.840.10008.1.dcm"
    assert uid_to_filename("1.2.3 \x00") == "1.2.3"
    for hostile in ("../../etc/passwd", "1.2.3/../../x", "", "DOE^JOHN", "1." + "1" * 70, "01.2"):
        name = uid_to_filename(hostile, ".dcm")
        assert name.startswith("uid-") and "/" not in name and "DOE" not in name
    assert uid_to_filename("../x") == uid_to_filename("../x")  # deterministic
    assert len(file_id("/export/DOE^JOHN/1.dcm")) == 12 and "DOE" not in file_id("/export/DOE^JOHN/1.dcm")
