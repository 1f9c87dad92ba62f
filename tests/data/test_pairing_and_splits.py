"""Dataset folders: pairing by stem, bad pairs reported by name, deterministic and reusable splits."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.data import (
    DatasetUnavailableError,
    find_dataset_root,
    pair_folder,
    prepare_datalist,
    read_split_file,
    resolve_dataset_dir,
    sample_dir,
)


@pytest.fixture
def messy_dataset(tmp_path, sample_dir):
    """Eight real pairs plus every kind of bad file."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ids = sorted(p.stem for p in (sample_dir / "images").glob("*.png"))[:8]
    for i in ids:
        shutil.copy(sample_dir / "images" / f"{i}.png", root / "images" / f"{i}.png")
        shutil.copy(sample_dir / "masks" / f"{i}.png", root / "masks" / f"{i}_mask.png")  # suffixed masks pair too
    shutil.copy(sample_dir / "images" / f"{ids[0]}.png", root / "images" / "no_mask.png")
    shutil.copy(sample_dir / "masks" / f"{ids[0]}.png", root / "masks" / "no_image.png")
    (root / "images" / "broken.png").write_bytes((sample_dir / "images" / f"{ids[1]}.png").read_bytes()[:300])
    shutil.copy(sample_dir / "masks" / f"{ids[1]}.png", root / "masks" / "broken.png")
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(root / "images" / "small.png")
    shutil.copy(sample_dir / "masks" / f"{ids[2]}.png", root / "masks" / "small.png")
    (root / "images" / "empty.png").write_bytes(b"")
    shutil.copy(sample_dir / "masks" / f"{ids[3]}.png", root / "masks" / "empty.png")
    return root, ids


def test_pairing_reports_every_bad_file_by_name(messy_dataset, caplog):
    root, ids = messy_dataset
    report = pair_folder(root)
    assert [p["id"] for p in report.pairs] == ids
    assert [s.endswith("no_mask.png") for s in report.missing_mask] == [True]
    assert [s.endswith("no_image.png") for s in report.missing_image] == [True]
    unreadable = {path.split("/")[-1]: reason for path, reason in report.unreadable}
    assert set(unreadable) == {"broken.png", "empty.png"}
    assert "0 bytes" in unreadable["empty.png"]
    assert report.size_mismatch == [("small", (100, 80), (256, 256))]
    with caplog.at_level(logging.INFO):
        report.log()
    text = caplog.text
    for name in ("no_mask.png", "no_image.png", "broken.png", "empty.png", "small"):
        assert name in text
    assert "skipped 5" in text


def test_missing_folders_say_what_layout_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="images/.*masks/"):
        pair_folder(tmp_path)


def test_random_split_is_deterministic_and_reused(tmp_path, sample_dir, caplog):
    a = prepare_datalist(sample_dir, tmp_path / "a", seed=0)
    b = prepare_datalist(sample_dir, tmp_path / "b", seed=0)
    c = prepare_datalist(sample_dir, tmp_path / "c", seed=1)
    assert a["counts"] == {"training": 22, "validation": 4, "test": 4}
    assert a["hash"] == b["hash"] != c["hash"]
    ids = [set(i["id"] for i in a[s]) for s in ("training", "validation", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    written = json.loads((tmp_path / "a" / "datalist.json").read_text())
    assert written["training"] == a["training"]  # a MONAI datalist: sections of {"image", "label"} dicts
    # a later run reuses the file, even if it was edited by hand
    written["training"] = written["training"][:5]
    (tmp_path / "a" / "datalist.json").write_text(json.dumps(written))
    with caplog.at_level(logging.INFO):
        again = prepare_datalist(sample_dir, tmp_path / "a", seed=0)
    assert len(again["training"]) == 5 and "reusing" in caplog.text
    # other settings make a new split
    assert len(prepare_datalist(sample_dir, tmp_path / "a", seed=3)["training"]) == 22


def test_user_split_file(tmp_path, sample_dir):
    ids = sorted(p.stem for p in (sample_dir / "images").glob("*.png"))
    csv = tmp_path / "splits.csv"
    rows = ["id,split_in_source_repo"] + [f"{i},{['train', 'val', 'test'][k % 3]}" for k, i in enumerate(ids)]
    csv.write_text("\n".join(rows) + "\n")
    assert read_split_file(csv)[ids[1]] == "validation"
    dl = prepare_datalist(sample_dir, None, split_file=csv)
    assert dl["counts"] == {"training": 10, "validation": 10, "test": 10}
    assert dl["source"] == "split file splits.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,split\nx,holdout\n")
    with pytest.raises(ValueError, match="line 2.*holdout"):
        read_split_file(bad)
    with pytest.raises(ValueError, match="summing to 1"):
        prepare_datalist(sample_dir, None, split=(0.5, 0.2, 0.2))


def test_dataset_resolution_offline(tmp_path, monkeypatch):
    import pipeline.data.kaggle as kaggle

    def offline(handle):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr("kagglehub.dataset_download", offline)
    with pytest.raises(DatasetUnavailableError, match="--dataset_dir /path/to/folder"):
        kaggle.download_crd()
    assert resolve_dataset_dir("auto") == str(sample_dir())  # offline default: the embedded sample
    assert resolve_dataset_dir("sample") == str(sample_dir())
    with pytest.raises(FileNotFoundError, match="images/ and masks/"):
        resolve_dataset_dir(tmp_path)
    nested = tmp_path / "dl" / "CXR_Combined"
    (nested / "images").mkdir(parents=True)
    (nested / "masks").mkdir()
    assert find_dataset_root(tmp_path / "dl") == nested
    monkeypatch.setattr("kagglehub.dataset_download", lambda handle: str(tmp_path / "dl"))
    assert resolve_dataset_dir("crd") == str(nested)
