"""The bundles' checkpoint saver replaces model.pt atomically: never deleted first, never half-written, umask modes."""

from __future__ import annotations

import os
import stat

import torch
from ignite.engine import Engine, Events

from pipeline.engines import AtomicCheckpointSaver


def test_a_new_best_replaces_model_pt_without_a_gap(tmp_path):
    net = torch.nn.Linear(3, 2)
    saver = AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net, "head": torch.nn.Linear(1, 1)},
                                  save_key_metric=True,
                                  key_metric_name="val", key_metric_filename="model.pt")
    handler = saver._key_metric_checkpoint.save_handler
    scores = iter([0.5, 0.7])
    engine = Engine(lambda e, b: None)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val=next(scores)))
    saver.attach(engine)
    removed: list[str] = []
    original = type(handler).__mro__[1].remove
    type(handler).__mro__[1].remove = lambda self, name: removed.append(name) or original(self, name)
    old_umask = os.umask(0o022)
    try:
        engine.run([0], max_epochs=1)
        first = torch.load(tmp_path / "model.pt", weights_only=True)["model"]["weight"].clone()
        with torch.no_grad():
            net.weight.add_(1.0)
        engine.run([0], max_epochs=2)  # a better score: model.pt replaced
    finally:
        os.umask(old_umask)
        type(handler).__mro__[1].remove = original
    assert removed == []  # the fixed name was never deleted before the new file was in place
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary files left beside it
    second = torch.load(tmp_path / "model.pt", weights_only=True)["model"]["weight"]
    assert torch.equal(second, first + 1.0)
    assert stat.S_IMODE((tmp_path / "model.pt").stat().st_mode) == 0o644  # the umask's mode, readable by the group
