"""Both bundles in the MONAI model zoo's own manner (the pattern of its ``ci/unit_tests``) and through the checks of
its ``ci/verify_bundle.py``.

Each bundle folder is copied as it is (the copy only gains the files a zoo run adds: ``models/model.pt``,
``eval/schema.json``); random images train one epoch with the bundle's default network, then evaluation and
inference run from the written checkpoint with MONAI's workflow property checks, then the zoo's verification:
files, version, metadata against the declared schema, network shapes with ``inference.yaml`` alone, and
TorchScript export of ``model.pt`` (``--key_in_ckpt model``, and the bare state dict the zoo's script reads after the
bundle's ``zoo_weights`` run id). With ``MONAI_ZOO_CI=/path/to/model-zoo/ci`` the zoo's ``verify_bundle.py`` itself
runs on the copy as well (min and full mode).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from xray_test_paths import REPO_ROOT

SCHEMA = Path(__file__).parent / "fixtures" / "meta_schema_20240725.json"
CASES = {"chest_xray_lung_segmentation": 1, "xray_tissue_segmentation": 3}


def _random_dataset(root: Path, n: int, num_classes: int, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(root / "images" / f"case{i}.png")
        labels = rng.integers(0, 2 if num_classes == 1 else num_classes, (size, size)).astype(np.uint8)
        Image.fromarray(labels * 255 if num_classes == 1 else labels).save(root / "masks" / f"case{i}.png")
    return root


def _check_workflow(workflow: ConfigWorkflow) -> ConfigWorkflow:
    """As the zoo's ``ci/unit_tests/utils.check_workflow`` with ``check_properties=True``."""
    workflow.initialize()
    missing = workflow.check_properties()
    assert not missing, f"missing workflow properties: {missing}"
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(params=sorted(CASES), scope="module")
def zoo_bundle(request, tmp_path_factory):
    """A copy of the bundle, trained one epoch on random images (default network, 32 px), evaluated and run."""
    name, num_classes = request.param, CASES[request.param]
    tmp = tmp_path_factory.mktemp(name)
    bundle = tmp / "models" / name
    shutil.copytree(REPO_ROOT / "bundles" / name, bundle, ignore=shutil.ignore_patterns("models", "eval"))
    data = _random_dataset(tmp / "data", 8, num_classes)
    configs = bundle / "configs"
    common = dict(meta_file=str(configs / "metadata.json"), logging_file=str(configs / "logging.conf"))
    override = dict(bundle_root=str(bundle), dataset_dir=str(data), image_size=32, max_epochs=1, batch_size=2,
                    num_workers=0, split_fractions=[0.5, 0.25, 0.25])
    if num_classes > 1:
        override["per_body_part"] = 3
    _check_workflow(ConfigWorkflow(workflow_type="train", config_file=[str(configs / "common.yaml"),
                                                                        str(configs / "train.yaml")],
                                   **common, **override))
    assert (bundle / "models" / "model.pt").is_file()
    _check_workflow(ConfigWorkflow(workflow_type="eval", config_file=[str(configs / "common.yaml"),
                                                                       str(configs / "evaluate.yaml")],
                                   **common, **{k: v for k, v in override.items() if k != "image_size"},
                                   report_variants=[{"name": "raw"}]))
    infer = _check_workflow(ConfigWorkflow(workflow_type="infer", config_file=str(configs / "inference.yaml"), **common,
                                           bundle_root=str(bundle), input_dir=str(data / "images"),
                                           output_dir=str(tmp / "inference")))
    return bundle, tmp, infer


def test_train_evaluate_infer_from_the_written_checkpoint(zoo_bundle):
    bundle, tmp, infer = zoo_bundle
    from pipeline.model import read_artifact

    artifact = read_artifact(bundle / "models" / "model.pt")
    assert artifact.image_size == 32 and artifact.provenance["bundle"] == bundle.name
    assert artifact.calibration.get("method") and artifact.revision == 2  # calibrated when training ended
    assert (bundle / "models" / "temperature.json").is_file()  # the evaluation's fit, beside an unchanged model file
    rows = list(csv.DictReader(open(tmp / "inference" / "manifest.csv")))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    masks = [np.asarray(Image.open(tmp / "inference" / r["mask_png"])) for r in rows]
    assert all(m.shape == (40, 40) for m in masks)
    assert infer.parser.get_parsed_content("predictor").artifact.num_classes == CASES[bundle.name]
    assert (bundle / "eval" / "evaluation" / "report" / "index.html").is_file()


def test_the_zoo_verification_passes(zoo_bundle, tmp_path):
    bundle, _, _ = zoo_bundle
    configs = bundle / "configs"
    meta = str(configs / "metadata.json")
    # verify_bundle_directory and verify_version_changes
    for required in ("LICENSE", "configs/metadata.json", "models/model.pt", "configs/inference.yaml"):
        assert (bundle / required).is_file(), required
    import json

    metadata = json.loads((configs / "metadata.json").read_text())
    assert metadata["version"] in metadata["changelog"]
    # verify_metadata_format: the zoo puts the declared schema into eval/schema.json (ci/prepare_schema.py)
    (bundle / "eval").mkdir(exist_ok=True)
    shutil.copyfile(SCHEMA, bundle / "eval" / "schema.json")
    verify_metadata(meta_file=meta, filepath=str(bundle / "eval" / "schema.json"))
    # verify_data_shape: inference.yaml alone, the metadata's shape at the default n
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=str(configs / "inference.yaml"),
                      bundle_root=str(bundle))
    # export of this project's model.pt: --key_in_ckpt model; the TorchScript module equals the eager network
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(bundle / "models" / "model.pt"),
                key_in_ckpt="model", meta_file=meta, config_file=str(configs / "inference.yaml"),
                bundle_root=str(bundle))
    from pipeline.inference import Predictor

    eager = Predictor.from_checkpoint(bundle / "models" / "model.pt", device="cpu", amp=False).network
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "model.ts"))(x), eager(x), atol=1e-5)
    # verify_torchscript exactly as the zoo calls it (no key): after the bundle's zoo_weights run id
    ConfigWorkflow(config_file=str(configs / "inference.yaml"), workflow_type=None, run_id="zoo_weights",
                   bundle_root=str(bundle), **{"zoo_artifact#image_size": 32}).run()
    assert set(torch.load(bundle / "models" / "model.pt", weights_only=True)) == set(eager.state_dict())
    ckpt_export(net_id="network_def", filepath=str(bundle / "models" / "verify_model.ts"),
                ckpt_file=str(bundle / "models" / "model.pt"), meta_file=meta,
                config_file=str(configs / "inference.yaml"), bundle_root=str(bundle))
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(bundle / "models" / "verify_model.ts"))(x), eager(x), atol=1e-5)


@pytest.mark.skipif(not os.environ.get("MONAI_ZOO_CI"), reason="set MONAI_ZOO_CI to the model zoo's ci/ folder")
def test_the_zoo_script_itself(zoo_bundle):
    """The model zoo's ci/verify_bundle.py, min and full mode, on the copy (run after the test above)."""
    bundle, _, _ = zoo_bundle
    ci = Path(os.environ["MONAI_ZOO_CI"])
    models = bundle.parent
    if not (models / "model_info.json").is_file():
        (models / "model_info.json").write_text("{}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(ci)])}
    for mode in ("min", "full"):
        proc = subprocess.run([sys.executable, str(ci / "verify_bundle.py"), "-b", bundle.name, "-p", str(models),
                               "-m", mode], capture_output=True, text=True, timeout=900, env=env, cwd=ci.parent)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
