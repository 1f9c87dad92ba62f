"""Experiment tracking and model registry with MLflow: the only package of the project that imports mlflow.

MLflow is imported lazily, inside the functions that need it (importing this package only wraps MLflow's first
creation of a SQLite store's tables in a file lock), and a run without ``--tracking`` never opens a store. See
``docs/mlflow.md``.

* :class:`MLflowTrainingHandler` / :class:`MLflowEvaluationHandler`: bundle handlers that complete the run MONAI's
  ``MLFlowHandler`` opens (parameters, per-epoch summaries, artifacts, model, registry, test metrics);
* :func:`log_model_version`, :func:`apply_promotion_rule`, :func:`promote`, :func:`rollback`: the registry;
* :func:`fetch_model`: the model file behind ``models:/chest-xray-lung-seg@champion`` (what
  :meth:`pipeline.inference.Predictor.from_checkpoint` calls for model URIs);
* :class:`TrackingBuffer` / :class:`BufferedClient` / :func:`check_tracking_uri`: tracking that survives an
  unreachable server (bounded calls, records kept and sent later, :func:`replay_records`).
"""

from pipeline.tracking.buffer import BufferedClient, TrackingBuffer, replay_records
from pipeline.tracking.connection import TrackingUnavailableError, bound_http_requests, check_tracking_uri
from pipeline.tracking.evaluation_handler import MLflowEvaluationHandler, find_training_run, test_metric_name
from pipeline.tracking.export import best_network, save_torchscript, trace_network, unwrap_network
from pipeline.tracking.naming import CHALLENGER, CHAMPION, DEFAULT_EXPERIMENT_NAME, DEFAULT_MODEL_NAME, make_run_name
from pipeline.tracking.params import datalist_params, describe_training_objects, flatten_params
from pipeline.tracking.provenance import file_sha256, git_commit, package_versions, state_weights_sha256, weights_sha256
from pipeline.tracking.publish import ModelPackage, publish_model, write_package
from pipeline.tracking.registry import (
    PROMOTION_METRIC,
    PromotionDecision,
    apply_promotion_rule,
    comparability,
    describe_version,
    get_version,
    list_versions,
    log_model_version,
    promote,
    rollback,
)
from pipeline.tracking.serving import FetchedModel, fetch_model, resolve_model_version
from pipeline.tracking.session import TrackedRun, find_mlflow_handler, tracked_run_of
from pipeline.tracking.store import (
    default_tracking_uri,
    fluent_tracking,
    get_client,
    guard_sqlite_schema_creation,
    sqlite_uri,
)
from pipeline.tracking.training_handler import MLflowTrainingHandler

__all__ = [
    "BufferedClient",
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_EXPERIMENT_NAME",
    "DEFAULT_MODEL_NAME",
    "FetchedModel",
    "MLflowEvaluationHandler",
    "MLflowTrainingHandler",
    "ModelPackage",
    "PROMOTION_METRIC",
    "PromotionDecision",
    "TrackedRun",
    "TrackingBuffer",
    "TrackingUnavailableError",
    "apply_promotion_rule",
    "best_network",
    "bound_http_requests",
    "check_tracking_uri",
    "comparability",
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
    "guard_sqlite_schema_creation",
    "list_versions",
    "log_model_version",
    "make_run_name",
    "package_versions",
    "promote",
    "publish_model",
    "replay_records",
    "resolve_model_version",
    "rollback",
    "save_torchscript",
    "sqlite_uri",
    "state_weights_sha256",
    "test_metric_name",
    "trace_network",
    "tracked_run_of",
    "unwrap_network",
    "weights_sha256",
    "write_package",
]

# Two trainings that open a new SQLite store at the same moment must not both create its tables. The guard has to be
# in place before any MONAI MLFlowHandler opens the store, and bundle configs import this package first (MONAI's
# handlers import mlflow anyway, so this adds no import cost). See guard_sqlite_schema_creation.
guard_sqlite_schema_creation()
