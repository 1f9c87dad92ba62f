"""Factories the bundle configs call with ``_target_``: the choices a config would otherwise spell as ``$`` code.

Each factory takes plain, overridable arguments (``--data_path cpu``, ``--image_size#cpu 96``, ...) and returns a
MONAI object or a value, so the YAML declares *what* and the code here decides *how*:

- :mod:`.choices`: values that depend on the device (the CPU laptop profile), the data path, the loss.
- :mod:`.loaders`: the training and evaluation loaders for both data paths (CPU workers or device cache).
- :mod:`.handlers`: rank-0-only handlers, early stopping on the validation metric, start-of-run log messages.
- :mod:`.checkpoint`: the model artifact of a checkpoint and the flat state dict the MONAI model zoo tools read.
- :mod:`.distributed`: the process group of the multi-GPU overlays.
- :mod:`.starting_weights`: fine-tuning from a model file or a registered model (``--pretrained``).
- :mod:`.inference`: the inference engine of ``inference.yaml`` (the batch runner behind ``xray-seg predict``).
"""

from pipeline.bundle.checkpoint import checkpoint_artifact, write_state_dict
from pipeline.bundle.choices import (
    dataset_folder,
    folder_name,
    on_device_data,
    per_device,
    per_start,
    place_network,
    prediction_postprocessing,
    segmentation_loss,
)
from pipeline.bundle.distributed import distributed_network, finish_distributed, init_distributed, is_rank0, local_device
from pipeline.bundle.handlers import LogMessageHandler, RankZeroHandlers, ValidationEarlyStop, batch_image_meta
from pipeline.bundle.inference import FolderInference, input_dataset
from pipeline.bundle.loaders import evaluation_loader, training_loader
from pipeline.bundle.starting_weights import StartingWeights, fine_tunes, resolve_starting_weights, starting_network

__all__ = [
    "FolderInference",
    "input_dataset",
    "LogMessageHandler",
    "ValidationEarlyStop",
    "batch_image_meta",
    "checkpoint_artifact",
    "evaluation_loader",
    "RankZeroHandlers",
    "on_device_data",
    "per_device",
    "per_start",
    "segmentation_loss",
    "training_loader",
    "dataset_folder",
    "folder_name",
    "place_network",
    "prediction_postprocessing",
    "distributed_network",
    "finish_distributed",
    "init_distributed",
    "is_rank0",
    "local_device",
    "write_state_dict",
    "StartingWeights",
    "fine_tunes",
    "resolve_starting_weights",
    "starting_network",
]
