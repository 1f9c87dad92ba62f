"""Retrain on corrections: a corrected case saved by the review page joins the lung bundle's training split.

The corrections folder is written by the real save path (:func:`pipeline.web.corrections.save_correction`, from a
batch case of the web fixtures), then the lung bundle trains one epoch on ``dataset_dir=['sample', corrections]``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from monai.bundle import ConfigWorkflow
from PIL import Image

from pipeline.data import DatasetFolders, prepare_datalist, resolve_dataset_dir
from pipeline.web.corrections import corrected_stem, save_correction
from xray_test_paths import LUNG_BUNDLE, TINY_BASIC_UNET

CONFIGS = LUNG_BUNDLE / "configs"


def corrections_from_batch(batch_dir: Path, target: Path) -> str:
    with open(batch_dir / "manifest.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["path"].endswith("c_mono1.dcm"))
    mask = np.asarray(Image.open(batch_dir / row["mask_png"])) > 0
    corrected = mask.copy()
    corrected[:20, :] = True  # the reader's fix
    stem = corrected_stem(row["sop_instance_uid"], 0)
    save_correction(Path(row["path"]), corrected, target, stem, 1, previous=mask)
    return stem


def test_corrections_join_the_training_split_only(batch_dir, tmp_path):
    corrections = tmp_path / "corrections"
    stem = corrections_from_batch(batch_dir, corrections)
    folders = resolve_dataset_dir(f"['sample', '{corrections}']")  # as --dataset_dir gives it on the command line
    assert isinstance(folders, DatasetFolders) and Path(folders).name == "jsrt30"
    plain = prepare_datalist(resolve_dataset_dir("sample"), None)
    both = prepare_datalist(folders, tmp_path / "eval")
    assert [p["id"] for p in both["validation"]] == [p["id"] for p in plain["validation"]]
    assert [p["id"] for p in both["test"]] == [p["id"] for p in plain["test"]]
    assert stem in [p["id"] for p in both["training"]] and len(both["training"]) == len(plain["training"]) + 1
    assert both["extra_training"]["count"] == 1 and both["hash"] != plain["hash"]
    # a changed correction changes the recorded hash (the datalist is made again, not reused)
    mask_file = corrections / "masks" / f"{stem}.png"
    Image.fromarray(np.zeros_like(np.asarray(Image.open(mask_file)))).save(mask_file)
    again = prepare_datalist(folders, tmp_path / "eval")
    assert again["extra_training"]["hash"] != both["extra_training"]["hash"]


def test_lung_bundle_fine_tunes_one_epoch_on_original_and_corrected_cases(batch_dir, tmp_path):
    corrections = tmp_path / "corrections"
    stem = corrections_from_batch(batch_dir, corrections)
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "common.yaml"), str(CONFIGS / "train.yaml")],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        run_id="training",
        workflow_type=None,
        bundle_root=str(LUNG_BUNDLE),
        dataset_dir=["sample", str(corrections)],
        output_dir=f"$'{tmp_path / 'eval'}'",
        ckpt_dir=str(tmp_path / "models"),
        image_size=32,
        max_epochs=1,
        batch_size=4,
        num_workers=0,
        network_kwargs=TINY_BASIC_UNET,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    datalist = wf.parser.get_parsed_content("datalist")
    assert stem in [p["id"] for p in datalist["training"]]
    assert stem not in [p["id"] for p in datalist["validation"] + datalist["test"]]
    assert wf.parser.get_parsed_content("dataset_name") == "jsrt30"
    assert wf.parser.get_parsed_content("train#trainer").state.epoch == 1
    assert (tmp_path / "models" / "model.pt").is_file()
