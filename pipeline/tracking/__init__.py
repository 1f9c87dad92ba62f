"""Experiment tracking and model registry with MLflow: the only package of the project that imports mlflow.

MLflow is imported lazily, inside the functions that need it, so the bundle configs can import this package (and a
run without ``--tracking`` never touches MLflow). See ``docs/mlflow.md``.

* :class:`MLflowTrainingHandler` / :class:`MLflowEvaluationHandler`: bundle handlers that complete the run MONAI's
  ``MLFlowHandler`` opens (parameters, per-epoch summaries, artifacts, model, registry, test metrics);
* :func:`log_model_version`, :func:`apply_promotion_rule`, :func:`promote`, :func:`rollback`: the registry;
* :func:`fetch_model`: the model file behind ``models:/chest-xray-lung-seg@champion`` (what
  :meth:`pipeline.inference.Predictor.from_checkpoint` calls for model URIs).
"""

from pipeline.tracking.evaluation_handler import MLflowEvaluationHandler, find_training_run, test_metric_name
from pipeline.tracking.export import best_network, save_torchscript, trace_network, unwrap_network
from pipeline.tracking.naming import CHALLENGER, CHAMPION, DEFAULT_EXPERIMENT_NAME, DEFAULT_MODEL_NAME, make_run_name
from pipeline.tracking.params import datalist_params, describe_training_objects, flatten_params
from pipeline.tracking.provenance import file_sha256, git_commit, package_versions, weights_sha256
from pipeline.tracking.registry import (
    PROMOTION_METRIC,
    PromotionDecision,
    apply_promotion_rule,
    describe_version,
    get_version,
    list_versions,
    log_model_version,
    promote,
    rollback,
)
from pipeline.tracking.serving import FetchedModel, fetch_model, resolve_model_version
from pipeline.tracking.session import TrackedRun, find_mlflow_handler, tracked_run_of
from pipeline.tracking.store import default_tracking_uri, fluent_tracking, get_client, sqlite_uri
from pipeline.tracking.training_handler import MLflowTrainingHandler

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_EXPERIMENT_NAME",
    "DEFAULT_MODEL_NAME",
    "FetchedModel",
    "PROMOTION_METRIC",
    "MLflowEvaluationHandler",
    "MLflowTrainingHandler",
    "PromotionDecision",
    "TrackedRun",
    "apply_promotion_rule",
    "best_network",
    "datalist_params",
    "default_tracking_uri",
    "describe_training_objects",
    "describe_version",
    "fetch_model",
    "file_sha256",
    "find_mlflow_handler",
    "find_training_run",
    "flatten_params",
    "fluent_tracking",
    "get_client",
    "get_version",
    "git_commit",
    "list_versions",
    "log_model_version",
    "make_run_name",
    "package_versions",
    "promote",
    "resolve_model_version",
    "rollback",
    "save_torchscript",
    "sqlite_uri",
    "test_metric_name",
    "trace_network",
    "tracked_run_of",
    "unwrap_network",
    "weights_sha256",
]
