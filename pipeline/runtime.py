"""Process settings the ``xray-seg`` commands make before PyTorch loads (no project imports, no torch import).

OpenMP worker threads of PyTorch's CPU build (GNU libgomp) spin for a while after each parallel region before they
sleep. In a batch run the DataLoader workers decoding the next films and the writer threads encoding SEGs, masks and
overlays need those cores: on the 2-core development box the spinning threads took them, and writing the default
outputs slowed the model from 85 to 151 ms per batch item. With ``OMP_WAIT_POLICY=PASSIVE`` idle OpenMP threads sleep
at once: in ``scripts/benchmark_inference.py`` (2048² DICOMs, 2 cores) the SEG-only rate went from 8.3 to 10.1
images/s and the default outputs from 4.9 to 7.1. A model alone on an idle machine loses a little (24 -> 20 images/s
through the network), which these commands never are. Training is the opposite case (one big model step after
another, nothing else to run): a bf16 BasicUNet step took 556-746 ms with spinning threads and 803-1843 ms passive,
so only the serving commands (``predict``, ``listen``, ``serve``: :data:`pipeline.cli.SERVING_COMMANDS`) set it.

libgomp reads the variable once, when it is loaded, so :func:`configure_openmp` must run before ``import torch``;
a value the user set is kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

__all__ = ["OPENMP_DEFAULTS", "configure_openmp"]

#: OpenMP settings of the project's commands, unless the environment already sets them.
OPENMP_DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure_openmp(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set :data:`OPENMP_DEFAULTS` in the environment where the user has not set them.

    Args:
        environ: the environment to change (default ``os.environ``).

    Returns:
        Whether the settings can still take effect (``False`` once torch is imported in this process: then they only
        reach child processes).
    """
    target = os.environ if environ is None else environ
    for name, value in OPENMP_DEFAULTS.items():
        target.setdefault(name, value)
    return "torch" not in sys.modules
