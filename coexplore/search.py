"""The co-exploration search: DANCE's loss, HDX's hard constraints, verified results.

DANCE (Choi et al., DAC 2021) trains a supernet by alternating bilevel updates: weights on
the training split, architecture logits on the validation split with

    loss = CE + lambda * Cost_HW(evaluator(arch_encoding)),

where the frozen evaluator (:mod:`coexplore.evaluator`) predicts the cost of the best
accelerator for the current architecture distribution.  HDX (Hong et al., DAC 2022)
adds hard constraints (``latency <= T``, ``fps >= F``, ...): whenever the surrogate's
constrained metric exceeds its target, the architecture gradient is manipulated so that
the step also decreases it (:mod:`coexplore.hdx`).

:class:`CoExplorer` is the loop; the work is done by parts that each fit on a screen:

* the method (:mod:`coexplore.methods`) says what the run needs and supplies the
  hardware cost, the gradient steering and the final selection;
* :class:`~coexplore.trainer.BilevelTrainer` runs the weight and architecture steps;
* :class:`~coexplore.verify.Verifier` checks the argmax design exactly every epoch, on
  every accelerator of the hardware space, and repairs the final one if asked;
* the method's calibrator (:mod:`coexplore.calibrate`) moves HDX's surrogate targets
  after each epoch's check;
* :class:`~coexplore.finalize.Finalizer` selects, verifies, retrains and reports;
* callbacks (:mod:`coexplore.callbacks`) log, checkpoint, plot and show progress.

A run resumes from its last checkpoint bit-exactly on CPU; a diverged run stops with
status ``diverged`` and reports no design.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .callbacks import Callback, Checkpointer, CSVLogger, PlotWriter, ProgressBar, ProgressLogger, TensorBoardLogger
from .checkpoint import CHECKPOINT_FORMAT, check_inputs, load_checkpoint, save_checkpoint
from .common import ConfigError, atomic_write_text, default_cache_dir
from .config import RunConfig, config_diff, config_from_dict
from .constraints import check_feasible
from .evaluator import Evaluator
from .lut import make_cost_table
from .penalty import ConstraintTargets, HardwarePenalty
from .pricing import CostTable
from .runfolder import (BASELINE_HISTORY_FILE, CONFIG_FILE, ExitCode, Result, checkpoint_path, result_path,
                        run_lock, write_result)
from .seeds import RunSeeds, isolated_torch_rng
from .trainer import BilevelTrainer, DivergedError, TrainerSettings
from .verify import Verifier

logger = logging.getLogger(__name__)

VIOLATED_EXIT_CODE = int(ExitCode.CONSTRAINTS_VIOLATED)


def evaluator_cache_key(cfg: RunConfig, table: CostTable) -> str:
    """The cache key of the evaluator a run builds: spaces, cost source, objective, the
    constraints its labels honour (methods with ``evaluator_constraints``), sizes and seed."""
    ec = cfg.evaluator
    constraints = cfg.constraints.to_list() if cfg.get_method().evaluator_constraints else []
    blob = {**table.key(), "objective": cfg.objective.key(), "n": ec.num_arch, "pairs": ec.pairs_per_arch,
            "eg": ec.epochs_generator, "ee": ec.epochs_estimator, "seed": cfg.seed}
    if constraints:
        blob["constraints"] = sorted(constraints)
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


def load_data(d, seed: int, cache_dir: Optional[Path] = None, progress: bool = False, space=None, task=None):
    """The run's :class:`~search_spaces.data.DataBundle`: the task's own data when it loads it
    (``task.load_data(space, d, seed, cache_dir)``, e.g. detection), with ``data.name: synthetic``
    a teacher's synthetic samples (data-free, DANCE++; :mod:`coexplore.datafree.cosearch`), else a
    dataset (:func:`search_spaces.get_data`)."""
    load = getattr(task, "load_data", None)
    if load is not None:
        return load(space, d, seed=seed, cache_dir=cache_dir)
    if d.name == "synthetic":
        from .datafree.cosearch import synthetic_data
        return synthetic_data(d, seed, cache_dir=cache_dir, progress=progress)
    from search_spaces.data import get_data
    return get_data(d.name, path=d.path, val_fraction=d.val_fraction, seed=seed, batch_size=d.batch_size,
                    augment=d.augment, limit=d.limit, cache_dir=cache_dir)


def get_evaluator(cfg: RunConfig, table: CostTable, cache_dir: Optional[Path] = None,
                  progress: bool = False) -> Evaluator:
    """The configured evaluator checkpoint, or one built (and cached) for these spaces.

    Building draws from its own seeded generators only, so whether the cache was warm or
    cold never changes what the rest of the run draws.
    """
    from .evaluator_train import TrainConfig, build_evaluator

    expect = table.key()
    method = cfg.get_method()
    if cfg.evaluator.path:
        ev = Evaluator.load(cfg.evaluator.path, expect=expect)
        if method.evaluator_constraints and sorted(ev.meta.get("constraints") or []) != sorted(cfg.constraints.to_list()):
            logger.warning("evaluator %s was trained for constraints %s, this %s run has %s: its generated hardware "
                           "may differ from the constrained choice (build one with `coexplore evaluator build "
                           "--constraint ...`); the per-epoch calibration will compensate only in part",
                           cfg.evaluator.path, ev.meta.get("constraints") or [], cfg.method, cfg.constraints.to_list())
        return ev
    ec = cfg.evaluator
    path = default_cache_dir(cache_dir) / "evaluators" / f"{evaluator_cache_key(cfg, table)}.pt"
    if path.is_file():
        try:
            return Evaluator.load(path, expect=expect)
        except ConfigError as exc:
            logger.warning("cached evaluator %s is unusable (%s); building it again", path, exc)
    logger.info("building an evaluator for %s x %s (%d architectures); cached at %s",
                table.space.name, table.hardware.name, ec.num_arch, path)
    tc = TrainConfig(max_epochs_generator=ec.epochs_generator, max_epochs_estimator=ec.epochs_estimator, seed=cfg.seed)
    constraints = cfg.constraints if method.evaluator_constraints else None
    res = build_evaluator(table.space, table.hardware, cfg.objective, out=path, num_arch=ec.num_arch,
                          pairs_per_arch=ec.pairs_per_arch, cfg=tc, cache_dir=cache_dir, progress=progress,
                          report_arch=1000, constraints=constraints, table=table)
    return res["evaluator"]


class CoExplorer:
    """One co-exploration run in a run folder.

    Args:
        cfg: the resolved configuration.
        run_dir: the run folder (created when the run starts).
        callbacks: extra callbacks (CSV logging, checkpointing, logging and plots are always on; a
            progress bar when ``cfg.progress``).
        cache_dir: where evaluators and datasets are cached (default: :func:`coexplore.common.default_cache_dir`).
    """

    def __init__(self, cfg: RunConfig, run_dir: Union[str, Path], callbacks: Sequence[Callback] = (),
                 cache_dir: Optional[Union[str, Path]] = None) -> None:
        from search_spaces import Supernet, TemperatureSchedule
        from search_spaces.tasks import get_task
        from search_spaces.train import place, resolve_device

        self.cfg = cfg
        self.method = cfg.get_method()
        self.run_dir = Path(run_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.seeds = RunSeeds(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.objective = cfg.objective
        self.constraints = cfg.constraints
        self.space = cfg.resolve_search_space()
        self.task = get_task(self.space)
        self.hw_space = cfg.resolve_hardware_space()
        self.cost_source = cfg.cost_source()
        # a measured cost source prices with its per-block latency table (coexplore.lut), any other one analytically
        self.table = make_cost_table(self.space, self.hw_space, self.cost_source, self.objective, self.constraints,
                                     cache_dir=self.cache_dir, progress=cfg.progress)
        self.verifier = Verifier(self.table, self.objective, self.constraints)
        self.feasibility = check_feasible(self.constraints, self.table) if len(self.constraints) else {}
        self.targets = ConstraintTargets(self.constraints)
        self.callbacks: List[Callback] = [CSVLogger(), Checkpointer(), ProgressLogger(), PlotWriter(),
                                          *([ProgressBar()] if cfg.progress else []),
                                          *([TensorBoardLogger()] if cfg.tensorboard else []), *callbacks]

        d = cfg.data
        self.data = load_data(d, cfg.seed, cache_dir=self.cache_dir, progress=cfg.progress, space=self.space,
                              task=self.task)
        expect = (self.space.input_channels, self.space.resolution, self.space.resolution)
        if self.data.num_classes != self.space.num_classes or tuple(self.data.input_shape) != expect:
            raise ConfigError(
                f"config: dataset {d.name!r} has {self.data.num_classes} classes and inputs "
                f"{tuple(self.data.input_shape)}, but search space {self.space.name!r} expects {self.space.num_classes} "
                f"classes and inputs {expect}")
        if self.device.type == "cuda":  # page-locked batches, so that their copy to the GPU runs asynchronously
            for loader in (self.data.train, self.data.val, self.data.test):
                if hasattr(loader, "pin_memory"):
                    loader.pin_memory = True
        supernet_class = getattr(self.space, "supernet_class", Supernet)  # a space may bring its own supernet
        with isolated_torch_rng(self.seeds.entropy("init")):
            self.supernet = supernet_class(self.space, mode=cfg.path_mode, tau=cfg.tau0,
                                           init_generator=self.seeds.torch("init"))
        place(self.supernet, self.device, cfg.memory_format)
        self.tau_schedule = TemperatureSchedule(tau0=cfg.tau0, tau_min=cfg.tau_min, epochs=cfg.search_epochs)
        self._evaluator: Optional[Evaluator] = None
        cost = self.method.hardware_cost(self)
        penalty = None
        if cost is not None:
            cost = cost.to(self.device)
            cost.set_reference(self.supernet.arch_encoding().detach())
            penalty = HardwarePenalty(cost, cfg.lam)
        self.calibrator = self.method.calibrator(self)
        n = len(self.data.train)
        self.steps_per_epoch = min(n, cfg.steps_per_epoch) if cfg.steps_per_epoch else n
        settings = TrainerSettings(epochs=cfg.search_epochs, warmup_epochs=cfg.warmup_epochs,
                                   steps_per_epoch=self.steps_per_epoch, w_lr=cfg.w_lr, w_momentum=cfg.w_momentum,
                                   w_weight_decay=cfg.w_weight_decay, a_lr=cfg.a_lr, a_weight_decay=cfg.a_weight_decay,
                                   hw_encoding=cfg.hw_encoding, amp=cfg.amp)
        self.trainer = BilevelTrainer(self.supernet, self.data, settings, self.seeds, self.device, penalty=penalty,
                                      steering=self.method.steering(self),
                                      trains_architecture=self.method.trains_architecture, task=self.task)
        self.total_epochs = settings.total_epochs
        self.epoch = 0  # next epoch to run
        self.rows: List[Dict[str, Any]] = []
        self.bn_batches = 20  # training batches that re-estimate BatchNorm statistics per evaluation
        self._seconds = 0.0  # search time of earlier sessions (restored on resume)
        self._t_start = time.perf_counter()

    # ---- parts the methods use ------------------------------------------------------------
    @property
    def has_evaluator(self) -> bool:
        return self._evaluator is not None

    def evaluator(self) -> Evaluator:
        """The DANCE evaluator (loaded or built on first use; frozen)."""
        if self._evaluator is None:
            if self.cfg.surrogate != "evaluator":
                raise ConfigError(f"config: surrogate is {self.cfg.surrogate!r}: this run has no neural evaluator")
            self._evaluator = get_evaluator(self.cfg, self.table, self.cache_dir, progress=self.cfg.progress)
            self._evaluator.to(self.device)
            for p in self._evaluator.parameters():
                p.requires_grad_(False)
        return self._evaluator

    def arch_log_probs(self) -> Dict[str, np.ndarray]:
        """``{label: log p of each candidate}`` under the current architecture distribution."""
        return {b.label: torch.log_softmax(p.detach().cpu(), -1).numpy()
                for b, p in zip(self.space.choices, self.supernet.arch_parameters())}

    def evaluate_architecture(self, sample: Dict[str, str]) -> Dict[str, float]:
        """Inherited-weight validation quality of one architecture (the task's metric, e.g.
        top-1 accuracy), BatchNorm recalibrated (see :func:`search_spaces.train.inherited_accuracy`)."""
        from search_spaces.train import inherited_accuracy
        self.data.train.set_epoch(self.epoch)  # the calibration batches are a function of the epoch
        try:
            return inherited_accuracy(self.supernet, sample, self.data.train, self.data.val, self.device,
                                      self.bn_batches, evaluate=self.task.evaluate)
        finally:
            self.data.train.set_epoch(self.epoch)

    def inherited_accuracy(self, sample: Dict[str, str]) -> float:
        """The task's quality metric of one architecture with inherited weights (a fraction)."""
        return float(self.evaluate_architecture(sample)[self.task.metric])

    def write_baseline_history(self, history: List[Dict[str, Any]]) -> None:
        import pandas as pd
        rows = [{"evaluation": r["evaluation"], "accuracy": r["accuracy"], "cost": r["cost"], "feasible": r["feasible"],
                 **{f"arch_{k}": v for k, v in r["architecture"].items()}, **dict(r["metrics"])} for r in history]
        atomic_write_text(self.run_dir / BASELINE_HISTORY_FILE, pd.DataFrame(rows).to_csv(index=False))

    def verify(self, sample: Dict[str, str]) -> Dict[str, Any]:
        """Exact analytical check of an architecture (:meth:`coexplore.verify.Verifier.check`)."""
        return self.verifier.check(sample)

    def tau_at(self, epoch: int) -> float:
        """Exponential decay from tau0 to tau_min over the search epochs (FBNet/DANCE schedule)."""
        return self.tau_schedule(max(0, epoch - self.cfg.warmup_epochs))

    def elapsed(self) -> float:
        return self._seconds + (time.perf_counter() - self._t_start)

    # ---- one epoch -----------------------------------------------------------------------
    def run_epoch(self) -> Dict[str, Any]:
        epoch = self.epoch
        self.supernet.tau = self.tau_at(epoch)
        t0 = time.perf_counter()
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)

        def on_step(step: int, info: Dict[str, float]) -> None:
            for cb in self.callbacks:
                cb.on_step(self, step, info)

        stats = self.trainer.run_epoch(epoch, on_step)
        row, surrogate, check = self._epoch_row(epoch, stats, time.perf_counter() - t0)
        if self.calibrator is not None and surrogate:
            row.update(self.calibrator.update(surrogate, check["metrics"], check["constraints"],
                                              margins=epoch >= self.cfg.warmup_epochs))
        self.rows.append(row)
        self.epoch += 1
        for cb in self.callbacks:
            cb.on_epoch_end(self, row)
        return row

    def _epoch_row(self, epoch: int, stats: Dict[str, float], seconds: float):
        """The epoch's log row (no side effects), the surrogate's metrics and the exact check."""
        cfg = self.cfg
        warm = self.trainer.is_warm(epoch)
        n, a = max(1, stats["n"]), max(1, stats["arch_steps"])
        sample = self.supernet.derive()
        row: Dict[str, Any] = {"epoch": epoch, "phase": "warmup" if warm else "search", "tau": self.supernet.tau,
                               "lambda": cfg.lam, "train_loss": stats["train_loss"] / n,
                               "train_acc": stats["train_correct"] / n if stats["train_correct"] is not None else None, "ce": stats["ce_arch"] / a if not warm else None,
                               "cost_loss": stats["cost_loss"] / a if not warm else None, "seconds": seconds}
        row["loss"] = None if warm else row["ce"] + cfg.lam * row["cost_loss"]
        row["val_acc"] = self.inherited_accuracy(sample)  # the argmax architecture, inherited weights
        if cfg.path_mode == "darts":  # the mixture the DARTS-mode supernet actually trains
            row["val_acc_supernet"] = float(self.task.evaluate(self.supernet, self.data.val, self.device)[self.task.metric])
        surrogate: Dict[str, float] = {}
        with torch.no_grad():
            probs = [torch.softmax(p, -1) for p in self.supernet.arch_parameters()]
            row["entropy"] = float(torch.stack([-(q * q.clamp_min(1e-12).log()).sum() for q in probs]).mean())
            penalty = self.trainer.penalty
            if penalty is not None:
                out = penalty.cost(self.trainer.hw_encoding())
                surrogate = {k: float(out[k]) for k in penalty.cost.metrics}
                row.update({f"surrogate_{k}": v for k, v in surrogate.items()})
                row["surrogate_cost"] = float(out["cost"]) * penalty.cost.reference
        v = self.verifier.check(sample)
        m = v["metrics"]
        row.update(argmax_latency_s=m["latency_s"], argmax_energy_j=m["energy_j"], argmax_area_mm2=m["area_mm2"],
                   argmax_edap=m["edap"], argmax_cost=v["cost"], feasible=v["feasible"])
        for name, chk in zip(self.targets.names, v["constraints"]):
            row[f"g_{name}"] = chk["g"]
        steering = self.trainer.steering
        if steering is not None and hasattr(steering, "manipulator"):
            for name, val in zip(self.targets.names, steering.manipulator.kappa):
                row[f"kappa_{name}"] = val
        # what the surrogate cannot price (e.g. the MACs proxy) leaves the calibration out
        if not all(self.targets.key(i) in surrogate for i in range(len(self.targets))):
            surrogate = {}
        return row, surrogate, v

    # ---- checkpoints ---------------------------------------------------------------------
    def inputs(self) -> Dict[str, str]:
        """Fingerprints of every input the numbers depend on (checked on resume)."""
        return {"search_space": self.space.fingerprint(), "hardware_space": self.hw_space.fingerprint(),
                "cost_source": self.cost_source.fingerprint(), "data": self.data.fingerprint()}

    def state(self) -> Dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "trainer": self.trainer.state_dict(),
                "targets": self.targets.state_dict(), "rows": self.rows, "config": self.cfg.identity(),
                "inputs": {**self.inputs(), "seconds": float(self.elapsed())}}

    def save_checkpoint(self) -> None:
        save_checkpoint(checkpoint_path(self.run_dir), self.state())

    def load_checkpoint(self, path: Optional[Path] = None) -> bool:
        path = path or checkpoint_path(self.run_dir)
        if not path.is_file():
            return False
        st = load_checkpoint(path, map_location=self.device)
        if st["config"] != self.cfg.identity():
            try:
                diff = config_diff(config_from_dict(st["config"]), self.cfg)
            except ConfigError:
                diff = {}
            what = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()) or "(unreadable saved config)"
            raise ConfigError(f"{path}: the checkpoint was written with another config ({what}); resume with the "
                              "same config (or with only --out) or start a new run folder")
        inputs = dict(st["inputs"])
        seconds = float(inputs.pop("seconds", 0.0))
        check_inputs(path, inputs, self.inputs())
        try:
            self.epoch = int(st["epoch"])
            self.trainer.load_state_dict(st["trainer"])
            self.targets.load_state_dict(st["targets"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: checkpoint does not fit this run ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None
        self.rows = list(st["rows"])
        self._seconds = seconds
        self._t_start = time.perf_counter()
        logger.info("resumed %s at epoch %d", self.run_dir, self.epoch)
        return True

    # ---- the whole run -------------------------------------------------------------------
    def run(self, resume: bool = False) -> Result:
        """Run (or resume) to the end; returns the result (also written to ``result.json``)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(self.run_dir):
            if resume:
                self.load_checkpoint()
            self.cfg.save(self.run_dir / CONFIG_FILE)
            for cb in self.callbacks:
                cb.on_start(self)
            try:
                while self.epoch < self.total_epochs:
                    self.run_epoch()
                from .finalize import Finalizer
                result = Finalizer(self).finalize()
            except DivergedError as exc:
                logger.error("the run diverged: %s", exc)
                result = self._diverged(str(exc))
            write_result(self.run_dir, result)
            for cb in self.callbacks:
                cb.on_end(self, result)
        return result

    def _diverged(self, message: str) -> Result:
        cfg = self.cfg
        return Result(method=cfg.method, name=cfg.name, seed=cfg.seed, search_space=self.space.name,
                      hardware_space=self.hw_space.name, objective=cfg.objective.to_spec(), lam=cfg.lam,
                      status="diverged", message=message, checked_by=self.cost_source.name,
                      cost_source=self.cost_source.describe(), epochs=self.epoch, warmup_epochs=cfg.warmup_epochs,
                      constraints=[], all_constraints_met=False, seconds=self.elapsed())


def run_search(cfg: RunConfig, run_dir: Union[str, Path], resume: bool = False,
               cache_dir: Optional[Union[str, Path]] = None) -> Result:
    """Run (or resume) a search into ``run_dir`` and return its :class:`~coexplore.runfolder.Result`."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: is a file, not a run folder; choose another --out")
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{run_dir}: cannot create the run folder: {parent} is a file (a file of that name "
                                  "is in the way); choose another --out")
            break
    if result_path(run_dir).is_file() and not resume:
        raise ConfigError(f"{run_dir}: holds a finished run; choose another --out or pass --resume to reuse it")
    if checkpoint_path(run_dir).is_file() and not resume:
        raise ConfigError(f"{run_dir}: holds an unfinished run; pass --resume to continue it or choose another --out")
    if resume and result_path(run_dir).is_file():
        from .config import load_config
        from .runfolder import read_result
        saved = load_config(run_dir / CONFIG_FILE)
        if saved.identity() != cfg.identity():
            what = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in config_diff(saved, cfg).items())
            raise ConfigError(f"{run_dir}: holds a finished run of another config ({what}); choose another --out")
        logger.info("%s: the run is already finished; nothing to resume", run_dir)
        return read_result(run_dir)
    created = not run_dir.exists()
    try:
        explorer = CoExplorer(cfg, run_dir, cache_dir=cache_dir)
    except BaseException:
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # an early error leaves no empty run folder behind
        raise
    return explorer.run(resume=resume)
