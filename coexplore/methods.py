"""Co-exploration methods as registered objects.

A method declares what it needs and implements its steps; the search loop
(:class:`~coexplore.search.CoExplorer`) asks, and never checks a method's name.

========== ============================================================ ==========================
method     what it does                                                 needs
========== ============================================================ ==========================
dance      ``CE + lambda * cost`` with DANCE's neural evaluator           evaluator
           (Choi et al., DAC 2021)
hdx        DANCE's loss plus hard constraints by gradient manipulation  evaluator, constraints
           (Hong et al., DAC 2022), the targets calibrated every epoch
nas-hw     NAS with a FLOPs penalty, then the best accelerator for the  --
           found network (the sequential baseline of DANCE and HDX)
random     random search over the trained one-shot supernet             one-shot supernet
evolution  NSGA-II over the trained one-shot supernet (pymoo)           one-shot supernet
========== ============================================================ ==========================

Add your own with :func:`register_method`::

    @register_method("mine")
    class Mine(Method):
        description = "DANCE with a latency-only cost"
        needs_evaluator = True

        def hardware_cost(self, run):
            ...  # any coexplore.penalty.HardwareCost

The hooks receive ``run``, the :class:`~coexplore.search.CoExplorer` (its ``cfg``,
``space``, ``table``, ``verifier``, ``supernet``, ``seeds``, ``evaluator()`` ...).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .common import Registry

METHODS: Registry = Registry("method")


def register_method(name: str):
    """Class decorator registering a :class:`Method` subclass under ``name``."""

    def deco(cls):
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return deco


def get_method(name: str) -> "Method":
    """A fresh instance of the registered method ``name``; unknown names list the known ones."""
    return METHODS.get(name)()


def list_methods():
    return METHODS.names()


class Method:
    """What a co-exploration method is to the search loop.

    Attributes:
        name: its registry name.
        description: one line for ``coexplore list``.
        needs_evaluator: the method prices architectures with a differentiable hardware
            surrogate: DANCE's evaluator (built and cached, or loaded from
            ``evaluator.path``) or, with ``surrogate: exact``, the exact cost table.
        evaluator_constraints: train the evaluator's generator for the best accelerator
            *under the run's constraints* (HDX's choice of hardware).
        needs_constraints: refuse a config without constraints.
        trains_architecture: bilevel search (architecture steps after the warm-up); False:
            one-shot -- every epoch trains the weights only, then :meth:`select` searches.
    """

    name = ""
    description = ""
    needs_evaluator = False
    evaluator_constraints = False
    needs_constraints = False
    trains_architecture = True

    def hardware_cost(self, run):
        """The differentiable hardware cost of the architecture step (a
        :class:`~coexplore.penalty.HardwareCost`), or None for none.

        Methods that need a hardware surrogate get the one the config's ``surrogate`` names:
        DANCE's neural evaluator (``evaluator``, built or loaded on first use) or the exact
        cost table (``exact``, no training step).
        """
        if not self.needs_evaluator:
            return None
        if run.cfg.surrogate == "exact":
            from .penalty import ExactTableCost
            cons = run.cfg.constraints if self.evaluator_constraints else None
            from .constraints import ConstraintSet
            return ExactTableCost(run.table, run.cfg.objective, cons if cons is not None else ConstraintSet())
        from .penalty import EvaluatorCost
        return EvaluatorCost(run.evaluator(), run.cfg.objective, run.cfg.evaluator.hw_mode)

    def steering(self, run):
        """An object with ``adjust(grads, params, out) -> grads`` (and ``state_dict`` /
        ``load_state_dict``) applied to every architecture gradient, or None."""
        return None

    def calibrator(self, run):
        """A per-epoch calibrator with ``update(surrogate, analytical, checks) -> logs``, or None."""
        return None

    def select(self, run) -> Tuple[Dict[str, str], Optional[Dict[str, Any]]]:
        """The final architecture, and method-specific result fields (or None).

        Default: the supernet's most likely architecture.
        """
        return run.supernet.derive(), None


@register_method("dance")
class Dance(Method):
    description = "DANCE (DAC 2021): CE + lambda * cost with the neural evaluator (soft penalty)"
    needs_evaluator = True


@register_method("hdx")
class HDX(Method):
    description = "HDX (DAC 2022): DANCE's loss + hard constraints by gradient manipulation"
    needs_evaluator = True
    evaluator_constraints = True
    needs_constraints = True

    def steering(self, run):
        from .hdx import HDXManipulator, HDXSteering
        h = run.cfg.hdx
        return HDXSteering(run.targets, HDXManipulator(len(run.targets), kappa0=h.kappa0, growth=h.growth,
                                                       decay=h.decay, kappa_max=h.kappa_max))

    def calibrator(self, run):
        if not run.cfg.hdx.calibrate:
            return None
        from .calibrate import Calibrator
        return Calibrator(run.targets, step=run.cfg.hdx.calibrate_step)


@register_method("nas-hw")
class NASThenHardware(Method):
    description = "NAS->HW: a FLOPs penalty during NAS, then the best accelerator for the network"

    def hardware_cost(self, run):
        from .penalty import MacsCost
        return MacsCost.for_space(run.space)


class _OneShot(Method):
    trains_architecture = False
    algorithm = ""

    def select(self, run):
        from .baselines import OneShotProblem, evolution_search, random_search
        cfg = run.cfg
        problem = OneShotProblem(run.verifier, run.inherited_accuracy, lam=cfg.lam)
        rng = run.seeds.numpy("baseline")
        if self.algorithm == "random":
            res = random_search(problem, cfg.baseline_budget, rng)
        else:
            res = evolution_search(problem, cfg.baseline_budget, rng, population=cfg.population,
                                   joint_hw=cfg.joint_hw)
        run.write_baseline_history(res["history"])
        extra = {k: res[k] for k in ("evaluations", "budget", "stop_reason", "feasible_found", "cost_ref",
                                     "selection") if k in res}
        return dict(res["best"]), extra


@register_method("random")
class RandomSearchMethod(_OneShot):
    description = "random search over the trained one-shot supernet, exact hardware per architecture"
    algorithm = "random"


@register_method("evolution")
class EvolutionMethod(_OneShot):
    description = "NSGA-II (pymoo) over the trained one-shot supernet, constraint domination"
    algorithm = "evolution"


from . import lut_methods as _lut_methods  # noqa: E402,F401 - registers dance-lut and hdx-lut
