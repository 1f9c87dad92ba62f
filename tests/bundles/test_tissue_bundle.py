"""The tissue bundle (XNet's open beam / soft tissue / bone task) trains one epoch on generated radiographs."""

from __future__ import annotations

from collections import Counter

from monai.bundle import ConfigWorkflow

from xray_test_paths import REPO_ROOT

BUNDLE = REPO_ROOT / "bundles" / "xray_tissue_segmentation"


def test_trains_one_epoch_on_synthetic_data_with_balanced_sampling(tmp_path):
    configs = BUNDLE / "configs"
    wf = ConfigWorkflow(
        config_file=[str(configs / "common.yaml"), str(configs / "train.yaml")],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        run_id="training",
        workflow_type=None,
        bundle_root=str(BUNDLE),
        output_dir=f"$'{tmp_path / 'eval'}'",
        ckpt_dir=str(tmp_path / "models"),
        synthetic_images=28,
        image_size=32,
        max_epochs=1,
        per_body_part=2,
        num_workers=0,
        network_kwargs={"features": [4, 8, 8, 16]},
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    datalist = wf.parser.get_parsed_content("datalist")
    # stratified: every body part present in validation and test
    parts = {item["group"] for item in datalist["training"]}
    assert len(parts) == 7
    assert {item["group"] for item in datalist["validation"]} == parts == {item["group"] for item in datalist["test"]}
    # balanced oversampling: one epoch draws per_body_part images of every body part (in expectation)
    sampler = wf.parser.get_parsed_content("train#loader").sampler
    assert len(sampler) == 2 * 7
    draws = Counter(datalist["training"][i]["group"] for _ in range(50) for i in sampler)
    assert max(draws.values()) < 3 * min(draws.values())
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    assert {"val_mean_dice", "val_f1", "val_ece"} <= set(evaluator.state.metrics)
    assert (tmp_path / "models" / "model.pt").is_file()
    from pipeline.networks import XNet

    net = wf.parser.get_parsed_content("network_def")
    assert isinstance(net, XNet) and net.head.out_channels == 3
