"""The node's receiving side on loopback: C-ECHO, C-STORE statuses, caller checks, the durable queue, settings."""

from __future__ import annotations

import json
import logging
import socket
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import AE

from pipeline.cli import build_parser
from pipeline.cli.listen import config_from_args
from pipeline.dicom import make_radiograph_dicom
from pipeline.node import DicomNode, NodeConfig, Spool, load_node_predictor, parse_allow, parse_destination

DX = "1.2.840.10008.5.1.4.1.1.1.1"
EXPLICIT = "1.2.840.10008.1.2.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return load_node_predictor(NodeConfig(model=str(tiny_model)))


def start(tmp_path: Path, predictor, **settings) -> DicomNode:
    config = NodeConfig(model="unused", out=tmp_path / "node", port=free_port(), min_free_mb=1, **settings)
    node = DicomNode(config, predictor=predictor)
    node.start()
    return node


def associate(node: DicomNode, calling: str = "SENDER"):
    ae = AE(calling)
    ae.add_requested_context(DX, EXPLICIT)
    ae.add_requested_context("1.2.840.10008.1.1")
    return ae.associate("127.0.0.1", node.config.port, ae_title=node.config.ae_title)


@pytest.fixture
def radiograph(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    return make_radiograph_dicom((rng.random((96, 80)) * 255).astype(np.uint8), tmp_path / "in" / "a.dcm")


def test_echo_and_success_only_once_the_instance_is_on_disk(tmp_path, predictor, radiograph):
    node = start(tmp_path, predictor)
    try:
        assoc = associate(node)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        ds = pydicom.dcmread(radiograph)
        assert assoc.send_c_store(ds).Status == 0
        # answered Success: the instance and its state are already durable (before any processing)
        stored = node.spool.instance_path(ds.SOPInstanceUID)
        state = json.loads((tmp_path / "node" / "queue" / f"{ds.SOPInstanceUID}.json").read_text())
        assert state["calling_ae"] == "SENDER" and state["state"] in ("received", "processed", "done")
        assert np.array_equal(pydicom.dcmread(stored).pixel_array, ds.pixel_array)
        assert assoc.send_c_store(ds).Status == 0  # the same instance again: accepted, not queued twice
        assoc.release()
        assert node.wait_idle(120)
        assert len(node.spool.states()) == 1
    finally:
        node.stop()
    # the review page reads the node's results folder like a batch folder
    from pipeline.web.review import BatchResults

    results = BatchResults(node.results)
    assert results.counts()["ok"] == 1 and results.counts()["total"] == 1
    row = results.rows()[0]
    assert row.sop_instance_uid == str(ds.SOPInstanceUID) and row.data["node_state"] == "done"
    assert results.file_path(0, "seg").is_file() and results.file_path(0, "overlay").is_file()


def test_a_caller_not_allowed_is_rejected_with_the_reason_logged(tmp_path, predictor, caplog):
    node = start(tmp_path, predictor, allow=["SENDER@127.0.0.1"])
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.node"):
            intruder = associate(node, "INTRUDER")
        assert intruder.is_rejected
        assert any("INTRUDER" in r.getMessage() and "not in --allow" in r.getMessage() for r in caplog.records)
        friend = associate(node, "SENDER")
        assert friend.is_established
        friend.release()
        elsewhere = start(tmp_path / "b", predictor, allow=["SENDER@10.1.2.3"])  # right title, wrong host
        try:
            assert associate(elsewhere, "SENDER").is_rejected
        finally:
            elsewhere.stop()
    finally:
        node.stop()


def test_an_undecodable_data_set_answers_cannot_understand(tmp_path, predictor, radiograph, monkeypatch):
    import pynetdicom._config

    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)  # send the file's bytes as they are
    ds = pydicom.dcmread(radiograph)
    raw = tmp_path / "garbage.dcm"
    # valid file meta, then a data set whose first element claims more bytes than follow
    meta = pydicom.Dataset()
    meta.file_meta = ds.file_meta
    with open(raw, "wb") as f:
        pydicom.dcmwrite(f, meta, enforce_file_format=True)
        f.write(struct.pack("<HH2sH", 0x0008, 0x0018, b"UI", 60) + b"1.2.3")
    node = start(tmp_path, predictor)
    try:
        assoc = associate(node)
        status = assoc.send_c_store(raw)  # sent as it is on disk, not re-encoded
        assoc.release()
        assert 0xC000 <= status.Status <= 0xCFFF
        assert not list((tmp_path / "node" / "incoming").glob("*.dcm"))
    finally:
        node.stop()


def test_a_full_disk_answers_out_of_resources_and_stores_nothing(tmp_path, predictor, radiograph):
    node = start(tmp_path, predictor)
    node.spool.min_free_mb = 1e12  # a disk this full has less than a petabyte... and less than the instance
    try:
        assoc = associate(node)
        assert assoc.send_c_store(pydicom.dcmread(radiograph)).Status == 0xA700
        assoc.release()
        assert not list((tmp_path / "node" / "incoming").iterdir())
        assert not node.spool.states()
    finally:
        node.stop()


def test_the_queue_recovers_what_a_kill_left(tmp_path, radiograph):
    spool = Spool(tmp_path / "node")
    uid = str(pydicom.dcmread(radiograph).SOPInstanceUID)
    spool.store(uid, radiograph.read_bytes(), calling_ae="SENDER")
    (spool.incoming / ".half.dcm.abc.partial").write_bytes(b"cut")  # a write the kill interrupted
    orphan = "1.2.3.4.5"
    spool.instance_path(orphan).write_bytes(radiograph.read_bytes())  # stored, state never written
    again = Spool(tmp_path / "node")
    assert again.recover() == {"received": 2}
    assert {s["sop_instance_uid"] for s in again.states("received")} == {uid, orphan}
    assert not list(spool.incoming.glob(".*.partial"))
    assert not again.store(uid, radiograph.read_bytes())  # known: not stored twice


def test_settings_from_a_yaml_file_with_command_line_precedence(tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text("model: m.pt\nout: /srv/node\nport: 4100\nallow: [PACS@10.0.0.5]\n"
                      "forward: dimse://PACS@10.0.0.5:104\noverlay-sc: true\noverride: {image_size: 64}\n")
    parser = build_parser()
    cfg = config_from_args(parser.parse_args(["listen", "--config", str(config), "--port", "4200"]))
    assert (cfg.model, cfg.out, cfg.port, cfg.bind, cfg.overlay_sc) == ("m.pt", Path("/srv/node"), 4200,
                                                                          "127.0.0.1", True)
    assert [str(a) for a in cfg.allow] == ["PACS@10.0.0.5"] and cfg.overrides == {"image_size": 64}
    assert cfg.forward[0].kind == "dimse" and cfg.forward[0].port == 104
    config.write_text("model: m.pt\nout: x\nprot: 4100\n")
    with pytest.raises(ValueError, match="prot"):
        config_from_args(parser.parse_args(["listen", "--config", str(config)]))
    with pytest.raises(ValueError, match="missing --model"):
        config_from_args(parser.parse_args(["listen", "--out", "x"]))


def test_allow_and_destination_syntax():
    assert parse_allow("CR1").matches("CR1", "10.9.9.9")
    rule = parse_allow("CR1@10.0.1.0/24")
    assert rule.matches("CR1", "10.0.1.7") and not rule.matches("CR1", "10.0.2.7") and not rule.matches("CR2", "10.0.1.7")
    for bad in ("CR1@", "WAY_TOO_LONG_AE_TITLE_1", "CR1@pacs.example"):
        with pytest.raises(ValueError):
            parse_allow(bad)
    stow = parse_destination("https://pacs.example/dicom-web/")
    assert (stow.kind, stow.port, stow.base_url) == ("stow", 443, "https://pacs.example/dicom-web")
    for bad in ("dimse://10.0.0.5:104", "ftp://x", "dimse://PACS@host"):
        with pytest.raises(ValueError):
            parse_destination(bad)


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["listen", "--help"])
    text = capsys.readouterr().out
    for option in ("--config", "--model", "--out", "--ae-title", "--port", "--bind", "--allow", "--forward",
                   "--overlay-sc", "--workers", "--batch-size", "--gather-s", "--device", "--override", "--selection",
                   "--min-free-mb", "--retry-initial-s", "--retry-max-s", "--max-pdu", "--network-timeout-s"):
        assert option in text
    assert "0xA700" in text and "dicom-web" in text and "kill -9" in text


def test_waiting_deliveries_follow_the_current_destinations(tmp_path, predictor, radiograph):
    spool = Spool(tmp_path / "node")
    uid = str(pydicom.dcmread(radiograph).SOPInstanceUID)
    spool.store(uid, radiograph.read_bytes())
    old = "dimse://GONE@127.0.0.1:1"
    spool.update(uid, state="processed", outputs={"seg": "seg/x.dcm"}, forward={old: {"status": "pending"}})
    node = start(tmp_path, predictor)  # restarted without that destination: nothing left to wait for
    try:
        state = node.spool.get(uid)
        assert state["state"] == "done" and state["forward"][old]["status"] == "pending"
    finally:
        node.stop()


def test_a_ct_and_a_seg_sent_by_mistake_are_stored_recorded_and_not_segmented(tmp_path, predictor, radiograph):
    import csv

    from pipeline.node.receiver import RECORDED_SOP_CLASSES

    ct = pydicom.dcmread(radiograph)
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["ct"])
    ct.Modality = "CT"
    seg_class = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage (e.g. a PACS routing the node's own SEGs back)
    assert {ct.SOPClassUID, seg_class} <= set(RECORDED_SOP_CLASSES)
    node = start(tmp_path, predictor)
    try:
        ae = AE("SENDER")
        ae.add_requested_context(ct.SOPClassUID, EXPLICIT)
        ae.add_requested_context(DX, EXPLICIT)
        assoc = ae.associate("127.0.0.1", node.config.port, ae_title=node.config.ae_title)
        assert assoc.is_established  # not refused at association, where nobody would see it
        assert assoc.send_c_store(ct).Status == 0
        assert assoc.send_c_store(pydicom.dcmread(radiograph)).Status == 0
        assoc.release()
        assert node.wait_idle(120)
    finally:
        node.stop()
    with open(node.results / "manifest.csv", newline="") as f:
        rows = {r["sop_instance_uid"]: r for r in csv.DictReader(f)}
    row = rows[str(ct.SOPInstanceUID)]
    assert row["status"] == "skipped" and "Modality CT" in row["reason"], row
    assert row["node_state"] == "done" and not row["seg"]
    assert rows[str(pydicom.dcmread(radiograph).SOPInstanceUID)]["status"] == "ok"
    assert not list((node.results / "seg").glob(f"{ct.SOPInstanceUID}*"))
