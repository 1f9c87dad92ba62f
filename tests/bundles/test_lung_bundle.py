"""Every config of the lung bundle runs end to end through MONAI's ConfigWorkflow, on the committed real sample."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow
from PIL import Image

from xray_test_paths import LUNG_BUNDLE, TINY_BASIC_UNET

CONFIGS = LUNG_BUNDLE / "configs"
DROP = object()  # an override left out, so the config's own value applies


def workflow(config_files, tmp: Path, run_id: str = "run", **overrides) -> ConfigWorkflow:
    defaults = dict(
        bundle_root=str(LUNG_BUNDLE),
        dataset_dir="sample",
        output_dir=f"$'{tmp / 'eval'}'",
        ckpt_dir=str(tmp / "models"),
        image_size=32,
        max_epochs=2,
        batch_size=4,
        num_workers=0,
        network_kwargs=TINY_BASIC_UNET,
    )
    defaults.update(overrides)
    defaults = {k: v for k, v in defaults.items() if v is not DROP}
    files = [str(CONFIGS / f) for f in config_files]
    wf = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        run_id=run_id,
        workflow_type=None,
        **defaults,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lung_bundle")
    wf = workflow(["train.yaml"], tmp, run_id="training")
    return tmp, wf


def test_training_run_id_trains_and_checkpoints(trained):
    tmp, wf = trained
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2
    assert (tmp / "models" / "model.pt").is_file()
    assert (tmp / "eval" / "datalist.json").is_file()
    dice = wf.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]
    assert 0.0 <= dice <= 1.0


def test_evaluate_writes_per_image_dice(trained):
    tmp, _ = trained
    wf = workflow(["train.yaml", "evaluate.yaml"], tmp, run_id="evaluating")
    rows = list(csv.reader(open(tmp / "eval" / "evaluation" / "val_mean_dice_raw.csv")))
    assert len(rows) - 1 == len(wf.parser.get_parsed_content("datalist")["test"]) == 4
    assert all(r[0].endswith(".png") for r in rows[1:])
    assert (tmp / "eval" / "evaluation" / "val_mean_dice_summary.csv").is_file()
    # temperature fitted on the validation split and stored with the checkpoint
    import json

    from pipeline.model import read_artifact

    stored = read_artifact(tmp / "models" / "model.pt")
    fitted = json.loads((tmp / "models" / "temperature.json").read_text())
    assert stored.temperature == pytest.approx(fitted["temperature"]) and fitted["temperature"] > 0
    # the full report compares post-processing variants
    report = tmp / "eval" / "evaluation" / "report"
    variants = list(csv.DictReader(open(report / "comparison.csv")))
    assert [v["variant"] for v in variants] == ["raw", "cleanup", "temperature", "temperature+cleanup"]
    assert len(list(csv.DictReader(open(report / "raw" / "per_image.csv")))) == 4
    assert (report / "index.html").is_file()


def test_inference_writes_masks_at_original_size(trained, tmp_path, sample_dir):
    tmp, _ = trained
    inp = tmp_path / "in"
    inp.mkdir()
    big = np.asarray(Image.open(sample_dir / "images" / "JPCLN008.png").resize((300, 340)))
    Image.fromarray(big).save(inp / "odd_size.png")
    (inp / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    wf = workflow(["train.yaml", "inference.yaml"], tmp, run_id="inferring", input_dir=str(inp), output_dir=str(out),
                  output_formats=["png", "nifti"])
    mask = np.asarray(Image.open(out / "odd_size_mask.png"))
    assert mask.shape == (340, 300) and set(np.unique(mask)) <= {0, 255}
    import nibabel as nib

    assert nib.load(str(out / "odd_size_mask.nii.gz")).shape == (300, 340)  # NIfTI: x = columns
    assert wf is not None


def test_switching_network_is_one_override(tmp_path):
    wf = workflow(["train.yaml"], tmp_path, max_epochs=1, network_name="xnet",
                  network_kwargs={"features": [4, 8, 8, 16], "norm": "instance"})
    from pipeline.networks import XNet

    assert isinstance(wf.parser.get_parsed_content("network_def"), XNet)


def test_metadata_matches_the_network(tmp_path):
    cmd = [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def",
           "--meta_file", str(CONFIGS / "metadata.json"), "--config_file", str(CONFIGS / "train.yaml"),
           "--bundle_root", str(LUNG_BUNDLE), "--n", "2", "--network_kwargs", str(TINY_BASIC_UNET)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_multi_gpu_config_runs_two_processes_on_cpu(tmp_path):
    """torchrun with 2 gloo processes, one epoch: DDP, DistributedSampler, rank-0-only checkpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "monai.bundle", "run", "training",
           "--config_file", f"['{CONFIGS / 'train.yaml'}','{CONFIGS / 'multi_gpu_train.yaml'}']",
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--bundle_root", str(LUNG_BUNDLE), "--dataset_dir", "sample", "--output_dir", f"$'{tmp_path / 'eval'}'",
           "--ckpt_dir", str(tmp_path / "models"), "--image_size", "32", "--max_epochs", "1", "--batch_size", "4",
           "--num_workers", "0", "--network_kwargs", str(TINY_BASIC_UNET)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "models" / "model.pt").is_file()
    assert proc.stdout.count("epoch 1/1") == 1  # only rank 0 logs the epoch summary


def test_evaluation_and_inference_run_the_model_as_it_was_trained(trained, tmp_path, sample_dir):
    """model.pt carries its image size and network: evaluate / inference / Predictor need no repeat of them."""
    import torch

    from pipeline.inference import Predictor
    from pipeline.model import ARTIFACT_KEY, read_artifact

    tmp, _ = trained
    stored = read_artifact(tmp / "models" / "model.pt")
    assert stored.image_size == 32 and stored.network_kwargs == TINY_BASIC_UNET
    assert stored.network_name == "basic_unet" and stored.num_classes == 1 and stored.class_names == ["lung"]
    assert stored.provenance["dataset_name"] and len(stored.provenance["datalist_hash"]) > 0
    assert ARTIFACT_KEY in torch.load(tmp / "models" / "model.pt", weights_only=True)
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.png").write_bytes((sample_dir / "images" / "JPCLN008.png").read_bytes())
    wf = workflow(["train.yaml", "inference.yaml"], tmp, run_id="inferring", input_dir=str(inp),
                  output_dir=str(tmp_path / "out"), image_size=DROP, network_kwargs=DROP)
    predictor = wf.parser.get_parsed_content("predictor")
    assert predictor.image_size == 32  # not this machine's default (128 on CPU, 256 on CUDA)
    assert (tmp_path / "out" / "a_mask.png").is_file()
    wf = workflow(["train.yaml", "evaluate.yaml"], tmp, run_id="evaluating", image_size=DROP, network_kwargs=DROP,
                  fit_temperature=False)
    assert wf.parser.get_parsed_content("image_size") == 32
    from_bundle = Predictor.from_bundle(LUNG_BUNDLE, checkpoint=tmp / "models" / "model.pt", device="cpu")
    assert from_bundle.image_size == 32
    assert sum(p.numel() for p in from_bundle.network.parameters()) == sum(
        p.numel() for p in predictor.network.parameters())


def test_cpu_machines_get_the_laptop_defaults():
    """Without CUDA the bundle trains at 128 px for 30 epochs with one-cycle (the README's 5-minute laptop path)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    parser["bundle_root"] = str(LUNG_BUNDLE)
    cuda = torch.cuda.is_available()
    assert parser.get_parsed_content("cpu_profile") is (not cuda)
    assert parser.get_parsed_content("image_size") == (256 if cuda else 128)
    assert parser.get_parsed_content("max_epochs") == (60 if cuda else 30)
    assert parser.get_parsed_content("lr_schedule") == "onecycle"
    parser["device"] = "$torch.device('cpu')"
    assert parser.get_parsed_content("image_size", reset=True) == 128


def test_a_stored_network_needs_no_override(tmp_path):
    """An XNet checkpoint in the bundle-0.2 format ({model, settings}) still loads, without any override."""
    import torch

    from pipeline.inference import Predictor
    from pipeline.networks import XNet, get_network

    kwargs = {"features": [4, 8, 8, 16], "norm": "instance"}
    net = get_network("xnet", spatial_dims=2, in_channels=1, out_channels=1, **kwargs)
    settings = {"image_size": 48, "intensity": "minmax", "num_classes": 1, "threshold": 0.5, "network_name": "xnet",
                "network_kwargs": kwargs}
    torch.save({"model": net.state_dict(), "settings": settings}, tmp_path / "model.pt")
    predictor = Predictor.from_bundle(LUNG_BUNDLE, checkpoint=tmp_path / "model.pt", device="cpu", amp=False)
    assert isinstance(predictor.network, XNet) and predictor.image_size == 48
    assert predictor.model_name == "xnet"
    image = np.zeros((70, 90), np.float32)
    image[10:60, 10:80] = 1.0
    assert predictor.predict_array(image).mask.shape == (70, 90)
