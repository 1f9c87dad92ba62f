"""The promotion rule compares like with like; alias tags follow their alias; ``xray-seg models`` finds the store."""

from __future__ import annotations

import shutil

import pytest

from pipeline.cli import main as xray_seg
from pipeline.tracking import apply_promotion_rule, default_tracking_uri, promote, rollback, sqlite_uri

DEFINITION = "val_mean_dice=MeanDice(include_background=True);image_size=32;num_classes=1"


@pytest.fixture()
def registry(tmp_path, empty_store_db):
    """A store with one run and a registered model ``m`` without versions (versions are added by the tests)."""
    from mlflow import MlflowClient

    shutil.copy(empty_store_db, tmp_path / "mlruns.db")
    client = MlflowClient(tracking_uri=sqlite_uri(tmp_path / "mlruns.db"))
    experiment = client.create_experiment("rules", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    client.create_registered_model("m")

    def add(value: float, datalist_hash: str, definition: str = DEFINITION) -> str:
        version = client.create_model_version("m", source=str(tmp_path / "model"), run_id=run.info.run_id).version
        client.set_model_version_tag("m", version, "val_mean_dice", repr(value))
        apply_promotion_rule(client, "m", version, value, datalist_hash=datalist_hash, metric_definition=definition)
        return str(version)

    return client, add


def aliases(client) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model("m").aliases.items()}


def test_promotion_across_different_datalists_is_refused(registry):
    client, add = registry
    assert add(0.70, "8aee81aaaa") == "1"  # 4 sample images
    assert add(0.95, "75c18dbbbb") == "2"  # 22 JSRT images: a higher Dice, on another validation set
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    tags = client.get_model_version("m", "2").tags
    assert tags["promotion.decision"] == "challenger" and tags["promotion.comparable"] == "false"
    assert "datalist_hash differs" in tags["promotion.reason"] and "xray-seg models compare" in tags["promotion.reason"]
    assert tags["datalist_hash"] == "75c18dbbbb"


def test_promotion_across_metric_definitions_is_refused(registry):
    client, add = registry
    add(0.70, "8aee81aaaa")
    add(0.95, "8aee81aaaa", definition=DEFINITION.replace("image_size=32", "image_size=256"))
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    assert "metric_definition differs" in client.get_model_version("m", "2").tags["promotion.reason"]


def test_same_datalist_better_dice_is_promoted_and_tags_follow_aliases(registry):
    client, add = registry
    add(0.70, "8aee81aaaa")
    add(0.60, "8aee81aaaa")  # worse: challenger
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    add(0.80, "8aee81aaaa")  # better on the same set: champion, and not challenger (v2 stays the challenger)
    assert aliases(client) == {"champion": "3", "challenger": "2"}
    former = client.get_model_version("m", "1").tags
    assert not [k for k in former if k.startswith("champion.")], former  # the former champion lost champion.*
    assert "champion.since" in client.get_model_version("m", "3").tags

    add(0.50, "8aee81aaaa")  # challenger v4, promoted by hand: it stops being challenger
    promote("m", "4", reason="reviewed", client=client)
    assert aliases(client) == {"champion": "4"}
    assert not [k for k in client.get_model_version("m", "3").tags if k.startswith("champion.")]
    assert rollback("m", client=client) == "3"
    assert not [k for k in client.get_model_version("m", "4").tags if k.startswith("champion.")]
    assert "rolled_back" in client.get_model_version("m", "4").tags


def test_models_command_finds_the_store_of_the_current_folder(tmp_path, empty_store_db, monkeypatch, capsys):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bundle = tmp_path / "bundle"
    (bundle / "eval").mkdir(parents=True)
    monkeypatch.chdir(bundle)
    assert xray_seg(["models", "list"]) == 1  # no store yet: says where it looked
    assert "eval/mlruns.db" in capsys.readouterr().out

    shutil.copy(empty_store_db, bundle / "eval" / "mlruns.db")  # as a training from this folder leaves it
    MlflowClient(tracking_uri=sqlite_uri(bundle / "eval" / "mlruns.db")).create_registered_model("here")
    assert default_tracking_uri() == sqlite_uri(bundle / "eval" / "mlruns.db")
    assert xray_seg(["models", "list", "here"]) == 0

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the environment wins, as in training
    assert default_tracking_uri() == "http://127.0.0.1:9"


def test_no_default_store_path_comes_from_the_package_location():
    """``pipeline.tracking`` never derives a store from where it is installed (``__file__``)."""
    from pathlib import Path

    import pipeline.tracking as tracking

    for path in Path(tracking.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "DEFAULT_BUNDLE" not in text, path
        if path.name != "provenance.py":  # the git commit of the checkout, not a store
            assert "__file__" not in text, path


def test_compare_two_versions_on_a_named_set(store, client, capsys):
    """Both versions evaluated on the same folder; the better one becomes champion with ``--promote``."""
    name, base = "chest-xray-lung-seg", ["models", "--tracking-uri", store.uri]
    data = str(store.root / "jsrt12")
    before = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    history = client.get_registered_model(name).tags["champion_history"]
    try:
        promote(name, "2", reason="test: the worse one", client=client)
        assert xray_seg([*base, "compare", name, "@champion", "1", "--data", data, "--promote"]) == 0
        out = capsys.readouterr().out
        assert "v1" in out and "> v2" in out and "-> version 1" in out  # the trained v1 beats the untrained v2
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
        tags = [client.get_model_version(name, v).tags for v in ("1", "2")]
        keys = [k for k in tags[0] if k.startswith("compare.") and k.endswith(".mean_dice")]
        assert len(keys) == 1 and keys[0] in tags[1]
        assert float(tags[0][keys[0]]) > float(tags[1][keys[0]])
        assert tags[0][keys[0].replace("mean_dice", "n_images")] == "12"
        assert "compare:" in tags[0]["champion.reason"]
    finally:  # leave the shared store as the other tests expect it
        promote(name, before["champion"], reason="restore", client=client)
        client.set_registered_model_tag(name, "champion_history", history)
        if "challenger" in before:
            client.set_registered_model_alias(name, "challenger", before["challenger"])
