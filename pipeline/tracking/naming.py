"""Names used in the MLflow store: the experiment, the registered model, its aliases and the runs."""

from __future__ import annotations

import re
import secrets
import time

__all__ = ["CHALLENGER", "CHAMPION", "DEFAULT_EXPERIMENT_NAME", "DEFAULT_MODEL_NAME", "make_run_name"]

#: Experiment every training and evaluation run of the lung bundle goes to (MONAI's default is ``monai_experiment``).
DEFAULT_EXPERIMENT_NAME = "chest-xray-lung-seg"

#: Registered model name the best network of each training run is registered under.
DEFAULT_MODEL_NAME = "chest-xray-lung-seg"

#: Alias of the version that serves (``models:/chest-xray-lung-seg@champion``).
CHAMPION = "champion"

#: Alias of the most recently registered version, whether or not it beat the champion.
CHALLENGER = "challenger"


def _slug(text: str) -> str:
    """``"JSRT 30 (scr)"`` -> ``"jsrt-30-scr"``: safe in run names, file names and URLs."""
    return re.sub(r"[^a-z0-9_.]+", "-", str(text).lower()).strip("-") or "unnamed"


def make_run_name(network_name: str, dataset_name: str, kind: str = "", when: float | None = None) -> str:
    """A run name that says what was trained on what, and when: ``basic_unet-jsrt30-20261122-153012-3f9a``.

    The four hex digits at the end are random, so two runs started in the same second get different names (MONAI's
    ``MLFlowHandler`` would otherwise join another process's unfinished run of the same name). The project's
    training handler does not rely on names: it opens its run by id.

    Args:
        network_name: network factory name (``basic_unet``, ``xnet``, ...).
        dataset_name: dataset name (the data folder's name).
        kind: optional prefix for runs that are not trainings, e.g. ``"eval"`` -> ``eval-basic_unet-jsrt30-...``.
        when: POSIX time of the run; defaults to now (local time).

    Returns:
        The run name.

    Examples::

        >>> make_run_name("xnet", "CRD", when=0.0).startswith("xnet-crd-19")
        True
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if when is None else when))
    parts = [_slug(kind)] if kind else []
    return "-".join([*parts, _slug(network_name), _slug(dataset_name), stamp, secrets.token_hex(2)])
