"""The model registry: log and register the best network, the champion/challenger rule, promotion and rollback.

Aliases, not stages (stages are deprecated since MLflow 2.9):

* a new version takes ``champion`` when its validation Dice is strictly higher than the current champion's and
  both were measured the same way: on the same datalist (``datalist_hash`` tag) with the same metric definition
  (``metric_definition`` tag). The first version of a model becomes champion. Otherwise it takes ``challenger``,
  and ``promotion.reason`` says why (lower Dice, or figures that cannot be compared);
* ``promote`` / ``rollback`` move ``champion`` by hand; the registered model's ``champion_history`` tag keeps the
  sequence of champions so a rollback knows where to go back to;
* an alias's tags follow it: the version that loses ``champion`` loses its ``champion.*`` tags, and a version that
  becomes champion stops being ``challenger``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.model import ModelArtifact

from pipeline.tracking.naming import CHALLENGER, CHAMPION
from pipeline.tracking.params import to_param_value
from pipeline.tracking.store import fluent_tracking, get_client

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from pipeline.tracking.session import TrackedRun

__all__ = [
    "COMPARABILITY_TAGS",
    "HISTORY_TAG",
    "PROMOTION_METRIC",
    "PromotionDecision",
    "apply_promotion_rule",
    "comparability",
    "describe_version",
    "get_version",
    "list_versions",
    "log_model_version",
    "promote",
    "rollback",
]

logger = logging.getLogger(__name__)

#: Metric the champion/challenger rule compares (the bundle's key validation metric).
PROMOTION_METRIC = "val_mean_dice"

#: Registered-model tag holding the comma-separated sequence of champion versions.
HISTORY_TAG = "champion_history"

_RULE = (
    "new version becomes champion if its {metric} > the champion's {metric} (strictly), both measured on the same "
    "datalist with the same metric definition; the first version does"
)

#: Version tags that say how the compared figure was measured; versions are comparable only when both agree.
COMPARABILITY_TAGS = ("datalist_hash", "metric_definition")


@dataclass
class PromotionDecision:
    """Outcome of the champion/challenger rule for one new version.

    Attributes:
        version: the new version.
        metric: the compared metric.
        candidate_value: the new version's value.
        champion_version: the champion before the decision (None: there was none).
        champion_value: its value (None: none, or the champion has no such tag).
        promoted: whether the new version is now the champion.
        not_comparable: why the two figures cannot be compared (empty: they can).
    """

    version: str
    metric: str
    candidate_value: float
    champion_version: str | None
    champion_value: float | None
    promoted: bool
    not_comparable: str = ""

    @property
    def reason(self) -> str:
        """One sentence with the numbers."""
        if self.champion_version is None:
            return f"first version with a {self.metric}: becomes champion"
        if self.not_comparable:
            return (
                f"not compared with champion v{self.champion_version}: {self.not_comparable}; stays challenger "
                f"(evaluate both on one set: xray-seg models compare NAME {self.champion_version} {self.version} "
                "--data DIR)"
            )
        if self.champion_value is None:
            return f"champion v{self.champion_version} has no {self.metric} tag: kept (promote by hand)"
        sign = ">" if self.promoted else "<="
        verdict = "promoted" if self.promoted else f"champion v{self.champion_version} kept"
        numbers = f"{self.candidate_value:.4f} {sign} {self.champion_value:.4f} of v{self.champion_version}"
        return f"{self.metric} {numbers}: {verdict}"

    def tags(self) -> dict[str, str]:
        """The decision as model-version tags (``promotion.*``)."""
        return {
            "promotion.rule": _RULE.format(metric=self.metric),
            "promotion.metric": self.metric,
            "promotion.candidate_value": repr(self.candidate_value),
            "promotion.champion_version_before": self.champion_version or "none",
            "promotion.champion_value_before": "none" if self.champion_value is None else repr(self.champion_value),
            "promotion.decision": "champion" if self.promoted else "challenger",
            "promotion.comparable": "false" if self.not_comparable else "true",
            "promotion.reason": self.reason,
        }


def log_model_version(
    run: TrackedRun,
    network: torch.jit.ScriptModule,
    example: torch.Tensor,
    artifact: ModelArtifact,
    checkpoint: str | Path,
    registered_model_name: str | None = None,
    version_tags: Mapping[str, Any] | None = None,
    description: str = "",
) -> tuple[str, str | None]:
    """Log the trained model as the run's MLflow model and, optionally, register it as a new version.

    The MLflow model holds the TorchScript network (``mlflow.pytorch.log_model`` in the ``pickle`` format, which for
    a TorchScript module is ``torch.jit.save``: it loads with ``mlflow.pytorch.load_model`` in a process that has
    neither this project nor MONAI) and, in ``extra_files/``, the training's ``model.pt`` (weights + model
    artifact), from which :meth:`pipeline.inference.Predictor.from_checkpoint` rebuilds the Predictor. The
    signature is inferred from ``example``; the artifact's summary becomes the model's metadata and, when
    registered, tags of the version (for browsing; the file is what inference reads).

    Args:
        run: the training run.
        network: the traced network (CPU).
        example: a preprocessed input batch ``(1, 1, S, S)``.
        artifact: the model artifact stored in ``checkpoint``.
        checkpoint: the ``model.pt`` this run wrote.
        registered_model_name: register under this name; None logs the model without registering it.
        version_tags: extra tags for the version (metrics, run name, ...).
        description: description of the version.

    Returns:
        ``(model_uri, version)``: the logged model's ``models:/<model_id>`` URI and the new version (None when
        not registered).
    """
    import mlflow
    from mlflow.models import infer_signature

    example = example.detach().float().cpu()
    with torch.no_grad():
        output = network(example)
    signature = infer_signature(example.numpy(), output.numpy())
    metadata = {k: to_param_value(v) for k, v in artifact.summary().items()}
    metadata.update(format="torchscript", input="(B, 1, S, S) float32, bundle preprocessing", output="logits")
    with fluent_tracking(run.tracking_uri), mlflow.start_run(run_id=run.run_id), _quiet_torchscript_pickle_notes():
        info = mlflow.pytorch.log_model(
            network,
            name="model",
            registered_model_name=registered_model_name,
            signature=signature,
            input_example=example.numpy(),
            serialization_format="pickle",  # a ScriptModule is written with torch.jit.save (pt2 refuses it)
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            metadata=metadata,
            extra_files=[str(checkpoint)],
        )
    version = str(info.registered_model_version) if info.registered_model_version is not None else None
    if registered_model_name and version:
        client = run.client
        tags = {**metadata, **(version_tags or {})}
        for key, value in tags.items():
            client.set_model_version_tag(registered_model_name, version, key, to_param_value(value))
        if description:
            client.update_model_version(registered_model_name, version, description=description)
        logger.info("registered %s version %s (%s)", registered_model_name, version, info.model_uri)
    return info.model_uri, version


@contextmanager
def _quiet_torchscript_pickle_notes() -> Iterator[None]:
    """Silence MLflow's pickle warning and torch's ``torch.load`` redirect note while logging a TorchScript model.

    Both target eager modules saved with pickle; a TorchScript archive is loaded by ``torch.jit.load``, which
    rebuilds the graph without running arbitrary Python.
    """

    class _DropPickleNote(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Pickle or CloudPickle" not in record.getMessage()

    note_filter = _DropPickleNote()
    mlflow_logger = logging.getLogger("mlflow.pytorch")
    mlflow_logger.addFilter(note_filter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive.*")
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        mlflow_logger.removeFilter(note_filter)


def get_version(client: MlflowClient, name: str, ref: str | int) -> ModelVersion:
    """A version by number (``3``) or alias (``champion`` / ``@champion``).

    Raises:
        mlflow.exceptions.MlflowException: no such model, version or alias.
    """
    ref = str(ref)
    if ref.isdigit():
        return client.get_model_version(name, ref)
    return client.get_model_version_by_alias(name, ref.lstrip("@"))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _history(client: MlflowClient, name: str) -> list[str]:
    text = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    return [v for v in text.split(",") if v]


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _drop_tags(client: MlflowClient, name: str, version: str, prefix: str) -> None:
    """Delete a version's tags that start with ``prefix`` (an alias's tags leave with the alias)."""
    for key in list(client.get_model_version(name, version).tags):
        if key.startswith(prefix):
            client.delete_model_version_tag(name, version, key)


def _set_champion(client: MlflowClient, name: str, version: str, reason: str, history: list[str] | None = None) -> None:
    """Point ``champion`` at ``version``; the former champion loses ``champion.*``, the new one ``challenger``."""
    history = _history(client, name) if history is None else history
    if not history or history[-1] != version:
        history.append(version)
    former = _alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    if former is not None and former != version:
        _drop_tags(client, name, former, "champion.")
    if _alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    client.set_model_version_tag(name, version, "champion.since", _now())
    client.set_model_version_tag(name, version, "champion.reason", reason)


def comparability(candidate: Mapping[str, Any], champion: Mapping[str, Any]) -> str:
    """Why two versions' validation figures cannot be compared ("" when they can).

    Args:
        candidate: the new version's tags (or any mapping with ``datalist_hash`` / ``metric_definition``).
        champion: the champion's tags.
    """
    problems = []
    for key in COMPARABILITY_TAGS:
        mine, theirs = str(candidate.get(key) or ""), str(champion.get(key) or "")
        if not mine or not theirs:
            problems.append(f"{key} unknown for {'the new version' if not mine else 'the champion'}")
        elif mine != theirs:
            problems.append(f"{key} differs ({mine[:16]} vs champion {theirs[:16]})")
    return "; ".join(problems)


def apply_promotion_rule(
    client: MlflowClient,
    name: str,
    version: str,
    value: float,
    metric: str = PROMOTION_METRIC,
    datalist_hash: str | None = None,
    metric_definition: str | None = None,
) -> PromotionDecision:
    """Make a new version ``champion`` if its ``metric`` beats the champion's on the same data, else ``challenger``.

    Args:
        client: MLflow client.
        name: registered model name.
        version: the new version.
        value: its validation metric (higher is better).
        metric: name of the metric; the champion's value is read from its version tag of that name.
        datalist_hash: hash of the datalist ``value`` was measured on (default: the version's ``datalist_hash``
            tag). Written on the version.
        metric_definition: how ``value`` was measured (default: the version's ``metric_definition`` tag).

    Returns:
        The decision, also written as ``promotion.*`` tags on the version.
    """
    version = str(version)
    own_tags = dict(client.get_model_version(name, version).tags)
    for key, given in (("datalist_hash", datalist_hash), ("metric_definition", metric_definition)):
        if given:
            own_tags[key] = given
            client.set_model_version_tag(name, version, key, given)
    champion = _champion(client, name)
    champion_value: float | None = None
    not_comparable = ""
    if champion is not None:
        not_comparable = comparability(own_tags, champion.tags)
        if metric in champion.tags:
            try:
                champion_value = float(champion.tags[metric])
            except ValueError:
                champion_value = None
    if champion is None:
        promoted = True
    else:
        promoted = not not_comparable and champion_value is not None and float(value) > champion_value
    decision = PromotionDecision(
        version=version,
        metric=metric,
        candidate_value=float(value),
        champion_version=None if champion is None else str(champion.version),
        champion_value=champion_value,
        promoted=promoted,
        not_comparable=not_comparable if champion is not None else "",
    )
    for key, tag in decision.tags().items():
        client.set_model_version_tag(name, version, key, tag)
    if promoted:
        _set_champion(client, name, version, f"automatic: {decision.reason}")
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)
    logger.info("%s v%s: %s", name, version, decision.reason)
    return decision


def promote(name: str, version: str | int, alias: str = CHAMPION, reason: str = "manual promotion",
            client: MlflowClient | None = None) -> None:
    """Point ``alias`` (default ``champion``) at ``version`` by hand; champion moves are kept in the history."""
    client = client or get_client()
    version = str(get_version(client, name, version).version)  # fails clearly for a missing version
    if alias == CHAMPION:
        _set_champion(client, name, version, reason)
    else:
        client.set_registered_model_alias(name, alias, version)
    logger.info("%s: alias %s -> version %s", name, alias, version)


def rollback(name: str, to_version: str | int | None = None, client: MlflowClient | None = None) -> str:
    """Move ``champion`` back to the previous champion (or to ``to_version``).

    Returns:
        The version that is champion now.

    Raises:
        ValueError: there is no earlier champion in the history and no ``to_version``.
    """
    client = client or get_client()
    current = _champion(client, name)
    current_version = None if current is None else str(current.version)
    history = _history(client, name)
    if to_version is not None:
        target = str(get_version(client, name, to_version).version)
    else:
        while history and history[-1] == current_version:
            history.pop()
        if not history:
            raise ValueError(f"{name}: no earlier champion to roll back to (history: {_history(client, name)}).")
        target = history[-1]
    _set_champion(client, name, target, f"rollback from v{current_version}", history=history)
    if current_version is not None and current_version != target:
        client.set_model_version_tag(name, current_version, "rolled_back", _now())
    logger.info("%s: champion rolled back from v%s to v%s", name, current_version, target)
    return target


def describe_version(version: ModelVersion) -> dict[str, Any]:
    """A version as a plain dict: number, aliases, run, source, status, description and tags."""
    return {
        "name": version.name,
        "version": str(version.version),
        "aliases": list(getattr(version, "aliases", []) or []),
        "run_id": version.run_id,
        "source": version.source,
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(version.creation_timestamp / 1000)),
        "description": version.description or "",
        "tags": dict(version.tags),
    }


def list_versions(name: str, client: MlflowClient | None = None) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first, as :func:`describe_version` dicts."""
    client = client or get_client()
    aliases: dict[str, list[str]] = {}
    for alias, number in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    out = []
    for version in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version)):
        row = describe_version(version)
        row["aliases"] = sorted(set(row["aliases"]) | set(aliases.get(row["version"], [])))
        out.append(row)
    return out
