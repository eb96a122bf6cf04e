"""Run configuration: YAML defaults, then ``key=value`` overrides, then the resolved config
saved with the run (timm's ``args.yaml`` pattern).

Parsed configs are frozen, typed dataclasses validated at the boundary: unknown keys and
bad values fail with a message that names the field and the allowed values.  Objectives
and constraints are parsed here, once, and travel as :class:`~coexplore.objectives.Objective`
and :class:`~coexplore.constraints.ConstraintSet` objects; the search space and the
hardware space may be a built-in name, a YAML path, an inline mapping or the object itself.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union, get_args, get_origin, get_type_hints

import yaml

from .common import ConfigError, loads_yaml, read_yaml, write_yaml
from .constraints import ConstraintSet
from .objectives import Objective

PATH_MODES = ("gumbel", "binary", "darts")
HW_ENCODINGS = ("expected", "argmax")
#: layouts of the networks' 4-D tensors (search_spaces.train.MEMORY_FORMATS); speed only
MEMORY_FORMATS = ("channels_last", "contiguous")
#: mixed precision of the forward passes (search_spaces.train.AMP_MODES); speed, and bfloat16 rounding
AMP_MODES = ("auto", "bf16", "off")
HW_MODES = ("argmax", "gumbel")
SURROGATES = ("evaluator", "exact")
#: Seeds are 32-bit unsigned integers (what every RNG of the stack accepts).
MAX_SEED = 2 ** 32 - 1


@dataclass(frozen=True)
class DataConfig:
    """Which data the search trains on."""

    name: str = "mnist-embedded"  # mnist-embedded | cifar10 | image-folder | synthetic (data-free, DANCE++)
    path: Optional[str] = None  # source for cifar10 / image-folder (with synthetic: of the teacher's test split)
    limit: Optional[int] = None  # cap per split (stratified), for quick runs; null: everything
    val_fraction: float = 0.2  # training images held out for the architecture step, in (0, 1)
    batch_size: int = 64  # images per step
    augment: bool = True  # standard augmentation on the weight step
    teacher: Optional[str] = None  # synthetic: the teacher file (`coexplore teacher train`) the samples distil
    generator: str = "gdfq"  # synthetic: the data-free source: gdfq | qimera | clusterq | lrq | zeroq
    generator_steps: int = 200  # synthetic: training steps of the generator against the teacher, before the search
    synthetic_samples: int = 4000  # synthetic: images drawn from the generator (train + val)


#: The data-free sources a data-free search (``data.name: synthetic``) can draw from: the
#: generator-based methods of :mod:`coexplore.datafree` and ZeroQ's optimised noise.
DATAFREE_SOURCES = ("gdfq", "qimera", "clusterq", "lrq", "zeroq")


@dataclass(frozen=True)
class EvaluatorConfig:
    """The DANCE evaluator used as the differentiable hardware cost."""

    path: Optional[str] = None  # a trained checkpoint; null builds one (cached by spaces + cost source)
    num_arch: int = 5000  # architectures sampled when building
    pairs_per_arch: int = 24  # (architecture, accelerator) pairs per architecture when building
    epochs_generator: int = 30  # training epochs of the hardware-generation network
    epochs_estimator: int = 6  # training epochs of the cost-estimation network
    hw_mode: str = "argmax"  # straight-through relaxation of the generated hardware: argmax | gumbel


@dataclass(frozen=True)
class HDXConfig:
    """HDX gradient manipulation (see :mod:`coexplore.hdx`)."""

    kappa0: float = 0.1  # initial margin factor of delta, >= 0
    growth: float = 1.5  # delta growth per step while violated, >= 1
    decay: float = 0.5  # delta relaxation per step once met, in (0, 1] (0.95: slower, see docs/hdx.md)
    kappa_max: float = 10.0  # cap of the margin factor, >= kappa0
    calibrate: bool = True  # steer the surrogate's target by the analytical check, every epoch
    calibrate_step: float = 0.03  # target tightening per epoch whose analytical check fails (fraction of the bound), in [0, 0.5]


@dataclass(frozen=True)
class RunConfig:
    """Everything a co-exploration run needs; saved as ``config.yaml`` in the run folder."""

    name: str = "search"  # run label (a name, not a path)
    method: str = "dance"  # a registered method: dance | hdx (needs constraints) | nas-hw | random | evolution | dance-lut | hdx-lut | yours
    seed: int = 0  # seeds data split, initialisation and sampling; 0 .. 2^32-1
    search_space: Any = "tiny-mnist"  # built-in name, YAML path, inline mapping or a SearchSpace (or a DetectionSpace)
    hardware_space: Any = "small"  # built-in name, YAML path, inline mapping or a HardwareSpace
    cost_model: str = "analytical"  # the cost source that prices and checks designs: analytical | measured-cpu | measured-cpu-onnxruntime | measured-cuda
    mapping_objective: str = "edp"  # what the cost model's per-layer mapping search minimises
    objective: Objective = Objective("edap")  # network objective: edap | edp | latency | energy | area | {weighted: ...}
    lam: float = 1.0  # lambda: weight of the normalised hardware cost in the loss, >= 0
    constraints: ConstraintSet = ConstraintSet()  # e.g. ["latency <= 2ms", "area <= 4mm2"]
    warmup_epochs: int = 2  # weights-only epochs first, >= 0
    search_epochs: int = 8  # epochs of the search after the warm-up, >= 1 (a run has warmup + search epochs)
    steps_per_epoch: Optional[int] = None  # cap steps per epoch (null: one pass over the train split)
    path_mode: str = "gumbel"  # gumbel | binary | darts
    hw_encoding: str = "expected"  # what the hardware cost prices: expected (soft probabilities) | argmax (straight-through)
    surrogate: str = "evaluator"  # differentiable hardware cost of dance/hdx: evaluator (DANCE's network) | exact (the cost table)
    tau0: float = 5.0  # initial Gumbel temperature, > 0
    tau_min: float = 0.5  # final Gumbel temperature (exponential schedule), in (0, tau0]
    w_lr: float = 0.05  # weight SGD learning rate (cosine), > 0
    w_momentum: float = 0.9  # weight SGD (Nesterov) momentum, in (0, 1)
    w_weight_decay: float = 4e-5  # weight SGD weight decay, >= 0
    a_lr: float = 0.01  # architecture Adam learning rate, > 0
    a_weight_decay: float = 0.0  # architecture Adam weight decay, >= 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    memory_format: str = "channels_last"  # layout of the networks' 4-D tensors: channels_last | contiguous (speed only)
    amp: str = "auto"  # forward passes' mixed precision: auto (bfloat16 on CUDA, float32 on CPU) | bf16 | off
    repair: bool = True  # repair a final design that violates a constraint (every method honours it)
    baseline_budget: int = 48  # random / evolution: architectures scored (inherited accuracy + exact cost), >= 1
    population: int = 16  # evolution: population size, >= 2
    joint_hw: bool = False  # evolution: the accelerator is a gene too (else chosen exactly per architecture)
    retrain_epochs: int = 0  # train the derived network from scratch afterwards (0: skip)
    retrain_lr: float = 0.05  # learning rate of the retraining, > 0
    progress: bool = True  # progress bars (not part of a run's identity)
    tensorboard: bool = False  # also write TensorBoard scalars to <run>/tensorboard (pip install "coexplore[tensorboard]")
    data: DataConfig = field(default_factory=DataConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    hdx: HDXConfig = field(default_factory=HDXConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objective", Objective.parse(self.objective))
        object.__setattr__(self, "constraints", ConstraintSet.parse(self.constraints))
        _validate(self)

    # ---- resolved objects ---------------------------------------------------------------
    def resolve_search_space(self):
        """The :class:`~search_spaces.SearchSpace` this config names (or holds)."""
        return resolve_search_space(self.search_space)

    def resolve_hardware_space(self):
        """The :class:`~accelerators.HardwareSpace` this config names (or holds)."""
        return resolve_hardware_space(self.hardware_space)

    def cost_source(self):
        """The configured cost source (:class:`~accelerators.CostSource`)."""
        from accelerators import get_cost_source
        return get_cost_source(self.cost_model, mapping_objective=self.mapping_objective)

    def get_method(self):
        """The registered :class:`~coexplore.methods.Method` of this config."""
        from .methods import get_method
        return get_method(self.method)

    # ---- I/O ---------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A plain, YAML-ready mapping (spaces given as objects are written inline)."""
        d: Dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("search_space", "hardware_space"):
                v = v.to_dict() if hasattr(v, "to_dict") else v
            elif f.name == "objective":
                v = v.to_spec()
            elif f.name == "constraints":
                v = v.to_list()
            elif dataclasses.is_dataclass(v):
                v = dataclasses.asdict(v)
            d[f.name] = v
        return d

    def identity(self) -> Dict[str, Any]:
        """:meth:`to_dict` without what does not change the result (``progress``): what a
        resume compares."""
        d = self.to_dict()
        d.pop("progress", None)
        d.pop("tensorboard", None)
        return d

    def save(self, path: Union[str, Path]) -> None:
        write_yaml(path, self.to_dict())

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------

def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(name: str, v: Any, lo: Optional[float] = None, hi: Optional[float] = None, lo_open: bool = False,
         hi_open: bool = False) -> None:
    lo_s = "" if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
    hi_s = "" if hi is None else (f"< {hi:g}" if hi_open else f"<= {hi:g}")
    rng = " and ".join(s for s in (lo_s, hi_s) if s) or "finite"
    if not _is_num(v) or not math.isfinite(v):
        raise ConfigError(f"config: {name} must be a finite number ({rng}), got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ConfigError(f"config: {name} must be {rng}, got {v!r}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ConfigError(f"config: {name} must be {rng}, got {v!r}")


def _int(name: str, v: Any, lo: int, hi: Optional[int] = None) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"config: {name} must be an integer >= {lo}, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ConfigError(f"config: {name} must be an integer {rng}, got {v!r}")


def _choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"config: {name} is {value!r}; allowed values: {list(allowed)}")


def _validate(c: RunConfig) -> None:
    import re
    if not isinstance(c.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}", c.name):
        raise ConfigError(f"config: name must be a run name (letters, digits and . _ + = -, at most 128 characters, "
                          f"no path separators), got {c.name!r}")
    from .methods import METHODS
    if c.method not in METHODS:
        METHODS.get(c.method)  # raises UnknownNameError listing the registered methods
    _int("seed", c.seed, 0, MAX_SEED)
    _choice("path_mode", c.path_mode, PATH_MODES)
    _choice("hw_encoding", c.hw_encoding, HW_ENCODINGS)
    _choice("memory_format", c.memory_format, MEMORY_FORMATS)
    _choice("amp", c.amp, AMP_MODES)
    _choice("surrogate", c.surrogate, SURROGATES)
    _choice("evaluator.hw_mode", c.evaluator.hw_mode, HW_MODES)
    from accelerators import MAPPING_OBJECTIVES, list_cost_sources
    _choice("cost_model", c.cost_model, list_cost_sources())
    _choice("mapping_objective", c.mapping_objective, MAPPING_OBJECTIVES)
    _int("search_epochs", c.search_epochs, 1)
    _int("warmup_epochs", c.warmup_epochs, 0)
    _int("retrain_epochs", c.retrain_epochs, 0)
    if c.steps_per_epoch is not None:
        _int("steps_per_epoch", c.steps_per_epoch, 1)
    _num("lam", c.lam, 0.0)
    for name in ("w_lr", "a_lr", "tau0", "tau_min", "retrain_lr"):
        _num(name, getattr(c, name), 0.0, lo_open=True)
    if c.tau_min > c.tau0:
        raise ConfigError(f"config: tau_min ({c.tau_min}) must not exceed tau0 ({c.tau0})")
    _num("w_momentum", c.w_momentum, 0.0, 1.0, lo_open=True, hi_open=True)  # Nesterov needs momentum > 0
    _num("w_weight_decay", c.w_weight_decay, 0.0)
    _num("a_weight_decay", c.a_weight_decay, 0.0)
    _device(c.device)
    _int("baseline_budget", c.baseline_budget, 1)
    _int("population", c.population, 2)
    for name in ("repair", "joint_hw", "progress", "tensorboard", "data.augment", "hdx.calibrate"):
        obj, attr = (c, name) if "." not in name else (getattr(c, name.split(".")[0]), name.split(".")[1])
        if not isinstance(getattr(obj, attr), bool):
            raise ConfigError(f"config: {name} must be true or false, got {getattr(obj, attr)!r}")
    d = c.data
    if not isinstance(d.name, str) or not d.name:
        raise ConfigError(f"config: data.name must be a dataset name, got {d.name!r}")
    if d.limit is not None:
        _int("data.limit", d.limit, 1)
    _num("data.val_fraction", d.val_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
    _int("data.batch_size", d.batch_size, 1, 1 << 16)
    _int("data.generator_steps", d.generator_steps, 0, 1 << 24)
    _int("data.synthetic_samples", d.synthetic_samples, 2, 1 << 24)
    if d.name == "synthetic":
        if not isinstance(d.teacher, str) or not d.teacher:
            raise ConfigError("config: data.teacher is required with data.name: synthetic (a teacher file from "
                              "`coexplore teacher train`)")
        free = sorted(DATAFREE_SOURCES)
        if d.generator not in free:
            raise ConfigError(f"config: data.generator must be one of {', '.join(free)}, got {d.generator!r}")
    elif d.teacher is not None:
        raise ConfigError(f"config: data.teacher is only used with data.name: synthetic (data.name is {d.name!r})")
    e = c.evaluator
    _int("evaluator.num_arch", e.num_arch, 10)
    _int("evaluator.pairs_per_arch", e.pairs_per_arch, 1)
    _int("evaluator.epochs_generator", e.epochs_generator, 1)
    _int("evaluator.epochs_estimator", e.epochs_estimator, 1)
    h = c.hdx
    _num("hdx.kappa0", h.kappa0, 0.0)
    _num("hdx.growth", h.growth, 1.0)
    _num("hdx.decay", h.decay, 0.0, 1.0, lo_open=True)
    _num("hdx.kappa_max", h.kappa_max, h.kappa0)
    _num("hdx.calibrate_step", h.calibrate_step, 0.0, 0.5)
    method = c.get_method()
    if method.needs_constraints and not len(c.constraints):
        raise ConfigError(f"config: method {c.method!r} needs at least one constraint, e.g. constraints: ['fps >= 60']")
    for key in ("search_space", "hardware_space"):
        v = getattr(c, key)
        if not (isinstance(v, (str, Mapping)) or hasattr(v, "to_dict")):
            raise ConfigError(f"config: {key} must be a built-in name, a YAML path, a mapping or a space object, "
                              f"got {type(v).__name__}")
        if isinstance(v, str) and not v:
            raise ConfigError(f"config: {key} must not be empty")


def _device(name: Any) -> None:
    allowed = "auto, cpu, cuda or cuda:N"
    if not isinstance(name, str) or not (name in ("auto", "cpu", "cuda") or
                                         (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"config: device is {name!r}; allowed values: {allowed}")


# ---------------------------------------------------------------------------------------
# spaces by name, path, mapping or object
# ---------------------------------------------------------------------------------------

def resolve_search_space(value: Any):
    from search_spaces import SearchSpace, get_search_space
    from search_spaces.detection import resolve_detection_space
    if isinstance(value, SearchSpace):
        return value
    detection = resolve_detection_space(value)  # a detection space: object, kind: detection mapping / YAML, or name
    if detection is not None:
        return detection
    if isinstance(value, Mapping):
        return SearchSpace.from_dict(value, where="config: search_space")
    return get_search_space(value)


def resolve_hardware_space(value: Any):
    from accelerators import HardwareSpace, get_hardware_space
    if isinstance(value, HardwareSpace):
        return value
    if isinstance(value, Mapping):
        return HardwareSpace.from_dict(value, where="config: hardware_space")
    return get_hardware_space(value)


# ---------------------------------------------------------------------------------------
# building from plain data
# ---------------------------------------------------------------------------------------

def _build(cls, data: Mapping[str, Any], where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {where or 'the config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(str(k) for k in set(data) - names)
    if unknown:
        sect = f"{where}: " if where else ""
        hint = ""
        if cls is RunConfig and "epochs" in unknown:
            hint = " (epochs was renamed: a run has warmup_epochs, then search_epochs)"
        else:
            import difflib
            close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"config: {sect}unknown field(s) {unknown}{hint}; allowed fields: {sorted(names)}")
    kwargs = {}
    for k, v in data.items():
        t = hints[k]
        sub = f"{where}.{k}" if where else k
        if dataclasses.is_dataclass(t) and t is not Objective:
            kwargs[k] = _build(t, v if v is not None else {}, sub)
        else:
            kwargs[k] = _coerce(t, v, sub)
    return cls(**kwargs)


def _coerce(t, v, where: str):
    origin = get_origin(t)
    if t is Any:
        return v
    if t is Objective:
        return Objective.parse(v)
    if t is ConstraintSet:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple, ConstraintSet)) and v is not None:
            raise ConfigError(f"config: {where} must be a list of constraints such as ['latency <= 2ms'], got {v!r}")
        return ConstraintSet.parse(v)
    if origin is Union:  # Optional[X]
        args = [a for a in get_args(t) if a is not type(None)]
        if v is None:
            return None
        return _coerce(args[0], v, where)
    if t is bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no"):
            return v.lower() in ("true", "yes")
        raise ConfigError(f"config: {where} must be true or false, got {v!r}")
    if t is int:
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, str) and not v.lstrip("-").isdigit()):
            if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 63:
                return int(v)
            raise ConfigError(f"config: {where} must be an integer, got {v!r}")
        return int(v)
    if t is float:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ConfigError(f"config: {where} must be a number, got {v!r}")
        try:
            return float(v)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"config: {where} must be a number, got {v!r}") from None
    if t is str:
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ConfigError(f"config: {where} must be a string, got {v!r}")
        return str(v)
    return v


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys for nested fields; values parsed as YAML)."""
    out = yaml.safe_load(yaml.safe_dump(_plain(data)))  # deep copy
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. search_epochs=4 or hdx.growth=2")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r}: expected key=value, e.g. search_epochs=4 or hdx.growth=2")
        try:
            value = loads_yaml(raw, where=f"override {key}") if raw != "" else None
        except ConfigError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _plain(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    if hasattr(data, "to_dict") and not isinstance(data, type):
        return _plain(data.to_dict())
    if isinstance(data, ConstraintSet):
        return data.to_list()
    return data


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> RunConfig:
    """YAML file (optional) + overrides -> a validated :class:`RunConfig`."""
    data: Dict[str, Any] = {}
    where = "config"
    if path is not None:
        raw = read_yaml(path)
        where = str(path)
        if raw is None:
            raise ConfigError(f"{path}: the file is empty; a run config is a YAML mapping of fields "
                              f"(see `coexplore config --defaults`)")
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a run config must be a YAML mapping, got {type(raw).__name__}")
        data = _resolve_relative(raw, Path(path).resolve().parent)
    data = apply_overrides(data, overrides)
    try:
        return _build(RunConfig, data, "")
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(f"{where}: {msg.removeprefix('config: ')}" if path is not None else msg) from None


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
    for section, key in (("data", "path"), ("data", "teacher"), ("evaluator", "path")):
        if isinstance(out.get(section), dict) and out[section].get(key):
            out[section] = {**out[section], key: fix(out[section][key])}
    return out


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """A :class:`RunConfig` from a plain mapping (e.g. a saved ``config.yaml``)."""
    return _build(RunConfig, dict(data), "")


def config_diff(a: RunConfig, b: RunConfig) -> Dict[str, Tuple[Any, Any]]:
    """``{dotted key: (a's value, b's value)}`` of the fields that differ (``progress`` ignored)."""
    def flat(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping) and k not in ("search_space", "hardware_space", "objective"):
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    fa, fb = flat(a.identity()), flat(b.identity())
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


# ---------------------------------------------------------------------------------------
# the config reference (coexplore config --defaults; docs/config.md)
# ---------------------------------------------------------------------------------------

_UNITS = {
    "seed": "-", "lam": "-", "search_epochs": "epochs", "warmup_epochs": "epochs", "steps_per_epoch": "steps",
    "tau0": "-", "tau_min": "-", "retrain_epochs": "epochs", "baseline_budget": "architectures",
    "population": "designs", "data.limit": "images per split", "data.batch_size": "images",
    "data.generator_steps": "steps", "data.synthetic_samples": "images",
    "data.val_fraction": "fraction", "evaluator.num_arch": "architectures", "evaluator.pairs_per_arch": "pairs",
    "evaluator.epochs_generator": "epochs", "evaluator.epochs_estimator": "epochs",
    "hdx.calibrate_step": "fraction of the bound",
}


def _field_comments(cls) -> Dict[str, str]:
    import inspect
    import re
    out: Dict[str, str] = {}
    last = None
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"^\s{4}(\w+): .*?#\s*(.*)$", line)
        if m:
            last = m.group(1)
            out[last] = m.group(2).strip()
        elif last is not None and re.match(r"^\s{8,}#\s+\S", line):  # a continuation of the last comment
            out[last] += " " + line.strip()[1:].strip()
        else:
            last = None
    return out


def config_reference() -> list:
    """Every run-config key: ``key, type, default, unit, meaning`` (dotted keys for sections)."""
    defaults = RunConfig().to_dict()
    rows = []

    def walk(cls, prefix: str, values: Mapping[str, Any]) -> None:
        hints = get_type_hints(cls)
        comments = _field_comments(cls)
        for f in fields(cls):
            key = f"{prefix}{f.name}"
            t = hints[f.name]
            if dataclasses.is_dataclass(t) and t is not Objective:
                walk(t, key + ".", values[f.name])
                continue
            tname = {Objective: "objective", ConstraintSet: "list of constraints"}.get(t)
            if tname is None:
                if f.name in ("search_space", "hardware_space"):
                    tname = "name, path, mapping or object"
                elif get_origin(t) is Union:
                    tname = " or ".join(getattr(a, "__name__", str(a)).replace("NoneType", "null") for a in get_args(t))
                else:
                    tname = getattr(t, "__name__", str(t))
            rows.append({"key": key, "type": tname, "default": values[f.name], "unit": _UNITS.get(key, "-"),
                         "meaning": comments.get(f.name, "")})

    walk(RunConfig, "", defaults)
    return rows


def reference_markdown(rows: Optional[list] = None) -> str:
    """The reference as the markdown of ``docs/config.md``."""
    rows = config_reference() if rows is None else rows

    def cell(v: Any) -> str:
        text = yaml.safe_dump(v, default_flow_style=True, width=1 << 20).strip()
        if text.endswith("\n..."):
            text = text[:-4].strip()
        return "`" + text.replace("|", "\\|") + "`"

    lines = ["# Run-config reference", "",
             "Every key of a run config (`coexplore search -c CONFIG.yaml key=value ...`), with its type, default,",
             "unit and meaning. Sections are dotted (`data.limit=500`). Generated from the typed config by",
             "`coexplore config --defaults`; a test fails when this file and the code disagree.", "",
             "A run has `warmup_epochs` (weights only) and then `search_epochs` (weights and architecture):",
             "`warmup_epochs + search_epochs` epochs in all, the total shown in the progress bar and in",
             "`result.json` (`epochs`).", "",
             "| key | type | default | unit | meaning |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['key']}` | {r['type']} | {cell(r['default'])} | {r['unit']} | {r['meaning'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"
