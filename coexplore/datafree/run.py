"""One student-training loop for every data-free method, in a resumable run folder.

:func:`quantize` runs a :class:`QuantizeConfig`:

1. load the teacher (:func:`~coexplore.datafree.teacher.load_teacher`) and check it against the
   evaluation data (classes, input shape) and the method (BatchNorm for BN-statistics methods);
2. build the method (:data:`~coexplore.datafree.base.METHODS`) and let it prepare (ZeroQ distils
   its images);
3. train the generator alone for ``generator_warmup`` iterations (GDFQ's warm-up);
4. quantise a copy of the teacher (:func:`search_spaces.quant.quantize_model`, W``wbits``A``abits``),
   calibrate its activation ranges on synthetic batches, and train it for ``iterations``
   iterations: each iteration takes one generator step (for methods with a generator) and one
   student step on the same, detached batch, with the method's student loss -- or AIT's KL-only
   loss and gradient inundation when ``ait`` is on.  Activation ranges follow the synthetic
   batches as an EMA (``act_momentum``, min/max mode); the student's BatchNorm layers keep the
   teacher's statistics (``student_bn: frozen``) or track the synthetic batches (``train``);
5. choose the final student by a fixed schedule (``select: last``) or by its agreement with the
   teacher on a held-out set of *synthetic* images drawn from a separate stream
   (``select: synthetic-val``) -- never on the test split;
6. score teacher and student once on the real test split (when one is given), and write
   ``result.json``, ``student.pt`` and a grid of generated samples per class.

Every random draw comes from a stream derived from ``(seed, role, iteration)``
(:class:`coexplore.seeds.RunSeeds`), and ``checkpoints/last.pt`` (weights-only) is rewritten every
``checkpoint_every`` iterations, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.quant import (ACT_MODES, calibrate, check_bits, layer_bits, observing, quantize_model)

from ..common import ConfigError, PathLike, check_keys, atomic_write_bytes, atomic_write_text, read_yaml, write_yaml
from ..seeds import RunSeeds, isolated_torch_rng
from .ait import GradientInundation, ait_loss, code_change_fraction, snapshot_codes
from .base import METHODS, DataFreeMethod, MethodConfig
from .result import (CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, SAMPLES_FILE, STUDENT_FILE, QuantResult,
                     write_quant_result)
from .teacher import Teacher, _safe_load, bn_layers, evaluate, load_teacher

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
SELECTIONS = ("last", "synthetic-val")
STUDENT_BN = ("frozen", "train")
#: Bit settings the tables and the CLI use; any 2..8 (or 16/32) pair is accepted.
NAMED_BITS = ("w8a8", "w5a5", "w4a4", "w2a4", "w4a8", "w2a2")


def parse_bits(text: str) -> Tuple[int, int]:
    """``"w4a4"`` -> ``(4, 4)``; one-line errors name the field and the allowed values."""
    import re
    m = re.fullmatch(r"w(\d+)a(\d+)", str(text).strip().lower())
    if not m:
        raise ConfigError(f"bits must look like w<bits>a<bits> (e.g. {', '.join(NAMED_BITS)}), got {text!r}")
    return check_bits(int(m.group(1)), "bits (weights)"), check_bits(int(m.group(2)), "bits (activations)")


@dataclass(frozen=True)
class QuantizeConfig:
    """A data-free quantisation run; saved as ``config.yaml`` in the run folder."""

    teacher: str  # path of the teacher file (coexplore teacher train)
    method: str = "gdfq"  # a registered method: gdfq | zeroq | qimera | clusterq | lrq | real-qat | ...
    wbits: int = 4  # weight bits, 2..8 (16/32: float)
    abits: int = 4  # activation bits, 2..8 (16/32: float)
    ait: bool = False  # AIT on the student: KL-only loss and gradient inundation
    ait_flip_ratio: float = 1e-3  # AIT: fraction of each layer's weights whose code a step should change
    ait_max_scale: float = 100.0  # AIT: the largest gradient factor
    act_mode: str = "minmax"  # activation ranges: minmax (calibrated + EMA) | lsq | pact
    first_input_bits: int = 8  # input bits of the first layer (the image)
    iterations: int = 400  # student iterations (one generator step each, where there is a generator)
    generator_warmup: int = 50  # generator-only iterations before the student's
    batch_size: int = 64  # synthetic images per iteration
    student_lr: float = 0.01  # SGD (Nesterov) learning rate of the student, cosine to 0
    student_momentum: float = 0.9  # SGD momentum
    student_weight_decay: float = 1e-4  # SGD weight decay
    student_grad_clip: Optional[float] = 5.0  # max gradient norm of the student's step (before AIT); null: none
    student_bn: str = "frozen"  # the student's BN statistics: frozen (the teacher's) | train (synthetic batches)
    act_momentum: float = 0.01  # EMA weight of a new batch in the activation ranges during training (minmax)
    calib_batches: int = 4  # synthetic batches that calibrate the activation ranges first
    select: str = "last"  # last (fixed schedule) | synthetic-val (held-out synthetic agreement)
    val_every: int = 100  # synthetic-val: iterations between checks
    val_samples: int = 256  # synthetic-val: held-out synthetic images per check
    log_every: int = 25  # iterations per metrics row
    checkpoint_every: int = 50  # iterations between checkpoints
    seed: int = 0  # seeds every stream of the run
    eval_data: Optional[str] = None  # dataset of the final real-test score (default: the teacher's)
    eval_path: Optional[str] = None  # its path (cifar10: the archive or folder)
    eval_limit: Optional[int] = None  # cap on test images (stratified), null: the whole split
    samples_per_class: int = 8  # columns of the sample grid
    progress: bool = True  # a progress bar (not part of the run's identity)
    method_cfg: MethodConfig = field(default_factory=MethodConfig)  # the method's settings

    def __post_init__(self) -> None:
        if isinstance(self.method_cfg, Mapping):
            allowed = set(MethodConfig.__dataclass_fields__)
            unknown = sorted(set(self.method_cfg) - allowed)
            if unknown:
                raise ConfigError(f"method_cfg: unknown field(s) {unknown}; allowed fields: {sorted(allowed)}")
            object.__setattr__(self, "method_cfg", MethodConfig(**self.method_cfg))
        if not isinstance(self.teacher, str) or not self.teacher:
            raise ConfigError(f"teacher must be a teacher file path, got {self.teacher!r}")
        if not isinstance(self.method, str) or self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS.names()}, got {self.method!r}")
        object.__setattr__(self, "method", self.method.lower())
        check_bits(self.wbits, "wbits")
        check_bits(self.abits, "abits")
        check_bits(self.first_input_bits, "first_input_bits")
        if self.act_mode not in ACT_MODES:
            raise ConfigError(f"act_mode must be one of {list(ACT_MODES)}, got {self.act_mode!r}")
        if self.select not in SELECTIONS:
            raise ConfigError(f"select must be one of {list(SELECTIONS)}, got {self.select!r}")
        if self.student_bn not in STUDENT_BN:
            raise ConfigError(f"student_bn must be one of {list(STUDENT_BN)}, got {self.student_bn!r}")
        for f, lo in (("iterations", 1), ("generator_warmup", 0), ("batch_size", 2), ("calib_batches", 1),
                      ("val_every", 1), ("val_samples", 1), ("log_every", 1), ("checkpoint_every", 1),
                      ("seed", 0), ("samples_per_class", 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{f} must be an integer >= {lo}, got {v!r}")
        for f in ("student_lr", "ait_max_scale"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{f} must be a finite number > 0, got {v!r}")
        v = self.student_grad_clip
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v))):
            raise ConfigError(f"student_grad_clip must be null or a finite number > 0, got {v!r}")
        for f in ("act_momentum", "ait_flip_ratio"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise ConfigError(f"{f} must be a number in (0, 1), got {v!r}")
        if self.method_cfg.mix_classes < 2:
            raise ConfigError(f"method_cfg.mix_classes must be an integer >= 2, got {self.method_cfg.mix_classes}")

    @property
    def bits(self) -> str:
        return f"w{self.wbits}a{self.abits}"

    def to_dict(self) -> Dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["method_cfg"] = self.method_cfg.to_dict()
        return d

    def identity(self) -> Dict[str, Any]:
        """What the run's numbers depend on (a resume refuses a folder whose identity differs)."""
        d = self.to_dict()
        d.pop("progress")
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "quantize config") -> "QuantizeConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        check_keys(d, (f.name for f in fields(QuantizeConfig)), where)
        try:
            return QuantizeConfig(**dict(d))
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Pieces of the loop
# --------------------------------------------------------------------------------------------------


def _eval_data(cfg: QuantizeConfig, teacher: Teacher, needs_train: bool = False):
    """The DataBundle of the final score (and of real-qat), or ``None`` when none can be had."""
    from search_spaces import get_data
    name = cfg.eval_data or teacher.spec.dataset
    if not name:
        return None
    try:
        data = get_data(name, path=cfg.eval_path, seed=cfg.seed, batch_size=cfg.batch_size, eval_batch_size=500,
                        limit=cfg.eval_limit)
    except ConfigError:
        if needs_train or cfg.eval_data:
            raise
        logger.warning("no %s data for the final score (set eval_data / eval_path); the result has no accuracy",
                       name)
        return None
    check_data_matches(teacher, data)
    return data


def check_data_matches(teacher: Teacher, data) -> None:
    """Refuse evaluation data whose classes or input shape differ from the teacher's."""
    spec = teacher.spec
    if tuple(data.input_shape) != tuple(spec.input_shape):
        raise ConfigError(f"teacher input_shape {list(spec.input_shape)} does not match data {data.name!r} "
                          f"input_shape {list(data.input_shape)}")
    if data.num_classes != spec.num_classes or tuple(data.classes) != tuple(spec.classes):
        raise ConfigError(f"teacher classes ({spec.num_classes}: {list(spec.classes)[:10]}) do not match data "
                          f"{data.name!r} classes ({data.num_classes}: {list(data.classes)[:10]})")


def build_method(cfg: QuantizeConfig, teacher: Teacher) -> DataFreeMethod:
    cls = METHODS.get(cfg.method)
    return cls(teacher, cfg.method_cfg, RunSeeds(cfg.seed).torch("method-init"))


def _student_train_mode(student: nn.Module, bn: str) -> None:
    student.train()
    if bn == "frozen":
        for m in bn_layers(student):
            m.eval()


@torch.no_grad()
def synthetic_agreement(student: nn.Module, teacher: nn.Module, method: DataFreeMethod, n: int, batch: int,
                        gen: torch.Generator) -> float:
    """Top-1 agreement of student and teacher on ``n`` held-out synthetic images from ``gen``."""
    was = student.training
    student.eval()
    agree, seen = 0, 0
    try:
        while seen < n:
            b = min(batch, n - seen)
            x, _ = method.sample(b, gen)
            agree += int((student(x).argmax(1) == teacher(x).argmax(1)).sum())
            seen += b
    finally:
        student.train(was)
    return agree / max(seen, 1)


class _Run:
    """The state of one run (kept together so checkpoints and the loop agree)."""

    def __init__(self, cfg: QuantizeConfig, teacher: Teacher, method: DataFreeMethod, out: Path) -> None:
        self.cfg, self.teacher, self.method, self.out = cfg, teacher, method, out
        self.seeds = RunSeeds(cfg.seed)
        for p in teacher.model.parameters():
            p.requires_grad_(False)
        teacher.model.eval()
        self.student = quantize_model(teacher.model, cfg.wbits, cfg.abits, act_mode=cfg.act_mode,
                                      first_input_bits=cfg.first_input_bits)
        for p in self.student.parameters():
            p.requires_grad_(True)
        self.opt_s = torch.optim.SGD(self.student.parameters(), lr=cfg.student_lr, momentum=cfg.student_momentum,
                                     weight_decay=cfg.student_weight_decay, nesterov=cfg.student_momentum > 0)
        total = cfg.iterations
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt_s, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total)))
        gparams = method.generator_parameters() if method.trains_generator else []
        self.opt_g = torch.optim.Adam(gparams, lr=method.cfg.generator_lr, betas=(0.5, 0.999)) if gparams else None
        self.inundation = GradientInundation(cfg.ait_flip_ratio, cfg.ait_max_scale) if cfg.ait else None
        self.warmup_done = 0
        self.iteration = 0
        self.calibrated = False
        self.rows: List[Dict[str, Any]] = []
        self.seconds = 0.0
        self.best: Optional[Dict[str, Any]] = None  # synthetic-val: {"iteration", "agreement", "state"}
        self.prep: Dict[str, float] = {}

    # ---- checkpoints --------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        st = {"format": CHECKPOINT_FORMAT, "identity": self.cfg.identity(), "warmup_done": self.warmup_done,
              "iteration": self.iteration, "calibrated": self.calibrated, "student": self.student.state_dict(),
              "method": self.method.state_dict(), "opt_s": self.opt_s.state_dict(),
              "sched": self.sched.state_dict(), "rows": self.rows, "seconds": self.seconds, "prep": self.prep,
              "best": self.best}
        if self.opt_g is not None:
            st["opt_g"] = self.opt_g.state_dict()
        return st

    def save(self) -> None:
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        atomic_write_bytes(self.out / CHECKPOINT_FILE, buf.getvalue())

    def load(self, path: Path) -> None:
        st = _safe_load(path, "quantisation checkpoint")
        if not isinstance(st, dict) or st.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path}: not a data-free quantisation checkpoint of format {CHECKPOINT_FORMAT}")
        if st.get("identity") != self.cfg.identity():
            saved, now = st.get("identity") or {}, self.cfg.identity()
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ConfigError(f"{path}: cannot resume: setting(s) {changed} differ from the checkpoint; use a new "
                              f"--out folder or restore them")
        self.student.load_state_dict(st["student"])
        self.method.load_state_dict(st["method"])
        self.opt_s.load_state_dict(st["opt_s"])
        self.sched.load_state_dict(st["sched"])
        if self.opt_g is not None and "opt_g" in st:
            self.opt_g.load_state_dict(st["opt_g"])
        self.warmup_done, self.iteration = int(st["warmup_done"]), int(st["iteration"])
        self.calibrated, self.rows, self.seconds = bool(st["calibrated"]), list(st["rows"]), float(st["seconds"])
        self.prep, self.best = dict(st.get("prep") or {}), st.get("best")
        logger.info("resuming %s at warm-up %d, iteration %d", path, self.warmup_done, self.iteration)

    # ---- steps --------------------------------------------------------------------------------
    def generator_step(self, gen: torch.Generator):
        step = self.method.generator_loss(self.cfg.batch_size, gen)
        self.opt_g.zero_grad(set_to_none=True)
        step.loss.backward()
        self.opt_g.step()
        return step

    def calibrate(self) -> None:
        gen = self.seeds.torch("calibration")
        batches = [self.method.sample(self.cfg.batch_size, gen)[0] for _ in range(self.cfg.calib_batches)]
        calibrate(self.student, batches)
        self.calibrated = True

    def student_step(self, it: int) -> Dict[str, float]:
        cfg = self.cfg
        gen = self.seeds.torch("iteration", it)
        info: Dict[str, float] = {}
        if self.opt_g is not None:
            step = self.generator_step(gen)
            info.update(step.info)
            x, targets, t_logits = step.images.detach(), step.targets, step.teacher_logits.detach()
        else:
            x, targets = self.method.sample_targets(cfg.batch_size, gen)
            with torch.no_grad():
                t_logits = self.teacher.model(x)
        _student_train_mode(self.student, cfg.student_bn)
        if cfg.act_mode == "minmax":
            with observing(self.student, cfg.act_momentum):
                s_logits = self.student(x)
        else:
            s_logits = self.student(x)
        if self.inundation is not None:
            loss = ait_loss(s_logits, t_logits, self.method.cfg.kd_temperature)
            info["s_kl"] = float(loss.detach())
        else:
            loss, terms = self.method.student_loss(s_logits, t_logits, targets)
            info.update(terms)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the student loss is not finite at iteration {it}")
        self.opt_s.zero_grad(set_to_none=True)
        loss.backward()
        lr = self.opt_s.param_groups[0]["lr"]
        if cfg.student_grad_clip is not None:
            # synthetic images drive the teacher's logits far out, and one unclipped step can wreck a
            # student that starts at the teacher's weights
            info["s_grad_norm"] = float(nn.utils.clip_grad_norm_(self.student.parameters(), cfg.student_grad_clip))
        if self.inundation is not None:
            info.update(self.inundation.manipulate(self.student, lr))
        log_now = (it + 1) % cfg.log_every == 0 or it + 1 == cfg.iterations
        before = snapshot_codes(self.student) if log_now else None
        self.opt_s.step()
        self.sched.step()
        if before is not None:
            info["flip_fraction"] = code_change_fraction(before, self.student)
        info.update({"s_loss": float(loss.detach()), "lr": lr,
                     "batch_agreement": float((s_logits.detach().argmax(1) == t_logits.argmax(1)).float().mean())})
        return info


def _save_student(run: _Run, path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"format": 1, "kind": "coexplore-quantized-student", "teacher_spec": run.teacher.spec.to_dict(),
                "wbits": run.cfg.wbits, "abits": run.cfg.abits, "act_mode": run.cfg.act_mode,
                "first_input_bits": run.cfg.first_input_bits,
                "layer_bits": {k: list(v) for k, v in layer_bits(run.student).items()},
                "state_dict": {k: (v.detach().cpu() if torch.is_tensor(v) else v)
                               for k, v in run.student.state_dict().items()}}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _write_samples(run: _Run) -> Optional[Path]:
    from .plots import sample_grid
    spec = run.teacher.spec
    per = run.cfg.samples_per_class
    gen = run.seeds.torch("sample-grid")
    xs, ys = [], []
    with torch.no_grad():
        n = per * spec.num_classes
        if run.method.data_free and run.method.trains_generator:
            y = torch.arange(spec.num_classes).repeat_interleave(per)
            t = F.one_hot(y, spec.num_classes).float()
            x = run.method.generate(y, t, {}, gen)
        else:
            x, y = run.method.sample(max(n * 4, 64), gen)
        xs.append(x.numpy())
        ys.append(y.numpy())
    import numpy as np
    title = f"{run.cfg.method}: synthetic samples per class" if run.method.data_free else "real training samples"
    try:
        return sample_grid(np.concatenate(xs), np.concatenate(ys), spec.classes, spec.mean, spec.std,
                           run.out / SAMPLES_FILE, per_class=per, title=title)
    except Exception as exc:  # noqa: BLE001 - a plot never loses a finished run
        logger.warning("could not write the sample grid: %s", exc)
        return None


# --------------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------------


def quantize(cfg: QuantizeConfig, out: PathLike, *, teacher: Optional[Teacher] = None,
             data=None, callback: Optional[Callable[[Dict[str, Any]], None]] = None,
             stop_after: Optional[int] = None) -> QuantResult:
    """Run (or resume) a data-free quantisation into the run folder ``out``.

    Args:
        cfg: the run's settings.
        out: the run folder; a checkpoint there with the same settings is resumed.
        teacher: an already loaded teacher (default: ``load_teacher(cfg.teacher)``).
        data: the :class:`~search_spaces.data.DataBundle` of the final score and of ``real-qat``
            (default: from ``cfg.eval_data`` / the teacher's dataset; ``None`` when unavailable).
        callback: called with every metrics row.
        stop_after: stop (checkpointed, without a result) after this many student iterations --
            for tests of resuming.

    Returns:
        The :class:`~coexplore.datafree.result.QuantResult` (also written to ``out/result.json``).

    Raises:
        ConfigError: a bad setting, a teacher that does not match the data, a method that needs
            BatchNorm on a teacher without it, an unknown method; one line naming the field.
    """
    from . import load_methods
    load_methods()
    # Module construction (nn.Conv2d, ...) draws from torch's global generator; every weight that
    # matters is then drawn from, or copied from, an explicit stream. Fork and restore it, so a run
    # leaves the caller's global stream exactly as it was.
    with isolated_torch_rng(RunSeeds(cfg.seed).entropy("module-construction")):
        return _quantize(cfg, Path(out), teacher, data, callback, stop_after)


def _quantize(cfg: QuantizeConfig, out: Path, teacher: Optional[Teacher], data, callback, stop_after) -> QuantResult:
    from tqdm.auto import tqdm

    teacher = teacher if teacher is not None else load_teacher(cfg.teacher)
    cls = METHODS.get(cfg.method)
    if data is None:
        data = _eval_data(cfg, teacher, needs_train=not cls.data_free)
    else:
        check_data_matches(teacher, data)
    if not cls.data_free and data is None:
        raise ConfigError(f"method {cfg.method!r} trains on real data; give eval_data (and eval_path)")
    method = build_method(cfg, teacher)
    if not method.data_free:
        method.attach_data(data)  # type: ignore[attr-defined]
    run = _Run(cfg, teacher, method, out)
    ckpt = out / CHECKPOINT_FILE
    saved_cfg = out / CONFIG_FILE
    if ckpt.is_file():
        run.load(ckpt)
    elif saved_cfg.is_file():
        prev = read_yaml(saved_cfg)
        if isinstance(prev, Mapping) and {k: v for k, v in prev.items() if k != "progress"} != cfg.identity():
            raise ConfigError(f"{out}: holds a run with other settings ({saved_cfg}); use a new --out folder")
    write_yaml(saved_cfg, cfg.to_dict())
    t_start = time.perf_counter() - run.seconds

    if not run.prep:
        run.prep = method.prepare(run.seeds.torch("prepare"), progress=cfg.progress) or {"prepared": 1.0}
    if run.opt_g is not None:
        for w in tqdm(range(run.warmup_done, cfg.generator_warmup), desc="generator warm-up", leave=False,
                      disable=not cfg.progress):
            run.generator_step(run.seeds.torch("warmup", w))
            run.warmup_done = w + 1
        if cfg.generator_warmup and run.iteration == 0:
            run.seconds = time.perf_counter() - t_start
            run.save()
    if not run.calibrated:
        run.calibrate()

    acc_info: Dict[str, List[float]] = {}
    bar = tqdm(total=cfg.iterations, initial=run.iteration, desc=f"{cfg.method} {cfg.bits}"
               f"{' +ait' if cfg.ait else ''}", leave=False, disable=not cfg.progress)
    try:
        while run.iteration < cfg.iterations:
            it = run.iteration
            info = run.student_step(it)
            for k, v in info.items():
                acc_info.setdefault(k, []).append(v)
            run.iteration = it + 1
            bar.update(1)
            if cfg.select == "synthetic-val" and (run.iteration % cfg.val_every == 0 or
                                                   run.iteration == cfg.iterations):
                agree = synthetic_agreement(run.student, teacher.model, method, cfg.val_samples, cfg.batch_size,
                                            run.seeds.torch("synthetic-val"))
                acc_info.setdefault("synthetic_val_agreement", []).append(agree)
                if run.best is None or agree >= run.best["agreement"]:
                    run.best = {"iteration": run.iteration, "agreement": agree,
                                "state": copy.deepcopy(run.student.state_dict())}
            if run.iteration % cfg.log_every == 0 or run.iteration == cfg.iterations:
                row = {"iteration": run.iteration}
                row.update({k: (v[-1] if k in ("lr", "flip_fraction", "synthetic_val_agreement") else sum(v) / len(v))
                            for k, v in acc_info.items()})
                row["seconds"] = time.perf_counter() - t_start
                run.rows.append(row)
                acc_info = {}
                _write_metrics(out, run.rows)
                if callback is not None:
                    callback(row)
            if run.iteration % cfg.checkpoint_every == 0 or run.iteration == cfg.iterations:
                run.seconds = time.perf_counter() - t_start
                run.save()
            if stop_after is not None and run.iteration >= stop_after and run.iteration < cfg.iterations:
                run.seconds = time.perf_counter() - t_start
                run.save()
                raise KeyboardInterrupt(f"stopped after {run.iteration} iterations (stop_after)")
    finally:
        bar.close()

    selection = "last"
    if cfg.select == "synthetic-val" and run.best is not None:
        run.student.load_state_dict(run.best["state"])
        selection = f"synthetic-val@{run.best['iteration']}"
    run.student.eval()
    metrics: Dict[str, Optional[float]] = {"teacher_accuracy": None, "accuracy": None, "accuracy_drop": None}
    n_test, source, message = 0, "", ""
    if data is not None:
        t_res = evaluate(teacher.model, data.test, torch.device("cpu"))
        s_res = evaluate(run.student, data.test, torch.device("cpu"))
        metrics.update({"teacher_accuracy": t_res["accuracy"], "accuracy": s_res["accuracy"],
                        "accuracy_drop": t_res["accuracy"] - s_res["accuracy"]})
        n_test, source = int(s_res["samples"]), "real-test"
    else:
        message = "no test data was available: accuracy not measured (give eval_data / eval_path)"
    metrics["synthetic_agreement"] = synthetic_agreement(run.student, teacher.model, method, cfg.val_samples,
                                                         cfg.batch_size, run.seeds.torch("final-synthetic"))
    if run.rows and "flip_fraction" in run.rows[-1]:
        metrics["flip_fraction"] = float(run.rows[-1]["flip_fraction"])
    _save_student(run, out / STUDENT_FILE)
    _write_samples(run)
    result = QuantResult(
        method=cfg.method, ait=cfg.ait, wbits=cfg.wbits, abits=cfg.abits, seed=cfg.seed, teacher=str(cfg.teacher),
        teacher_arch=teacher.spec.arch, dataset=(data.name if data is not None else teacher.spec.dataset),
        data_free=method.data_free, metrics=metrics, accuracy_source=source, test_samples=n_test,
        selection=selection, iterations=cfg.iterations, generator_warmup=cfg.generator_warmup if run.opt_g else 0,
        batch_size=cfg.batch_size, layer_bits={k: list(v) for k, v in layer_bits(run.student).items()},
        seconds=time.perf_counter() - t_start, message=message)
    write_quant_result(out, result)
    return result


def _write_metrics(out: Path, rows: List[Dict[str, Any]]) -> None:
    import pandas as pd
    atomic_write_text(out / METRICS_FILE, pd.DataFrame(rows).to_csv(index=False))


__all__ = ["NAMED_BITS", "QuantizeConfig", "SELECTIONS", "check_data_matches", "parse_bits", "quantize",
           "synthetic_agreement"]
