"""Callbacks of the search loop: logging, checkpointing, plots and progress are hooks.

pymoo's ``Callback.notify`` is the model: the loop (:class:`~coexplore.search.CoExplorer`)
calls every callback at fixed points and a callback never changes the search.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict

from .common import atomic_write_text
from .runfolder import METRICS_FILE, PLOTS_DIR

if TYPE_CHECKING:  # pragma: no cover
    from .runfolder import Result
    from .search import CoExplorer

logger = logging.getLogger(__name__)


class Callback:
    """Hooks of the search loop; override what you need."""

    def on_start(self, search: "CoExplorer") -> None:
        pass

    def on_epoch_start(self, search: "CoExplorer", epoch: int) -> None:
        pass

    def on_step(self, search: "CoExplorer", step: int, info: Dict[str, float]) -> None:
        pass

    def on_epoch_end(self, search: "CoExplorer", row: Dict[str, Any]) -> None:
        pass

    def on_end(self, search: "CoExplorer", result: "Result") -> None:
        pass


class CSVLogger(Callback):
    """Rewrites ``metrics.csv`` atomically from all rows after every epoch (resume-safe)."""

    def on_epoch_end(self, search: "CoExplorer", row: Dict[str, Any]) -> None:
        import pandas as pd
        atomic_write_text(search.run_dir / METRICS_FILE, pd.DataFrame(search.rows).to_csv(index=False))


class Checkpointer(Callback):
    """Saves the full search state after every epoch."""

    def on_epoch_end(self, search: "CoExplorer", row: Dict[str, Any]) -> None:
        search.save_checkpoint()


class PlotWriter(Callback):
    """Writes the run's plots at the end: trajectories and the chosen accelerator."""

    def on_end(self, search: "CoExplorer", result: "Result") -> None:
        if result.status == "diverged":
            return
        from accelerators import Accelerator

        from .plots import plot_accelerator, plot_trajectories
        try:
            plot_trajectories(search.run_dir)
            if "pe_x" in result.accelerator:  # not for a measured device (coexplore.lut): it has no PE array
                acc = Accelerator.from_dict(result.accelerator)
                plot_accelerator(acc, search.space.layers(result.architecture),
                                 search.run_dir / PLOTS_DIR / "accelerator.png", formats=("png", "svg"),
                                 title=accelerator_title(result, acc))
        except Exception as exc:  # noqa: BLE001 - a plot must never lose a finished result
            logger.warning("could not write the run's plots: %s", exc)


def accelerator_title(result: "Result", acc) -> str:
    """The accelerator plot's title: which run, which design, what budget."""
    return (f"run {result.name} ({result.method}): {acc.short()} for the found network; "
            f"{result.epochs} epochs ({result.warmup_epochs} warm-up), accuracy "
            f"{100 * (result.metrics.get('accuracy') or float('nan')):.1f}% ({result.accuracy_source})")


class ProgressBar(Callback):
    """A tqdm bar over the steps of each epoch (when ``progress`` is on)."""

    def __init__(self) -> None:
        self.bar = None

    def on_epoch_start(self, search: "CoExplorer", epoch: int) -> None:
        from tqdm.auto import tqdm
        self.bar = tqdm(total=search.steps_per_epoch, desc=f"epoch {epoch + 1}/{search.total_epochs}", leave=False)

    def on_step(self, search: "CoExplorer", step: int, info: Dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_epoch_end(self, search: "CoExplorer", row: Dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoardLogger(Callback):
    """TensorBoard scalars beside ``metrics.csv``: ``step/train_loss`` every step and every
    numeric column of the epoch's row under ``epoch/`` (needs ``pip install
    "coexplore[tensorboard]"``).  A resumed run drops events past its checkpoint."""

    def __init__(self) -> None:
        self.writer = None
        self.step = 0

    def on_start(self, search: "CoExplorer") -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from .common import ConfigError
            raise ConfigError('tensorboard: true needs TensorBoard: pip install "coexplore[tensorboard]"') from None
        self.step = search.epoch * search.steps_per_epoch
        self.writer = SummaryWriter(log_dir=str(search.run_dir / "tensorboard"), purge_step=self.step)

    def on_step(self, search: "CoExplorer", step: int, info: Dict[str, float]) -> None:
        if self.writer is not None:
            for k, v in info.items():
                self.writer.add_scalar(f"step/{k}", v, self.step)
            self.step += 1

    def on_epoch_end(self, search: "CoExplorer", row: Dict[str, Any]) -> None:
        if self.writer is None:
            return
        import math
        for k, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and k != "epoch":
                self.writer.add_scalar(f"epoch/{k}", v, int(row["epoch"]) + 1)
        self.writer.flush()

    def on_end(self, search: "CoExplorer", result: "Result") -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ProgressLogger(Callback):
    """One log line per epoch."""

    def on_epoch_end(self, search: "CoExplorer", row: Dict[str, Any]) -> None:
        cons = " ".join(f"g[{k[2:]}]={row[k]:+.3g}" for k in row if k.startswith("g_"))
        key = search.objective.key()
        logger.info("epoch %d/%d %s: val_acc %.4f  surrogate %s %.4g  argmax %s %.4g %s",
                    row["epoch"] + 1, search.total_epochs, row["phase"], row.get("val_acc", float("nan")),
                    key, row.get("surrogate_cost", float("nan")), key, row.get("argmax_cost", float("nan")), cons)
