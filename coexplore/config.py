"""Run configuration: YAML defaults, then ``key=value`` overrides, then the resolved config
saved with the run (timm's ``args.yaml`` pattern).

Parsed configs are frozen, typed dataclasses validated at the boundary: unknown keys and
bad values fail with a message that names the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union, get_args, get_origin, get_type_hints

import yaml

from .common import ConfigError
from .common import read_yaml

from .objectives import Objective

METHODS = ("dance", "hdx", "nas-hw", "random", "evolution")
PATH_MODES = ("gumbel", "binary", "darts")


@dataclass(frozen=True)
class DataConfig:
    """Which data the search trains on."""

    name: str = "mnist-embedded"  # mnist-embedded | cifar10 | image-folder
    path: Optional[str] = None  # source for cifar10 / image-folder
    limit: Optional[int] = None  # cap per split (stratified), for quick runs
    val_fraction: float = 0.2  # training images held out for the architecture step
    batch_size: int = 64  # images per step
    augment: bool = True  # standard augmentation on the weight step


@dataclass(frozen=True)
class EvaluatorConfig:
    """The DANCE evaluator used as the differentiable hardware cost."""

    path: Optional[str] = None  # a trained checkpoint; None builds one (cached by spaces + cost model)
    num_arch: int = 5000  # architectures sampled when building
    pairs_per_arch: int = 24  # (architecture, accelerator) pairs per architecture when building
    epochs_generator: int = 30  # training epochs of the hardware-generation network
    epochs_estimator: int = 6  # training epochs of the cost-estimation network
    hw_mode: str = "argmax"  # straight-through relaxation of the generated hardware: argmax | gumbel


@dataclass(frozen=True)
class HDXConfig:
    """HDX gradient manipulation (see :mod:`coexplore.hdx`)."""

    kappa0: float = 0.1  # initial margin factor of delta
    growth: float = 1.5  # delta growth per step while violated
    decay: float = 0.5  # delta relaxation per step once met
    kappa_max: float = 10.0  # cap of the margin factor
    calibrate: bool = True  # tighten the surrogate's target when the analytical check disagrees
    calibrate_step: float = 0.03  # target tightening per disagreeing epoch (fraction of the bound)


@dataclass(frozen=True)
class RunConfig:
    """Everything a co-exploration run needs; saved as ``config.yaml`` in the run folder."""

    name: str = "search"  # run label
    method: str = "hdx"  # dance (soft penalty) | hdx (hard constraints) | nas-hw (FLOPs penalty, then HW)
    #                      | random | evolution (NSGA-II): one-shot baselines on the same budget
    seed: int = 0  # seeds data split, initialisation and sampling
    search_space: str = "tiny-mnist"  # built-in name or YAML path
    hardware_space: str = "small"  # built-in name or YAML path
    objective: Any = "edap"  # edap | edp | latency | energy | area | {weighted: {metric: w}}
    lam: float = 1.0  # lambda: weight of the normalised hardware cost in the loss
    constraints: Tuple[str, ...] = ()  # e.g. ["latency <= 2ms", "area <= 4mm2"]
    epochs: int = 8  # search epochs (after the warm-up)
    warmup_epochs: int = 2  # weights-only epochs first
    steps_per_epoch: Optional[int] = None  # cap steps per epoch (None: one pass over the train split)
    path_mode: str = "gumbel"  # gumbel | binary | darts
    hw_encoding: str = "expected"  # what the evaluator prices: expected (soft probabilities) | argmax (straight-through)
    tau0: float = 5.0  # initial Gumbel temperature
    tau_min: float = 0.5  # final Gumbel temperature (exponential schedule)
    w_lr: float = 0.05  # weight SGD learning rate (cosine)
    w_momentum: float = 0.9  # weight SGD momentum
    w_weight_decay: float = 4e-5  # weight SGD weight decay
    a_lr: float = 0.01  # architecture Adam learning rate
    a_weight_decay: float = 0.0  # architecture Adam weight decay
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    repair: bool = True  # repair a final design that violates a constraint (hdx: always on)
    baseline_budget: int = 48  # random / evolution: architectures scored (inherited accuracy + exact cost)
    population: int = 16  # evolution: population size
    joint_hw: bool = False  # evolution: the accelerator is a gene too (else chosen exactly per architecture)
    retrain_epochs: int = 0  # train the derived network from scratch afterwards (0: skip)
    retrain_lr: float = 0.05  # learning rate of the retraining
    progress: bool = True  # progress bars
    data: DataConfig = field(default_factory=DataConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    hdx: HDXConfig = field(default_factory=HDXConfig)

    def __post_init__(self) -> None:
        _check_choice("method", self.method, METHODS)
        _check_choice("path_mode", self.path_mode, PATH_MODES)
        _check_choice("hw_encoding", self.hw_encoding, ("expected", "argmax"))
        _check_choice("evaluator.hw_mode", self.evaluator.hw_mode, ("argmax", "gumbel"))
        Objective.parse(self.objective)
        for name in ("epochs", "warmup_epochs", "retrain_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: {name} must be >= 0, got {getattr(self, name)}")
        if self.epochs < 1:
            raise ConfigError("config: epochs must be >= 1")
        for name in ("lam", "w_lr", "a_lr", "tau0", "tau_min", "retrain_lr"):
            v = getattr(self, name)
            if not (v >= 0 if name == "lam" else v > 0):
                raise ConfigError(f"config: {name} must be {'>= 0' if name == 'lam' else '> 0'}, got {v}")
        if self.tau_min > self.tau0:
            raise ConfigError(f"config: tau_min ({self.tau_min}) must not exceed tau0 ({self.tau0})")
        if not 0 < self.data.val_fraction < 1:
            raise ConfigError(f"config: data.val_fraction must be in (0, 1), got {self.data.val_fraction}")
        if self.data.batch_size < 1:
            raise ConfigError("config: data.batch_size must be >= 1")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError("config: steps_per_epoch must be >= 1 or null")
        if self.method == "hdx" and not self.constraints:
            raise ConfigError("config: method 'hdx' needs at least one constraint, e.g. constraints: ['fps >= 60']")
        from .constraints import ConstraintSet  # parses and validates every constraint
        ConstraintSet.parse(list(self.constraints))

    # ---- I/O ---------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["constraints"] = list(self.constraints)
        d["objective"] = Objective.parse(self.objective).to_spec()
        return d

    def save(self, path: Union[str, Path]) -> None:
        from .common import write_yaml
        write_yaml(path, self.to_dict())


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"config: {name} is {value!r}; allowed values: {list(allowed)}")


def _build(cls, data: Mapping[str, Any], where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed fields: {sorted(names)}")
    kwargs = {}
    for k, v in data.items():
        t = hints[k]
        sub = f"{where}.{k}" if where else k
        if dataclasses.is_dataclass(t):
            kwargs[k] = _build(t, v or {}, sub)
        else:
            kwargs[k] = _coerce(t, v, sub)
    return cls(**kwargs)


def _coerce(t, v, where: str):
    origin = get_origin(t)
    if t is Any:
        return v
    if origin is Union:  # Optional[X]
        args = [a for a in get_args(t) if a is not type(None)]
        if v is None:
            return None
        return _coerce(args[0], v, where)
    if origin in (tuple, Tuple):
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"config: {where} must be a list, got {v!r}")
        return tuple(_coerce(get_args(t)[0], x, where) for x in v)
    if t is bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
            return v.lower() in ("true", "yes", "1")
        raise ConfigError(f"config: {where} must be true or false, got {v!r}")
    if t is int:
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, str) and not v.lstrip("-").isdigit()):
            raise ConfigError(f"config: {where} must be an integer, got {v!r}")
        return int(v)
    if t is float:
        try:
            if isinstance(v, bool):
                raise ValueError
            return float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"config: {where} must be a number, got {v!r}") from None
    if t is str:
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ConfigError(f"config: {where} must be a string, got {v!r}")
        return str(v)
    return v


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys for nested fields; values parsed as YAML)."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. epochs=4 or hdx.growth=2")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return out


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> RunConfig:
    """YAML file (optional) + overrides -> a validated :class:`RunConfig`."""
    data: Dict[str, Any] = {}
    where = "config"
    if path is not None:
        data = read_yaml(path) or {}
        where = str(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a run config must be a YAML mapping")
    if path is not None:
        data = _resolve_relative(data, Path(path).resolve().parent)
    data = apply_overrides(data, overrides)
    try:
        return _build(RunConfig, data, "")
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(f"{where}: {msg}" if not msg.startswith(where) else msg) from None


def _resolve_relative(data: Dict[str, Any], base: Path) -> Dict[str, Any]:
    """Paths inside a config file are relative to that file (when they exist there)."""
    def fix(value: Any) -> Any:
        if isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
            return str(base / value)
        return value

    out = dict(data)
    for key in ("search_space", "hardware_space"):
        if isinstance(out.get(key), str) and out[key].endswith((".yaml", ".yml")):
            out[key] = fix(out[key])
    for section, key in (("data", "path"), ("evaluator", "path")):
        if isinstance(out.get(section), dict) and out[section].get(key):
            out[section] = {**out[section], key: fix(out[section][key])}
    return out


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    return _build(RunConfig, dict(data), "")
