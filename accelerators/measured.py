"""Measured latency as a cost source: what a network costs on the machine it runs on.

Edge engineers want a detector priced on the device they ship on, not on a model of an
accelerator.  This module measures latency the way the hardware-aware NAS literature does
(ProxylessNAS, Cai et al., ICLR 2019; FBNet, Wu et al., CVPR 2019): module by module, into
a **latency lookup table**, so that the expected latency of an architecture distribution
is a sum -- and differentiable -- over the table.

How one module is measured (:meth:`MeasuredLatency.measure`):

* batch 1, inference mode (``torch.no_grad``), weights as built;
* BatchNorm folded into the preceding convolution (:func:`fuse_batchnorm`), as any
  deployment does -- a measured BatchNorm is a cost nobody ships;
* a fixed thread count (``threads``, default 1: reproducible on a loaded machine, and the
  budget of many edge CPUs), set for the measurement only;
* ``warmup`` untimed runs, then ``torch.utils.benchmark.Timer.blocked_autorange``: blocks of
  runs until ``min_run_time`` seconds have passed, and the **median** time per run over the
  blocks (the interquartile range is recorded beside it);
* on CUDA the module and inputs live on the GPU and every timed block is synchronised
  (``Timer`` does it; warm-up ends with ``torch.cuda.synchronize``);
* ``runtime="onnxruntime"`` (CPU) exports the module with ``torch.onnx.export`` and times an
  ``onnxruntime.InferenceSession`` with ``intra_op_num_threads = threads`` instead of eager
  torch (see ``docs/detection.md`` for which is steadier here).

A :class:`LatencyTable` records the machine it was measured on (OS, architecture, CPU model,
logical CPU count, GPU name), the torch (and onnxruntime) version, the thread count and
the other settings.  :meth:`LatencyTable.check_machine` refuses a table from another
machine or setting with a one-line :class:`~coexplore.common.ConfigError` naming the field
that differs: a latency measured elsewhere says nothing about here.  (The host name is
recorded but not compared: two containers on the same hardware measure the same thing.)

The cost-source protocol (:mod:`accelerators.cost_source`): :class:`MeasuredLatency` has a
``name`` (``measured-cpu`` / ``measured-cuda``), a ``fingerprint`` of everything its numbers
depend on, ``describe()``, and ``evaluate(layers, accelerators)`` which measures each layer
as a standalone (BN-folded) convolution on the one "accelerator" it knows, this machine
(:class:`MeasuredDevice`).  Energy and area are not measurable here: they are NaN.  The
search uses per-*block* tables instead (``coexplore.lut``), because a block's activations,
additions, pools and concatenations cost time too.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from coexplore.common import ConfigError, PathLike, atomic_write_text, read_json

from .cost_source import COST_SOURCES, fingerprint_of
from .workload import Layer

logger = logging.getLogger(__name__)

#: Bump when what a measurement means changes (method, fused ops, defaults).
MEASURED_VERSION = "1"
TABLE_FORMAT = 1
TABLE_KIND = "coexplore-latency-table"
DEVICES = ("cpu", "cuda")
RUNTIMES = ("torch", "onnxruntime")
#: The identity fields a table must share with this machine to be used here.
MACHINE_FIELDS = ("system", "machine", "cpu_model", "logical_cpus", "gpu", "torch", "onnxruntime")
SETTING_FIELDS = ("device", "threads", "runtime", "batch", "fuse_bn", "warmup", "min_run_time", "rounds")


# ---- this machine ---------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_identity(device: str = "cpu", runtime: str = "torch") -> Dict[str, Any]:
    """What a latency depends on, of this machine: OS, architecture, CPU model, logical CPUs, GPU,
    torch and onnxruntime versions (``None`` where not used), and the host name (recorded only)."""
    import torch

    gpu = None
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("measured latency on device 'cuda' asked for, but CUDA is not available; "
                              "use device 'cpu' (cost source measured-cpu)")
        gpu = torch.cuda.get_device_name(torch.cuda.current_device())
    ort = None
    if runtime == "onnxruntime":
        try:
            import onnx  # noqa: F401 - torch.onnx.export needs it
            import onnxruntime
        except ImportError:
            raise ConfigError("runtime 'onnxruntime' needs the onnx and onnxruntime packages: "
                              "pip install 'coexplore[onnx]'") from None
        ort = onnxruntime.__version__
    return {"system": platform.system(), "machine": platform.machine(), "cpu_model": _cpu_model(),
            "logical_cpus": os.cpu_count(), "gpu": gpu, "torch": torch.__version__, "onnxruntime": ort,
            "hostname": platform.node()}


@dataclass(frozen=True)
class MeasuredDevice:
    """The one "accelerator" of a measured table: this machine, as the accelerator axis of a cost table."""

    name: str  # e.g. "cpu: Intel(R) Xeon(R) ... x1 thread"
    device: str  # "cpu" or "cuda"
    threads: int  # threads the measurement used
    runtime: str  # "torch" or "onnxruntime"
    machine: Tuple[Tuple[str, Any], ...]  # machine_identity() items

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "device": self.device, "threads": self.threads, "runtime": self.runtime,
                "machine": dict(self.machine)}

    def short(self) -> str:
        """One line for logs and reports (as :meth:`accelerators.Accelerator.short`)."""
        return self.name


@dataclass(frozen=True)
class Stat:
    """One measurement."""

    median_s: float  # median over the rounds of each round's median time per run, seconds
    spread_s: float  # max - min of the rounds' medians (one round: the IQR of its blocks), seconds
    runs: int  # timed runs, all rounds together

    def to_dict(self) -> Dict[str, Any]:
        return {"median_s": self.median_s, "spread_s": self.spread_s, "runs": self.runs}


# ---- BatchNorm folding ------------------------------------------------------------------------------

def fuse_batchnorm(module: "Any") -> Tuple["Any", int]:
    """A copy of ``module`` in eval mode with every ``Conv2d`` -> ``BatchNorm2d`` pair folded.

    A pair is two consecutive children of an ``nn.Sequential`` (where the order of children is
    the order of execution); the conv gets the folded weights and a bias, the BatchNorm
    becomes an ``nn.Identity``.  Outputs are unchanged up to float rounding.

    Returns:
        ``(fused copy, number of folded pairs)``.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    m = copy.deepcopy(module).eval()
    n = 0
    for parent in m.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            c, bn = parent._modules[a], parent._modules[b]
            if isinstance(c, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                parent._modules[a] = fuse_conv_bn_eval(c, bn)
                parent._modules[b] = nn.Identity()
                n += 1
    return m, n


def count_batchnorm(module: "Any") -> int:
    from torch import nn
    return sum(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in module.modules())


# ---- the cost source --------------------------------------------------------------------------------

def _check_settings(device: Any, threads: Any, runtime: Any, warmup: Any, min_run_time: Any, rounds: Any) -> None:
    if device not in DEVICES:
        raise ConfigError(f"measured latency: device {device!r} is unknown; allowed values: {list(DEVICES)}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"measured latency: runtime {runtime!r} is unknown; allowed values: {list(RUNTIMES)}")
    if runtime == "onnxruntime" and device != "cpu":
        raise ConfigError("measured latency: runtime 'onnxruntime' measures on device 'cpu' only")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"measured latency: threads must be an integer >= 1, got {threads!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"measured latency: warmup must be an integer >= 0, got {warmup!r}")
    if isinstance(min_run_time, bool) or not isinstance(min_run_time, (int, float)) or not 0 < min_run_time <= 60:
        raise ConfigError(f"measured latency: min_run_time must be a number of seconds in (0, 60], got {min_run_time!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"measured latency: rounds must be an integer >= 1, got {rounds!r}")


class MeasuredLatency:
    """Latency measured on this machine (see the module docstring).

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        threads: intra-op threads of the measurement (CPU).
        runtime: ``"torch"`` (eager) or ``"onnxruntime"`` (CPU only).
        warmup: untimed runs before timing.
        min_run_time: seconds of timed runs per module and round.
        rounds: interleaved rounds per module; a measurement is the median over the rounds
            (:meth:`measure_all`).
        table: a latency table file to use for per-block pricing (``coexplore.lut``); None: one
            measured here (and cached).
        mapping_objective: accepted for the registry's one constructor signature and ignored
            (it is the analytical model's mapping option; a measurement has no mapping).
    """

    version = MEASURED_VERSION

    def __init__(self, device: str = "cpu", threads: int = 1, runtime: str = "torch", warmup: int = 10,
                 min_run_time: float = 0.1, rounds: int = 3, table: Optional[PathLike] = None,
                 mapping_objective: Optional[str] = None) -> None:
        _check_settings(device, threads, runtime, warmup, min_run_time, rounds)
        self.rounds = int(rounds)
        self.device_kind = device
        self.threads = int(threads)
        self.runtime = runtime
        self.warmup = int(warmup)
        self.min_run_time = float(min_run_time)
        self.table_path = Path(table).expanduser() if table is not None else None
        self.machine = machine_identity(device, runtime)
        self.name = f"measured-{device}" if runtime == "torch" else f"measured-{device}-{runtime}"

    # ---- identity --------------------------------------------------------------------------
    def settings(self) -> Dict[str, Any]:
        return {"device": self.device_kind, "threads": self.threads, "runtime": self.runtime, "batch": 1,
                "fuse_bn": True, "warmup": self.warmup, "min_run_time": self.min_run_time, "rounds": self.rounds}

    def identity(self) -> Dict[str, Any]:
        """The machine fields and settings a table must share with this source."""
        return {**{k: self.machine[k] for k in MACHINE_FIELDS}, **self.settings()}

    def fingerprint(self) -> str:
        return fingerprint_of({"name": self.name, "version": self.version, **self.identity()})

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "version": self.version, "fingerprint": self.fingerprint(),
                **self.settings(), "machine": dict(self.machine),
                "table": str(self.table_path) if self.table_path is not None else None}

    @property
    def device(self) -> MeasuredDevice:
        """This machine as the one entry of a cost table's accelerator axis."""
        what = self.machine["gpu"] if self.device_kind == "cuda" else self.machine["cpu_model"]
        threads = "" if self.device_kind == "cuda" else f" x{self.threads} thread{'s' * (self.threads > 1)}"
        name = f"{self.device_kind}: {what}{threads} ({self.runtime})"
        return MeasuredDevice(name, self.device_kind, self.threads, self.runtime, tuple(sorted(self.machine.items())))

    # ---- measuring -------------------------------------------------------------------------
    def prepare(self, module: Any, args: Sequence[Any]) -> "Prepared":
        """``module`` BN-folded, on the device (or exported to onnxruntime) and warmed up, ready to time."""
        import torch

        fused, _ = fuse_batchnorm(module)
        if self.runtime == "onnxruntime":
            return self._prepare_ort(fused, args)
        dev = torch.device(self.device_kind)
        fused = fused.to(dev)
        a = _to(args, dev)
        with _threads(self.threads), torch.no_grad():
            for _ in range(self.warmup):
                fused(*a)
            if dev.type == "cuda":
                torch.cuda.synchronize()
        return Prepared("m(*a)", {"m": fused, "a": a}, self.threads, torch_no_grad=True)

    def _prepare_ort(self, fused: Any, args: Sequence[Any]) -> "Prepared":
        import warnings

        import onnxruntime as ort
        import torch

        buf = io.BytesIO()
        flat = _flatten(args)
        names = [f"in{i}" for i in range(len(flat))]
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(fused, tuple(args), buf, input_names=names, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        used = {i.name for i in sess.get_inputs()}
        feeds = {n: t.numpy() for n, t in zip(names, flat) if n in used}
        for _ in range(self.warmup):
            sess.run(None, feeds)
        return Prepared("s.run(None, f)", {"s": sess, "f": feeds}, self.threads)

    def measure(self, module: Any, args: Sequence[Any], rounds: Optional[int] = None) -> Stat:
        """The latency of ``module(*args)`` (see the module docstring); ``module`` is not changed.

        Args:
            module: an ``nn.Module``.
            args: its positional arguments (tensors, or tuples of tensors), batch 1.
            rounds: timed rounds (default :attr:`rounds`); the result is the median of the rounds'
                medians (a table builder interleaves the rounds of many modules instead, see
                :meth:`measure_all`).
        """
        p = self.prepare(module, args)
        return combine([p.time(self.min_run_time) for _ in range(rounds or self.rounds)])

    def measure_all(self, units: Sequence[Tuple[Any, Sequence[Any]]], rounds: Optional[int] = None,
                    progress: Any = None) -> List[Stat]:
        """Measure many modules in ``rounds`` interleaved rounds (round-robin over the modules).

        On a machine others share, load comes in bursts; timing every module once per round
        and keeping each module's median over the rounds spreads a burst over all modules
        instead of inflating the few it hits.

        Args:
            units: ``(module, args)`` pairs.
            rounds: rounds (>= 1; default :attr:`rounds`).
            progress: called as ``progress(done, total)`` after each round.
        """
        rounds = self.rounds if rounds is None else rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"measured latency: rounds must be an integer >= 1, got {rounds!r}")
        prepared = [self.prepare(m, a) for m, a in units]
        per: List[List[Tuple[float, float, int]]] = [[] for _ in prepared]
        for r in range(rounds):
            for i, p in enumerate(prepared):
                per[i].append(p.time(self.min_run_time))
            if progress is not None:
                progress(r + 1, rounds)
        return [combine(x) for x in per]

    # ---- the cost-source protocol ---------------------------------------------------------------
    def evaluate(self, layers: Sequence[Layer], accelerators: Sequence[Any]):
        """``Costs`` of each layer measured here as a standalone BN-folded convolution (or linear).

        Args:
            layers: the layers (their batch ``N`` is used as given).
            accelerators: must be ``[self.device]``: a measurement prices on this machine only.

        Returns:
            :class:`~accelerators.cost_model.Costs` with ``[1, L]`` latency; energy, utilisation,
            cycles and DRAM traffic NaN and area NaN (not measurable here).
        """
        from torch import nn

        from .cost_model import Costs

        here = self.device
        accs = list(accelerators)
        if len(accs) != 1 or not isinstance(accs[0], MeasuredDevice) or accs[0].machine != here.machine \
                or accs[0].threads != here.threads or accs[0].runtime != here.runtime:
            raise ConfigError(f"cost source {self.name!r} prices layers on this machine only: pass [source.device] "
                              f"({here.name}) as the accelerators, got {len(accs)} other accelerator(s)")
        if not layers:
            raise ConfigError("workload: the layer list is empty")
        import torch
        cache: Dict[Layer, float] = {}
        lat = np.zeros((1, len(layers)))
        for i, l in enumerate(layers):
            if l not in cache:
                if l.kind == "linear":
                    mod, args = nn.Linear(l.C, l.K), (torch.zeros(l.N, l.C),)
                else:
                    mod = nn.Conv2d(l.C, l.K, (l.R, l.S), l.stride, 0, groups=l.groups, bias=True)
                    args = (torch.zeros(l.N, l.C, l.H, l.W),)
                cache[l] = self.measure(mod.eval(), args).median_s
            lat[0, i] = cache[l]
        nan = np.full_like(lat, np.nan)
        return Costs(latency_s=lat, energy_j=nan.copy(), utilization=nan.copy(), area_mm2=np.full(1, np.nan),
                     cycles=nan.copy(), dram_bytes=nan.copy(), memory_bound=np.zeros_like(lat, dtype=bool))


def _to(args: Any, dev: Any) -> Any:
    if isinstance(args, (list, tuple)):
        return type(args)(_to(a, dev) for a in args)
    return args.to(dev)


def _flatten(args: Any) -> List[Any]:
    if isinstance(args, (list, tuple)):
        return [t for a in args for t in _flatten(a)]
    return [args]


@contextlib.contextmanager
def _threads(n: int):
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Prepared:
    """A statement ready to time with ``torch.utils.benchmark.Timer`` (which synchronises CUDA)."""

    def __init__(self, stmt: str, env: Dict[str, Any], threads: int, torch_no_grad: bool = False) -> None:
        self.stmt, self.env, self.threads, self.no_grad = stmt, env, threads, torch_no_grad

    def time(self, min_run_time: float) -> Tuple[float, float, int]:
        """``(median s per run, IQR s, runs)`` of one ``blocked_autorange`` of ``min_run_time`` seconds."""
        import torch
        from torch.utils.benchmark import Timer

        ctx = torch.no_grad() if self.no_grad else contextlib.nullcontext()
        with ctx:
            m = Timer(self.stmt, globals=self.env, num_threads=self.threads).blocked_autorange(min_run_time=min_run_time)
        return float(m.median), float(m.iqr), int(m.number_per_run * len(m.raw_times))


def combine(rounds: Sequence[Tuple[float, float, int]]) -> Stat:
    """One :class:`Stat` from rounds of ``(median, iqr, runs)``: the median of the medians, the
    spread (max - min) of the medians when there are several rounds (else the one IQR), all runs."""
    med = [r[0] for r in rounds]
    spread = float(max(med) - min(med)) if len(med) > 1 else float(rounds[0][1])
    return Stat(float(np.median(med)), spread, int(sum(r[2] for r in rounds)))


@COST_SOURCES.register("measured-cpu")
def _measured_cpu(**options: Any) -> MeasuredLatency:
    """Latency measured on this machine's CPU, eager torch (``threads`` default 1)."""
    return MeasuredLatency(device="cpu", **options)


@COST_SOURCES.register("measured-cpu-onnxruntime")
def _measured_cpu_ort(**options: Any) -> MeasuredLatency:
    """Latency measured on this machine's CPU with onnxruntime."""
    return MeasuredLatency(device="cpu", runtime="onnxruntime", **options)


@COST_SOURCES.register("measured-cuda")
def _measured_cuda(**options: Any) -> MeasuredLatency:
    """Latency measured on this machine's GPU (CUDA-synchronised)."""
    return MeasuredLatency(device="cuda", **options)


# ---- the lookup table ------------------------------------------------------------------------------

def _stat(d: Any, where: str) -> Stat:
    if not isinstance(d, Mapping) or set(d) != {"median_s", "spread_s", "runs"}:
        raise ConfigError(f"{where} must be an object with median_s, spread_s and runs, got {d!r}")
    med, iqr, runs = d["median_s"], d["spread_s"], d["runs"]
    for k, v in (("median_s", med), ("spread_s", iqr)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < float("inf")):
            raise ConfigError(f"{where}.{k} must be a finite number >= 0, got {v!r}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ConfigError(f"{where}.runs must be an integer >= 1, got {runs!r}")
    return Stat(float(med), float(iqr), int(runs))


@dataclass(frozen=True)
class LatencyTable:
    """Per-block latencies of one search space, measured on one machine (see the module docstring).

    ``fixed`` holds what every architecture runs (stem, fixed blocks, head); ``entries`` one
    measurement per ``(label, op)`` candidate of every choice block (skip ops are absent:
    they cost nothing).
    """

    machine: Dict[str, Any]  # machine_identity() of the measuring machine
    settings: Dict[str, Any]  # device, threads, runtime, batch, fuse_bn, warmup, min_run_time
    space: Dict[str, str]  # {"name", "fingerprint"} of the search space
    fixed: Dict[str, Stat]  # name -> measurement, in execution order
    entries: Dict[Tuple[str, str], Stat]  # (label, op) -> measurement
    created: str = ""  # ISO 8601 time of the measurement
    seconds: float = 0.0  # wall time the measurement took
    version: str = MEASURED_VERSION  # MEASURED_VERSION of the measuring code

    @property
    def fixed_s(self) -> float:
        """Seconds every architecture spends in its fixed parts."""
        return float(sum(s.median_s for s in self.fixed.values()))

    def latency(self, label: str, op: str) -> float:
        """Seconds candidate ``op`` of block ``label`` adds (0 when it is absent, i.e. a skip op)."""
        s = self.entries.get((label, op))
        return 0.0 if s is None else s.median_s

    def content_hash(self) -> str:
        return fingerprint_of(self.to_dict())

    def check_machine(self, source: MeasuredLatency, where: str = "latency table") -> None:
        """Refuse a table measured on another machine or with other settings (one line, naming the field)."""
        here = source.identity()
        for k in MACHINE_FIELDS:
            if self.machine.get(k) != here[k]:
                raise ConfigError(f"{where}: measured on another machine: machine.{k} is {self.machine.get(k)!r} "
                                  f"there and {here[k]!r} here; measure a table on this machine")
        for k in SETTING_FIELDS:
            if self.settings.get(k) != here[k]:
                raise ConfigError(f"{where}: measured with settings.{k} = {self.settings.get(k)!r}, this cost "
                                  f"source uses {here[k]!r}; measure again or configure the source alike")
        if self.version != source.version:
            raise ConfigError(f"{where}: measured by version {self.version!r} of the measuring code, this is "
                              f"{source.version!r}; measure again")

    # ---- I/O ---------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {"kind": TABLE_KIND, "format": TABLE_FORMAT, "version": self.version, "created": self.created,
                "seconds": self.seconds, "machine": dict(self.machine), "settings": dict(self.settings),
                "space": dict(self.space), "fixed": [{"name": k, **v.to_dict()} for k, v in self.fixed.items()],
                "entries": [{"label": l, "op": o, **v.to_dict()} for (l, o), v in self.entries.items()]}

    @staticmethod
    def from_dict(d: Any, where: str = "latency table") -> "LatencyTable":
        if not isinstance(d, Mapping) or d.get("kind") != TABLE_KIND:
            raise ConfigError(f"{where}: not a latency table (expected an object with kind {TABLE_KIND!r})")
        if d.get("format") != TABLE_FORMAT:
            raise ConfigError(f"{where}: format {d.get('format')!r} is not supported (this coexplore reads {TABLE_FORMAT})")
        for k, t in (("machine", Mapping), ("settings", Mapping), ("space", Mapping), ("fixed", list),
                     ("entries", list)):
            if not isinstance(d.get(k), t):
                raise ConfigError(f"{where}: field {k!r} must be {'an object' if t is Mapping else 'a list'}")
        fixed, entries = {}, {}
        for i, r in enumerate(d["fixed"]):
            if not isinstance(r, Mapping) or not isinstance(r.get("name"), str):
                raise ConfigError(f"{where}: fixed[{i}] must be an object with a string 'name'")
            fixed[r["name"]] = _stat({k: v for k, v in r.items() if k != "name"}, f"{where}: fixed[{i}]")
        for i, r in enumerate(d["entries"]):
            if not isinstance(r, Mapping) or not isinstance(r.get("label"), str) or not isinstance(r.get("op"), str):
                raise ConfigError(f"{where}: entries[{i}] must be an object with string 'label' and 'op'")
            key = (r["label"], r["op"])
            if key in entries:
                raise ConfigError(f"{where}: entries[{i}] repeats {key}")
            entries[key] = _stat({k: v for k, v in r.items() if k not in ("label", "op")}, f"{where}: entries[{i}]")
        return LatencyTable(dict(d["machine"]), dict(d["settings"]), dict(d["space"]), fixed, entries,
                            str(d.get("created", "")), float(d.get("seconds", 0.0)), str(d.get("version", "")))

    def save(self, path: PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @staticmethod
    def load(path: PathLike) -> "LatencyTable":
        return LatencyTable.from_dict(read_json(path), where=str(path))


def now_iso() -> str:
    """The current UTC time, ISO 8601 (called when a table is made, never at import)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
