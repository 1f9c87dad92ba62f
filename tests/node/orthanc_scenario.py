"""The node against a real PACS, run inside a private network namespace (``unshare -n``), driven by test_orthanc.

Orthanc 1.10 cannot bind to loopback alone, so the test re-executes this script as root under ``unshare -n``: the
namespace has only ``lo`` (brought up here), and nothing in it is reachable from outside. The script starts Orthanc
(with the DICOMweb plugin) and ``xray-seg listen`` as real processes, sends radiographs with a pynetdicom C-STORE
client, kills the node with SIGKILL in the middle, stops and restarts Orthanc, and finally downloads what Orthanc
holds. It asserts nothing: it writes ``observations.json`` and the downloaded instances for the test to judge.

Usage: python orthanc_scenario.py WORK_DIR PLAN_JSON
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ORTHANC_HTTP, ORTHANC_DICOM, NODE_PORT, STOW_NODE_PORT = 8042, 4242, 11112, 11113
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def log(msg: str) -> None:
    print(f"[scenario {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_for(what: str, check, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---- Orthanc --------------------------------------------------------------------------------------------------------
def orthanc_config(work: Path) -> Path:
    storage = work / "orthanc-db"
    config = {
        "Name": "scenario", "DicomAet": "ORTHANC", "DicomPort": ORTHANC_DICOM, "HttpPort": ORTHANC_HTTP,
        "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpServerEnabled": True,
        "DicomServerEnabled": True, "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
        "OverwriteInstances": False, "StableAge": 1,
        "DicomModalities": {"xrayseg": ["XRAYSEG", "127.0.0.1", NODE_PORT]},
        "Plugins": [PLUGIN] if Path(PLUGIN).exists() else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    path = work / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def rest(path: str, method: str = "GET", body: bytes | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{ORTHANC_HTTP}{path}", data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        data = resp.read()
    return json.loads(data) if data[:1] in (b"{", b"[") else data


def orthanc_up() -> bool:
    try:
        return bool(rest("/system"))
    except OSError:
        return False


def start_orthanc(work: Path, config: Path) -> subprocess.Popen:
    out = open(work / "orthanc.log", "ab")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(["Orthanc", str(config)], stdout=out, stderr=subprocess.STDOUT)
    wait_for("Orthanc", orthanc_up, 60)
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# ---- the node -------------------------------------------------------------------------------------------------------
def start_node(work: Path, name: str, model: str, port: int, forward: str, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.cli", "listen", "--model", model, "--out", str(work / name),
           "--port", str(port), "--forward", forward, "--retry-initial-s", "0.5", "--retry-max-s", "2",
           "--batch-size", "2", "--gather-s", "0.2", "--min-free-mb", "1", *extra]
    out = open(work / f"{name}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_for(f"node {name} to answer C-ECHO", lambda: proc.poll() is not None or echo(port), 180, 0.3)
    if proc.poll() is not None:
        raise RuntimeError(f"node {name} exited with {proc.returncode}; see {name}.log")
    return proc


def echo(port: int) -> bool:
    from pynetdicom import AE

    ae = AE("SENDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="XRAYSEG")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0


def send(files: list[str], port: int, calling: str = "SENDER") -> dict[str, int | str]:
    """C-STORE each file (one association; one presentation context per SOP class + transfer syntax)."""
    import pydicom
    from pynetdicom import AE

    ae = AE(calling)
    datasets = {f: pydicom.dcmread(f) for f in files}
    for pair in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets.values()}):
        ae.add_requested_context(*pair)
    assoc = ae.associate("127.0.0.1", port, ae_title="XRAYSEG")
    if not assoc.is_established:
        return {f: "rejected" if assoc.is_rejected else "no association" for f in files}
    out: dict[str, int | str] = {}
    for f, ds in datasets.items():
        status = assoc.send_c_store(ds)
        out[f] = int(status.Status) if status else "no response"
    assoc.release()
    return out


def states(work: Path, name: str) -> dict[str, dict]:
    out = {}
    for path in (work / name / "queue").glob("*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out[state["sop_instance_uid"]] = state
    return out


def all_done(work: Path, name: str, n: int) -> bool:
    current = states(work, name)
    return len(current) >= n and all(s["state"] == "done" for s in current.values())


# ---- what Orthanc holds ---------------------------------------------------------------------------------------------
def orthanc_contents(dest: Path) -> dict:
    """{StudyInstanceUID: [{modality, sop_instance_uid, file}]} for every instance, files downloaded into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, list] = {}
    for instance_id in rest("/instances"):
        tags = rest(f"/instances/{instance_id}/simplified-tags")
        data = rest(f"/instances/{instance_id}/file")
        path = dest / f"{instance_id}.dcm"
        path.write_bytes(data)
        out.setdefault(tags.get("StudyInstanceUID", ""), []).append(
            {"modality": tags.get("Modality"), "sop_instance_uid": tags.get("SOPInstanceUID"), "file": str(path)})
    return out


def main() -> int:
    work, plan = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    obs: dict = {"errors": []}
    procs: list[subprocess.Popen] = []
    config = orthanc_config(work)
    try:
        orthanc = start_orthanc(work, config)
        procs.append(orthanc)
        obs["dicomweb_plugin"] = Path(PLUGIN).exists()
        dimse = f"dimse://ORTHANC@127.0.0.1:{ORTHANC_DICOM}"
        allow = ["--allow", "SENDER@127.0.0.1", "--allow", "ORTHANC@127.0.0.1"]

        # A. send everything, kill -9 the node in the middle of the work, restart it: same result, no duplicates
        node = start_node(work, "node", plan["model"], NODE_PORT, dimse, allow)
        procs.append(node)
        obs["store_status"] = send(plan["dimse"], NODE_PORT)
        n = len(plan["dimse"]) - len(plan.get("refused", []))
        wait_for("a first processed instance", lambda: any(
            s["state"] != "received" for s in states(work, "node").values()), 120, 0.02)
        node.send_signal(signal.SIGKILL)
        node.wait()
        obs["states_at_kill"] = sorted(s["state"] for s in states(work, "node").values())
        log(f"killed the node with {obs['states_at_kill']}")
        node = start_node(work, "node", plan["model"], NODE_PORT, dimse, allow)
        procs.append(node)
        wait_for("every instance done after the restart", lambda: all_done(work, "node", n), 240, 0.2)
        obs["resend_status"] = send(plan["dimse"][:1], NODE_PORT)  # a PACS sending the same image again
        time.sleep(1.0)
        obs["states_after_resend"] = sorted(s["state"] for s in states(work, "node").values())
        # the PACS itself routes an image to the node (the node registered in Orthanc's DicomModalities)
        for path in plan["via_pacs"]:
            instance = rest("/instances", "POST", Path(path).read_bytes())["ID"]
            obs.setdefault("pacs_push", []).append(
                rest("/modalities/xrayseg/store", "POST", json.dumps({"Resources": [instance]}).encode()))
        n += len(plan["via_pacs"])
        wait_for("the image the PACS pushed", lambda: all_done(work, "node", n), 120, 0.2)

        # B. Orthanc down: the SEG waits and is delivered once Orthanc is back
        stop(orthanc)
        known = set(states(work, "node"))
        obs["late_status"] = send(plan["late"], NODE_PORT)
        late_uids = set(states(work, "node")) - known
        wait_for("two failed delivery attempts", lambda: any(
            (s.get("forward") or {}).get(dimse, {}).get("attempts", 0) >= 2
            for s in states(work, "node").values() if s["state"] == "processed"), 120, 0.2)
        obs["late_while_down"] = [s.get("forward") for s in states(work, "node").values() if s["state"] == "processed"]
        orthanc = start_orthanc(work, config)
        procs.append(orthanc)
        n += len(plan["late"])
        wait_for("the late SEG delivered", lambda: all_done(work, "node", n), 120, 0.2)
        obs["late_after"] = {uid: s.get("forward") for uid, s in states(work, "node").items() if uid in late_uids}
        t0 = time.monotonic()
        obs["node_exit_on_sigterm"] = stop(node)
        obs["node_sigterm_seconds"] = time.monotonic() - t0

        # C. STOW-RS to Orthanc's DICOMweb plugin, with the overlay Secondary Capture
        stow = start_node(work, "stow", plan["model"], STOW_NODE_PORT,
                          f"http://127.0.0.1:{ORTHANC_HTTP}/dicom-web", ["--overlay-sc"])
        procs.append(stow)
        obs["stow_store_status"] = send(plan["stow"], STOW_NODE_PORT)
        wait_for("STOW-RS deliveries", lambda: all_done(work, "stow", len(plan["stow"])), 240, 0.2)
        obs["stow_states"] = {uid: s.get("forward") for uid, s in states(work, "stow").items()}
        obs["stow_exit_on_sigterm"] = stop(stow)

        obs["orthanc"] = orthanc_contents(work / "from-orthanc")
    except Exception as err:  # noqa: BLE001 - reported to the test, which fails with it
        obs["errors"].append(f"{type(err).__name__}: {err}")
    finally:
        for proc in reversed(procs):
            stop(proc, signal.SIGTERM, 30)
        (work / "observations.json").write_text(json.dumps(obs, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    sys.exit(main())
