"""A progress bar for MONAI engines that shows the running loss (ignite's ``ProgressBar`` behind a bundle-friendly attach)."""

from __future__ import annotations

import sys

from ignite.engine import Engine

__all__ = ["ProgressBarHandler"]


class ProgressBarHandler:
    """Show a tqdm progress bar per epoch with the current loss.

    The bar is drawn only on an interactive terminal unless ``always`` is set, so CI and log files stay readable
    (the per-epoch summary line carries the same information there).

    Args:
        always: draw even when stderr is not a terminal. Defaults to False.
        desc: text before the bar. Defaults to ``"train"``.
    """

    def __init__(self, always: bool = False, desc: str = "train") -> None:
        self.always = always
        self.desc = desc

    def attach(self, engine: Engine) -> None:
        """Attach ignite's ``ProgressBar`` to ``engine`` when appropriate."""
        if not (self.always or sys.stderr.isatty()):
            return
        from ignite.handlers import ProgressBar

        def loss_of(output):  # MONAI decollates the batch: a list of dicts, each with the batch loss
            item = output[0] if isinstance(output, list) and output else output
            return {"loss": float(item["loss"])} if isinstance(item, dict) and "loss" in item else {}

        ProgressBar(persist=False, desc=self.desc).attach(engine, output_transform=loss_of)
