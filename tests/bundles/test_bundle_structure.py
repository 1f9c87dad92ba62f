"""The bundles' configs stay declarative and in step: few short ``$`` expressions, shared keys equal, metadata valid.

Also: the metadata's shapes hold for every network of the factory, and every network exports by TorchScript
scripting with the eager model's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from xray_test_paths import REPO_ROOT

BUNDLES = REPO_ROOT / "bundles"
LUNG = BUNDLES / "chest_xray_lung_segmentation"
TISSUE = BUNDLES / "xray_tissue_segmentation"
SCHEMA = Path(__file__).parent / "fixtures" / "meta_schema_20240725.json"
CONFIG_FILES = ["common.yaml", "train.yaml", "evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml"]

#: keys whose values are the task's own (everything else the two bundles share must be equal)
TASK_KEYS = {
    "dataset_dir", "split_fractions", "synthetic_images", "synthetic_seed", "data_root", "data_root#synthetic",
    "experiment_name", "registered_model_name", "network_name", "num_classes", "class_names", "image_size",
    "image_size#_target_", "image_size#device", "image_size#cpu", "image_size#cuda", "threshold", "batch_size",
    "model_artifact#provenance#bundle", "validate#key_metric#val_mean_dice#include_background",
    "validate#additional_metrics#include_background", "validate#additional_metrics#hd95",
    "max_epochs", "max_epochs#_target_", "max_epochs#device", "max_epochs#cpu", "max_epochs#cuda", "lr_schedule",
    "early_stop_patience", "per_body_part", "augment#affine_prob", "augment#rotate_degrees", "augment#elastic_prob",
    "augment#intensity_prob", "augment#gamma", "augment#noise_std", "train#loader#per_group",
    "train#handlers#3#handlers#0#messages", "train#handlers#3#handlers#4#params#per_body_part", "report_variants",
    "model", "zoo_artifact#network_name", "zoo_artifact#num_classes", "zoo_artifact#class_names",
}


def _load(bundle: Path, name: str) -> dict:
    return yaml.safe_load((bundle / "configs" / name).read_text())


def _expressions(node) -> list[str]:
    if isinstance(node, dict):
        return [e for v in node.values() for e in _expressions(v)]
    if isinstance(node, list):
        return [e for v in node for e in _expressions(v)]
    return [node] if isinstance(node, str) and node.startswith("$") else []


def _flat(node, prefix: str = "") -> dict[str, object]:
    """``{'a#b#0': value}`` for every leaf (MONAI's id syntax), dicts and lists walked."""
    out: dict[str, object] = {}
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        return {prefix: node}
    for k, v in items:
        out.update(_flat(v, f"{prefix}#{k}" if prefix else str(k)))
    return out


@pytest.mark.parametrize("bundle, limit", [(LUNG, 55), (TISSUE, 55)])
def test_configs_are_declarative(bundle, limit):
    """At most ``limit`` ``$`` expressions, none over 100 characters, no ``_disabled_`` choices, no slicing."""
    expressions = [e for name in CONFIG_FILES for e in _expressions(_load(bundle, name))]
    assert len(expressions) <= limit, len(expressions)
    assert max(len(e) for e in expressions) <= 100, max(expressions, key=len)
    text = "".join((bundle / "configs" / n).read_text() for n in CONFIG_FILES)
    assert "_disabled_" not in text
    assert "[:" not in text and "lambda" not in text


def test_the_two_bundles_share_their_common_keys():
    """Everything that is not the task's own is identical, so the bundles cannot drift apart again."""
    differing = []
    for name in CONFIG_FILES:
        lung = {k: v for k, v in _flat(_load(LUNG, name)).items() if k.split("#")[0] not in ("imports",)}
        tissue = {k: v for k, v in _flat(_load(TISSUE, name)).items() if k.split("#")[0] not in ("imports",)}
        for key in sorted(set(lung) | set(tissue)):
            if key in TASK_KEYS or any(key.startswith(t + "#") for t in TASK_KEYS):
                continue
            if lung.get(key, "<missing>") != tissue.get(key, "<missing>"):
                differing.append((name, key, lung.get(key, "<missing>"), tissue.get(key, "<missing>")))
    assert not differing, differing
    # and the shared structure is really there in both (not two empty files agreeing)
    for bundle in (LUNG, TISSUE):
        train = _flat(_load(bundle, "train.yaml"))
        assert train["validate#handlers#0#handlers#0#save_dict#artifact"] == "@model_artifact"
        assert train["train#loader#_target_"] == "pipeline.bundle.training_loader"
        assert "pipeline.tracking.MLflowTrainingHandler" in train.values()
        assert _load(bundle, "common.yaml")["compile"] is False and "amp_kwargs" in _load(bundle, "common.yaml")


@pytest.mark.parametrize("bundle", [LUNG, TISSUE])
def test_metadata_follows_the_schema_it_declares(bundle):
    from monai.bundle import verify_metadata

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["schema"].rsplit("/", 1)[-1] == SCHEMA.name
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(SCHEMA))
    assert meta["version"] in meta["changelog"]
    assert all(shape == "32*n" for io in ("inputs", "outputs") for v in meta["network_data_format"][io].values()
               for shape in v["spatial_shape"])


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for v in node.values():
            yield from _targets(v)
    elif isinstance(node, list):
        for v in node:
            yield from _targets(v)


@pytest.mark.parametrize("bundle", [LUNG, TISSUE])
def test_metadata_names_every_package_the_configs_import(bundle):
    """A zoo environment installs required_packages_version: everything the configs' targets import is in it."""
    import pipeline

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    required = {k.lower(): v for k, v in meta["required_packages_version"].items()}
    assert required["xray-seg-pipeline"] == pipeline.__version__
    targets = sorted({t for name in CONFIG_FILES for t in _targets(_load(bundle, name))})
    probe = (  # a fresh interpreter: only what importing the configs' targets loads
        "import importlib, importlib.metadata as md, json, sys\n"
        f"for t in {targets!r} + ['pipeline.tracking.training_handler', 'pipeline.reporting', 'pipeline.inference.batch']:\n"
        "    m = t\n"
        "    while m:\n"
        "        try:\n"
        "            importlib.import_module(m); break\n"
        "        except ImportError:\n"
        "            m = m.rpartition('.')[0]\n"
        "d = md.packages_distributions()\n"
        "print(json.dumps(sorted({x.lower() for m in sys.modules for x in d.get(m.split('.')[0], [])})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if name:
            pins[name.strip().lower()] = version.strip()
    own = {"torch", "monai", "numpy"}  # their own metadata fields
    direct = {d for d in imported if d in pins and d not in own and pins[d]}
    transitive_ok = {"fastapi", "python-multipart", "jsonschema", "pyyaml"} - set(required)  # pulled in by mlflow
    missing = sorted(direct - set(required) - transitive_ok)
    assert not missing, f"add to required_packages_version: {missing}"
    for name in set(required) & set(pins):
        assert required[name] == pins[name], (name, required[name], pins[name])
    assert "mlflow" in required and "scipy" in required


@pytest.mark.parametrize("network", ["xnet", "lite_unet", "basic_unet", "unet", "flexible_unet"])
def test_metadata_shapes_hold_for_every_network(network):
    """verify_net_in_out with inference.yaml alone at the zoo's default n, whichever network the artifact names."""
    from monai.bundle import verify_net_in_out

    for bundle in (LUNG, TISSUE):
        verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"),
                          config_file=str(bundle / "configs" / "inference.yaml"), bundle_root=str(bundle),
                          checkpoint=str(bundle / "models" / "no-such-model.pt"),
                          **{"zoo_artifact#network_name": network})


@pytest.mark.parametrize("network", ["xnet", "lite_unet", "basic_unet", "unet", "flexible_unet"])
def test_every_network_exports_by_scripting(network, tmp_path):
    from pipeline.networks import get_network

    net = get_network(network, out_channels=3).eval()
    scripted = torch.jit.script(net)
    scripted.save(str(tmp_path / "net.ts"))
    loaded = torch.jit.load(str(tmp_path / "net.ts"))
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-5)
    if network in ("xnet", "lite_unet"):  # the size check survives scripting, with its message
        with pytest.raises(Exception, match="multiple of"):
            loaded(torch.rand(1, 1, 38, 38))
