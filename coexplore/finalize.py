"""The end of a run: select, verify, repair, score, retrain, report.

:class:`Finalizer` turns a trained search into a :class:`~coexplore.runfolder.Result`:
the method selects the architecture (:meth:`coexplore.methods.Method.select`), the
verifier checks it exactly and, when ``repair`` is on and a constraint is missed, repairs
it; the design is scored with inherited weights, retrained from scratch if asked, and
flagged when its accuracy is indistinguishable from guessing.  :func:`retrain` is the one
retraining path, shared with ``coexplore retrain``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

import torch

from .runfolder import Result

if TYPE_CHECKING:  # pragma: no cover
    from .search import CoExplorer

logger = logging.getLogger(__name__)


def chance_level(accuracy: float, chance: float, samples: int, sigmas: float = 3.0) -> bool:
    """Whether ``accuracy`` measured on ``samples`` examples is within ``sigmas`` binomial
    standard deviations of ``chance``, the score of guessing (``1 / num_classes`` for a
    balanced classifier; see each task's ``chance``).  A NaN accuracy counts as chance level.
    """
    if not math.isfinite(accuracy) or samples <= 0:
        return True
    p = min(max(float(chance), 0.0), 1.0)
    return accuracy <= p + sigmas * math.sqrt(max(p * (1.0 - p), 1e-12) / samples)


def retrain(space, sample: Mapping[str, Any], data, epochs: int, lr: float, device: Any, seed: int,
            progress: bool = False, float_reference: bool = False,
            memory_format: str = "channels_last", amp: str = "off") -> Dict[str, Any]:
    """Train one architecture from scratch on the training split and score it on the test split.

    Initial weights are drawn from a generator seeded by ``seed`` (and module construction
    runs with torch's global generator forked), so the same call gives the same network
    wherever it is made.

    Args:
        space: the search space.
        sample: the architecture ``{label: op}``.
        data: a :class:`~search_spaces.data.DataBundle` (``train`` and ``test`` loaders).
        epochs: training epochs (>= 1).
        lr: initial learning rate of SGD (cosine-annealed).
        device: where to train.
        seed: seeds the initialisation and the training's own randomness.
        progress: progress bars.
        float_reference: in a space with bit widths, also train the same architecture in float
            (same seed) and report its accuracy as ``float_test_accuracy``.
        memory_format: the layout the network trains in (``channels_last`` or ``contiguous``;
            speed only).
        amp: the forward passes' mixed precision (``auto``, ``bf16``, ``off``; the test pass too).

    In a space with bit widths (``space.has_bits``) the network is built with its quantised
    ops at the sample's bits (LSQ weights, PACT activations), so this is quantisation-aware
    training, and ``test_accuracy`` is the quantised accuracy.

    Returns:
        ``epochs``, ``lr``, ``test_accuracy``, ``test_loss``, ``test_samples``,
        ``final_train_accuracy``, ``parameters``, ``seconds``; with bit widths also
        ``quantized: true``, ``quantized_test_accuracy`` (= ``test_accuracy``), ``bits``
        (layer counts per ``w{b}a{b}`` and the weight storage in bits) and, with
        ``float_reference``, ``float_test_accuracy``.

    Raises:
        coexplore.trainer.DivergedError: the training or test loss is not finite.
    """
    from search_spaces import build_network, evaluate_network, train_network
    from search_spaces.tasks import get_task

    from .seeds import RunSeeds, isolated_torch_rng
    from .trainer import DivergedError

    task_retrain = getattr(get_task(space), "retrain", None)  # a task may train its networks its own way
    if task_retrain is not None:
        rt = task_retrain(space, sample, data, epochs, lr, device, seed, progress=progress)
        for what in ("final_train_loss", "test_loss"):
            if not math.isfinite(float(rt.get(what, 0.0))):
                raise DivergedError(f"retraining: the {what.replace('_', ' ')} is not finite after {epochs} epoch(s) "
                                    f"at lr {lr:g}; lower retrain_lr")
        return rt
    seeds = RunSeeds(seed)
    quantized = bool(getattr(space, "has_bits", False))

    def one(quant: bool):
        with isolated_torch_rng(seeds.entropy("retrain-init")):
            model = build_network(space, sample, generator=seeds.torch("retrain-init"), quantized=quant)
        hist = train_network(model, data.train, epochs, lr, device, seed=seeds.entropy("retrain-steps") % (2 ** 63),
                             progress=progress, memory_format=memory_format, amp=amp)
        res = evaluate_network(model, data.test, device, amp=amp)
        train_loss = float(hist[-1]["loss"]) if hist else float("nan")
        if not math.isfinite(train_loss) or not math.isfinite(float(res["loss"])):
            raise DivergedError(f"retraining: the {'training' if not math.isfinite(train_loss) else 'test'} loss is "
                                f"not finite after {epochs} epoch(s) at lr {lr:g}; lower retrain_lr")
        return model, hist, res

    t0 = time.perf_counter()
    model, hist, res = one(quantized)
    out = {"epochs": int(epochs), "lr": float(lr), "test_accuracy": float(res["accuracy"]),
           "test_loss": float(res["loss"]), "test_samples": int(res["samples"]),
           "final_train_accuracy": float(hist[-1]["accuracy"]) if hist else None,
           "parameters": int(sum(p.numel() for p in model.parameters())),
           "seconds": time.perf_counter() - t0}
    if quantized:
        from search_spaces.quant import bit_summary
        out.update(quantized=True, quantized_test_accuracy=out["test_accuracy"], bits=bit_summary(model))
        if float_reference:
            _, _, fres = one(False)
            out["float_test_accuracy"] = float(fres["accuracy"])
            out["seconds"] = time.perf_counter() - t0
    return out


class Finalizer:
    """Builds the result of a finished search (see the module docstring)."""

    def __init__(self, run: "CoExplorer") -> None:
        self.run = run

    def finalize(self) -> Result:
        run, cfg = self.run, self.run.cfg
        sample, extra = run.method.select(run)
        generated = None
        if run.has_evaluator:
            with torch.no_grad():
                generated = run.evaluator().predict_accelerator(run.trainer.hw_encoding().detach()).to_dict()
        v = run.verifier.check(sample)
        repairs = []
        if not v["feasible"] and len(run.constraints) and cfg.repair:
            sample, v, repairs = run.verifier.repair(sample, run.arch_log_probs())
        scored = run.evaluate_architecture(sample)
        acc = float(scored[run.task.metric])
        metrics: Dict[str, Optional[float]] = {"accuracy": acc, "error": 1.0 - acc, **v["metrics"]}
        if run.task.metric != "accuracy":  # e.g. "map": also under its own name
            metrics[run.task.metric] = acc
        stats = getattr(run.task, "design_stats", None)  # e.g. a detector's parameters and GFLOPs
        if stats is not None:
            metrics.update(stats(run.space, sample))
        met = bool(all(c["satisfied"] for c in v["constraints"]))
        guess = run.task.chance(run.space.num_classes)
        chance = chance_level(acc, guess, int(scored["samples"]))
        result = Result(
            method=cfg.method, name=cfg.name, seed=cfg.seed, search_space=run.space.name,
            hardware_space=run.hw_space.name, objective=cfg.objective.to_spec(), lam=cfg.lam,
            status="ok" if met else "constraints-violated", architecture=dict(sample),
            accelerator=v["accelerator"].to_dict(), metrics=metrics, accuracy_source="supernet-val",
            search_accuracy=acc, chance_level=chance, constraints=v["constraints"], all_constraints_met=met,
            repairs=repairs, generated_accelerator=generated, checked_by=run.cost_source.name,
            cost_source=run.cost_source.describe(), cost_model_version=run.cost_source.describe().get("version", ""),
            feasibility=run.feasibility, epochs=run.total_epochs, warmup_epochs=cfg.warmup_epochs,
            baseline=extra)
        if cfg.retrain_epochs > 0:
            rt = retrain(run.space, sample, run.data, cfg.retrain_epochs, cfg.retrain_lr, run.device, cfg.seed,
                         progress=cfg.progress, float_reference=bool(getattr(run.space, "has_bits", False)),
                         memory_format=cfg.memory_format, amp=cfg.amp)
            acc = rt["test_accuracy"]
            result = result.with_(retrain=rt, accuracy_source="retrained-test",
                                  metrics={**metrics, "accuracy": acc, "error": 1.0 - acc,
                                           **({run.task.metric: acc} if run.task.metric != "accuracy" else {})},
                                  chance_level=chance_level(acc, guess, rt["test_samples"]))
        if result.chance_level:
            logger.warning("the final design's accuracy (%.1f%%, %s) is at chance level for %d classes: the budget "
                           "is too small to tell anything about this design", 100 * result.metrics["accuracy"],
                           result.accuracy_source, run.space.num_classes)
        return result.with_(seconds=run.elapsed())  # the session's clock already runs through the finalisation
