"""The trained model as one self-contained artifact: the weights plus one typed record of how to run and judge them.

``model.pt`` is ``{"model": <network state dict>, "artifact": <ModelArtifact.to_dict()>}``. The record holds the
network and its constructor arguments, the preprocessing, the post-processing (threshold, temperature, calibration,
cleanup), the classes, the QC reference values and the provenance, so inference needs nothing else: no bundle
config, no repository layout, no sample data. This module is the only place that knows those keys: the bundles'
``CheckpointSaver`` (through :class:`ModelArtifact`'s ``state_dict``), the calibration step, the evaluation, the
Predictor, the batch runner, the web page, the registry and the exporters all read and write through it.

Checkpoints written before the artifact existed load too: ``{"model", "settings", "temperature"}`` (version 0.2 of
the bundles) is converted on reading, and a bare MONAI state dict loads when the caller says which network it is
(``default=ModelArtifact(network_name=..., image_size=...)``).

Examples::

    >>> artifact, weights = load_model("models/model.pt")
    >>> network = artifact.build_network(); network.load_state_dict(weights)
    >>> calibrated = artifact.replace(temperature=0.77)            # revision + 1
    >>> update_model("models/model.pt", calibrated, out="models/model_r2.pt")
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = [
    "ARTIFACT_KEY",
    "FORMAT_VERSION",
    "WEIGHTS_KEY",
    "ModelArtifact",
    "ModelFileError",
    "load_model",
    "model_version",
    "read_artifact",
    "save_model",
    "update_model",
]

#: Key of the network's state dict in ``model.pt`` (what MONAI's ``CheckpointLoader`` / ``--key_in_ckpt`` name).
WEIGHTS_KEY = "model"
#: Key of the artifact record in ``model.pt``.
ARTIFACT_KEY = "artifact"
#: Version of the record's layout (``format`` inside the record).
FORMAT_VERSION = 1

_LEGACY_SETTINGS_KEY = "settings"
_LEGACY_TEMPERATURE_KEY = "temperature"


class ModelFileError(ValueError):
    """A model file that cannot be used as it is; the message says which file, why, and how to fix it."""


@dataclass
class ModelArtifact:
    """Everything needed to run and judge a trained network, travelling beside its weights.

    Args:
        network_name: name for :func:`pipeline.networks.get_network` (``basic_unet``, ``xnet``, ...).
        network_kwargs: extra constructor arguments of the network (e.g. ``{"norm": "instance"}``).
        num_classes: network output channels: 1 = binary (sigmoid), more = softmax.
        class_names: one name per foreground class (binary) or per channel (multi-class).
        image_size: side of the square the network sees.
        intensity: intensity scaling to [-1, 1]: ``"minmax"`` or ``"percentile"``.
        resize: resize method of the preprocessing (``"bilinear-antialias"``).
        threshold: probability threshold of the binary case.
        temperature: logits are divided by this before the activation (1 = none).
        calibration: a probability calibration fitted after training, e.g. ``{"method": "temperature", ...}``;
            empty when none (see :mod:`pipeline.postprocessing`).
        cleanup: apply the lung cleanup (largest components, holes filled) by default.
        qc_reference: per-score reference values from the validation images (what "unusual" means for this model).
        provenance: where the model comes from: dataset name, datalist hash, validation metrics, package version,
            git commit, training config hash, time.
        revision: incremented by every change after training (calibration, QC references, ...).
        format: layout version of this record.
    """

    network_name: str = "basic_unet"
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 1
    class_names: list[str] = field(default_factory=lambda: ["lung"])
    image_size: int = 256
    intensity: str = "minmax"
    resize: str = "bilinear-antialias"
    threshold: float = 0.5
    temperature: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)
    cleanup: bool = False
    qc_reference: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    revision: int = 1
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.network_kwargs = _plain(dict(self.network_kwargs or {}))
        self.num_classes = int(self.num_classes)
        self.class_names = [str(c) for c in (self.class_names or [])]
        self.image_size = int(self.image_size)
        self.intensity = str(self.intensity)
        self.threshold = float(self.threshold)
        self.temperature = float(self.temperature)
        self.calibration = _plain(dict(self.calibration or {}))
        self.cleanup = bool(self.cleanup)
        self.qc_reference = _plain(dict(self.qc_reference or {}))
        self.provenance = _plain(dict(self.provenance or {}))
        self.revision = int(self.revision)
        if self.image_size < 1 or self.num_classes < 1:
            raise ValueError(f"image_size and num_classes must be positive, got {self.image_size}, {self.num_classes}.")
        if self.intensity not in ("minmax", "percentile"):
            raise ValueError(f"intensity must be 'minmax' or 'percentile', got {self.intensity!r}.")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}.")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}.")

    # ---- conversion -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The record as plain Python values (loadable with ``torch.load(weights_only=True)`` and JSON-serialisable)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelArtifact:
        """Rebuild a record; unknown keys (from a newer version of this package) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: copy.deepcopy(v) for k, v in dict(data).items() if k in names})

    # checkpointable like a module, so MONAI's CheckpointSaver saves it beside the network:
    #   save_dict: {model: '@network', artifact: '@model_artifact'}
    def state_dict(self) -> dict[str, Any]:
        """Same as :meth:`to_dict` (the name MONAI's ``CheckpointSaver`` / ``CheckpointLoader`` call)."""
        return self.to_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace every field with the stored values (what MONAI's ``CheckpointLoader`` calls)."""
        stored = ModelArtifact.from_dict(state)
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(stored, f.name))

    def replace(self, **changes: Any) -> ModelArtifact:
        """A copy with ``changes`` applied and the revision incremented (``revision=`` in changes wins)."""
        changes.setdefault("revision", self.revision + 1)
        return dataclasses.replace(copy.deepcopy(self), **changes)

    # ---- use --------------------------------------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        """An untrained network of the recorded kind and arguments (load the weights into it)."""
        from pipeline.networks import get_network

        return get_network(self.network_name, spatial_dims=2, in_channels=1, out_channels=self.num_classes,
                           **self.network_kwargs)

    @property
    def binary(self) -> bool:
        """True for one-channel (sigmoid) models."""
        return self.num_classes == 1

    def summary(self) -> dict[str, Any]:
        """The headline fields, flat (for registry tags, MLflow metadata and the review page); not a way to load."""
        return {
            "network_name": self.network_name,
            "network_kwargs": self.network_kwargs,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "intensity": self.intensity,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "calibration": str(self.calibration.get("method", "none")),
            "cleanup": self.cleanup,
            "revision": self.revision,
            "dataset_name": str(self.provenance.get("dataset_name", "")),
            "datalist_hash": str(self.provenance.get("datalist_hash", "")),
        }

    def describe(self) -> str:
        """One line for logs: network, input size, classes, revision (no paths, no patient data)."""
        kwargs = f" {self.network_kwargs}" if self.network_kwargs else ""
        return (f"{self.network_name}{kwargs}, {self.image_size} px, {self.intensity} intensity, "
                f"{self.num_classes} output channel(s), revision {self.revision}")


# ---- files ------------------------------------------------------------------------------------------------------------
def load_model(
    path: str | Path, default: ModelArtifact | None = None, map_location: str | torch.device = "cpu"
) -> tuple[ModelArtifact, dict[str, torch.Tensor]]:
    """Read ``model.pt``: the artifact and the network's state dict.

    Args:
        path: the model file.
        default: the artifact to use for a file without one (a bare state dict, or a checkpoint whose record is
            missing); without it such a file is refused with a message that says how to convert it.
        map_location: where the weights are loaded.

    Raises:
        FileNotFoundError: the file does not exist.
        ModelFileError: the file is not a model file of this project, or holds bare weights and no ``default``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: model file not found. Train one (`make train`, or `python -m monai.bundle run training "
            "--config_file \"['configs/common.yaml','configs/train.yaml']\"` in a bundle folder) or pass the path "
            "of an existing model.pt."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt, truncated, pickled objects, not a torch file
        raise ModelFileError(f"{path}: not a readable model file ({type(err).__name__}). Use a model.pt written by "
                             "this project's training, or convert weights with pipeline.model.save_model.") from err
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{path}: holds a {type(state).__name__}, not a model checkpoint.")
    if isinstance(state.get(WEIGHTS_KEY), Mapping):
        weights = dict(state[WEIGHTS_KEY])
        if isinstance(state.get(ARTIFACT_KEY), Mapping):
            return ModelArtifact.from_dict(state[ARTIFACT_KEY]), weights
        if isinstance(state.get(_LEGACY_SETTINGS_KEY), Mapping):  # bundle 0.2: {"model", "settings", "temperature"}
            legacy = dict(state[_LEGACY_SETTINGS_KEY])
            if _LEGACY_TEMPERATURE_KEY in state:
                legacy["temperature"] = float(state[_LEGACY_TEMPERATURE_KEY])
            legacy.setdefault("provenance", {"converted_from": "bundle settings (format 0)"})
            if int(legacy.get("num_classes", 1)) != 1:
                legacy.setdefault("class_names", [])
            return ModelArtifact.from_dict(legacy), weights
        if default is not None:
            extra = {"temperature": float(state[_LEGACY_TEMPERATURE_KEY])} if _LEGACY_TEMPERATURE_KEY in state else {}
            return (default.replace(revision=default.revision, **extra) if extra else default), weights
        raise ModelFileError(_bare_weights_message(path))
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):  # a bare MONAI state dict
        if default is not None:
            return default, dict(state)
        raise ModelFileError(_bare_weights_message(path))
    raise ModelFileError(f"{path}: no network weights under '{WEIGHTS_KEY}' and not a state dict.")


def read_artifact(path: str | Path, default: ModelArtifact | None = None) -> ModelArtifact:
    """Only the artifact of ``model.pt`` (see :func:`load_model`)."""
    return load_model(path, default=default)[0]


def save_model(path: str | Path, weights: nn.Module | Mapping[str, torch.Tensor], artifact: ModelArtifact) -> Path:
    """Write ``{"model": weights, "artifact": record}`` atomically (a crash never leaves a half-written file).

    Args:
        path: target file (its folder is created).
        weights: the network (its ``state_dict`` is saved) or a state dict.
        artifact: the record.
    """
    state_dict = weights.state_dict() if isinstance(weights, nn.Module) else dict(weights)
    state_dict = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in state_dict.items()}
    return _atomic_save({WEIGHTS_KEY: state_dict, ARTIFACT_KEY: artifact.to_dict()}, Path(path))


def update_model(path: str | Path, artifact: ModelArtifact, out: str | Path | None = None) -> Path:
    """Store a changed artifact with the weights of ``path``: into ``out`` (a new file), or ``path`` itself.

    Give ``out`` whenever the file at ``path`` may already carry a version (registered, or recorded by
    predictions): a model file that has a version is never rewritten silently.

    Returns:
        The file written.
    """
    _, weights = load_model(path, default=artifact)
    return save_model(Path(out) if out is not None else Path(path), weights, artifact)


def model_version(path: str | Path) -> str:
    """``sha256:<12 hex>`` of a model file: a stable version when no registry version is given."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:12]}"


# ---- helpers ----------------------------------------------------------------------------------------------------------
def _bare_weights_message(path: Path) -> str:
    return (
        f"{path}: holds network weights but no model artifact, so the network and preprocessing are unknown. "
        "Convert it once: `from pipeline.model import ModelArtifact, load_model, save_model; "
        "a = ModelArtifact(network_name='basic_unet', image_size=256); save_model('model_converted.pt', "
        f"load_model('{path.name}', default=a)[1], a)` (use the network and size it was trained with)."
    )


def _atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` through :func:`pipeline.io.writers.atomic_path` (temporary file, flushed, renamed; umask mode)."""
    from pipeline.io.writers import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    return path


def _plain(value: Any) -> Any:
    """Config values (ConfigParser may give tuples, nested mappings, numpy scalars) as plain lists / dicts / scalars."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value
