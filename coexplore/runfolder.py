"""The run-folder contract: file names, exit codes and the typed, versioned ``result.json``.

Every search writes one folder; the search loop, the CLI, sweeps, the demo and the Pareto
tools all read and write it through this module (and through nothing else), so the
contract is written once.  It imports neither torch nor the cost model: a sweep driver or
a Pareto script can read results cheaply.

A run folder holds:

============================  ==========================================================
``config.yaml``               the resolved run config
``metrics.csv``               one row per epoch
``checkpoints/last.pt``       what ``--resume`` continues from
``result.json``               the :class:`Result` (written last, atomically)
``baseline_history.csv``      one-shot baselines: every design they scored
``plots/``                    trajectory and accelerator plots
``.run.lock``                 held while a search runs in the folder
============================  ==========================================================
"""

from __future__ import annotations

import enum
import json
import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

try:  # POSIX only; without it folder locks are no-ops
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .common import ConfigError, PathLike, read_json, to_jsonable, write_json

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "last.pt"
BASELINE_HISTORY_FILE = "baseline_history.csv"
PLOTS_DIR = "plots"
LOCK_FILE = ".run.lock"

#: Version of the ``result.json`` schema; files of version 1 (no ``schema_version``) are upgraded on read.
RESULT_SCHEMA_VERSION = 2


class ExitCode(enum.IntEnum):
    """Exit codes of ``coexplore search``, ``sweep`` and ``demo`` (and every other command)."""

    OK = 0  # finished; every constraint met
    FAILED = 1  # an unexpected failure (a bug, a crash of a sweep point)
    USER_ERROR = 2  # a bad config, argument or input file; nothing was run
    CONSTRAINTS_VIOLATED = 3  # finished, but the design misses a constraint (never reported as a success)
    DIVERGED = 4  # a non-finite loss or parameter stopped the run; no design is reported
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; rerun the same command to resume


#: ``status`` values of a result.
STATUSES = ("ok", "constraints-violated", "diverged")


def checkpoint_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_FILE


def result_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / RESULT_FILE


@dataclass(frozen=True)
class Result:
    """What a finished run reports; ``result.json`` is its JSON form.

    Metrics are in SI units (``latency_s``, ``energy_j``, ``area_mm2``; ``fps``, ``edp``,
    ``edap``) and fractions (``accuracy``, ``error``), all checked by the cost source named
    in ``checked_by`` -- never by a surrogate.
    """

    method: str  # registered method name
    name: str  # run label
    seed: int  # the run's seed
    search_space: str  # search space name
    hardware_space: str  # hardware space name
    objective: Any  # objective spec: a name or {"weighted": {metric: weight}}
    lam: float  # lambda, the weight of the normalised hardware cost ("lambda" in JSON)
    status: str  # one of STATUSES
    architecture: Optional[Dict[str, str]] = None  # {label: op}; None for a diverged run
    accelerator: Optional[Dict[str, Any]] = None  # Accelerator.to_dict(); None for a diverged run
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)  # accuracy, error, latency_s, fps, ...
    accuracy_source: str = ""  # where metrics.accuracy comes from, e.g. "supernet-val" / "retrained-test"
    search_accuracy: Optional[float] = None  # inherited-weight validation accuracy at the end of the search
    chance_level: bool = False  # accuracy indistinguishable from guessing (see coexplore.finalize)
    constraints: List[Dict[str, Any]] = field(default_factory=list)  # one status row per constraint
    all_constraints_met: bool = False  # every constraint satisfied (true when there are none)
    repairs: List[Dict[str, str]] = field(default_factory=list)  # block changes made by the repair
    generated_accelerator: Optional[Dict[str, Any]] = None  # what the evaluator's generator proposed
    checked_by: str = "analytical"  # the cost source that checked the metrics
    cost_source: Dict[str, Any] = field(default_factory=dict)  # its provenance (version, fingerprint, options)
    cost_model_version: str = ""  # analytical model version
    feasibility: Dict[str, Any] = field(default_factory=dict)  # the up-front feasibility check
    epochs: int = 0  # epochs run (warm-up included)
    warmup_epochs: int = 0  # of which weights-only
    seconds: Optional[float] = None  # wall time of the search (and retraining)
    baseline: Optional[Dict[str, Any]] = None  # one-shot baselines: budget, evaluations, selection
    retrain: Optional[Dict[str, Any]] = None  # retraining done by the run itself
    retrains: List[Dict[str, Any]] = field(default_factory=list)  # later `coexplore retrain` runs
    message: str = ""  # why a run diverged, or other notes
    schema_version: int = RESULT_SCHEMA_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    # ---- derived -----------------------------------------------------------------------
    @property
    def succeeded(self) -> bool:
        """Finished, and every constraint met."""
        return self.status == "ok"

    @property
    def exit_code(self) -> int:
        return {"ok": ExitCode.OK, "constraints-violated": ExitCode.CONSTRAINTS_VIOLATED,
                "diverged": ExitCode.DIVERGED}[self.status]

    def __getitem__(self, key: str) -> Any:
        """Read-only access by ``result.json`` key (``result["metrics"]``), for code written
        against the JSON form."""
        d = self.to_dict()
        if key not in d:
            raise KeyError(key)
        return d[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def with_(self, **changes: Any) -> "Result":
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(changes)
        return Result(**d)

    # ---- JSON --------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d = to_jsonable(asdict(self))
        d["lambda"] = d.pop("lam")
        return d

    @staticmethod
    def from_dict(data: Mapping[str, Any], where: str = "result") -> "Result":
        """Build and validate; a result of schema version 1 is upgraded."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        d = dict(data)
        version = d.get("schema_version", 1)
        if version == 1:
            d = _upgrade_v1(d)
        elif version != RESULT_SCHEMA_VERSION:
            raise ConfigError(f"{where}: schema_version {version!r} is not supported (this coexplore reads "
                              f"1 and {RESULT_SCHEMA_VERSION})")
        if "lambda" in d:
            d["lam"] = d.pop("lambda")
        names = {f.name for f in fields(Result)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed fields: {sorted(names - {'lam'}) + ['lambda']}")
        missing = [f for f in ("method", "name", "seed", "search_space", "hardware_space", "objective", "lam",
                               "status") if f not in d]
        if missing:
            raise ConfigError(f"{where}: missing required field(s) {['lambda' if m == 'lam' else m for m in missing]}")
        try:
            return Result(**d)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


_V1_DROP = ()


def _upgrade_v1(d: Dict[str, Any]) -> Dict[str, Any]:
    d = dict(d)
    d["schema_version"] = RESULT_SCHEMA_VERSION
    if isinstance(d.get("checked_by"), Mapping):
        d["cost_source"] = dict(d["checked_by"])
        d["checked_by"] = str(d["cost_source"].get("name", "analytical"))
    return d


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate(r: Result) -> None:
    def need(cond: bool, fieldname: str, what: str, value: Any) -> None:
        if not cond:
            raise ConfigError(f"field {fieldname} must be {what}, got {value!r}")

    for f in ("method", "name", "search_space", "hardware_space", "accuracy_source", "checked_by",
              "cost_model_version", "message"):
        need(isinstance(getattr(r, f), str), f, "a string", getattr(r, f))
    need(isinstance(r.seed, int) and not isinstance(r.seed, bool), "seed", "an integer", r.seed)
    need(_is_number(r.lam) and math.isfinite(r.lam), "lambda", "a finite number", r.lam)
    need(r.status in STATUSES, "status", f"one of {list(STATUSES)}", r.status)
    need(isinstance(r.objective, (str, Mapping)), "objective", "a name or {weighted: {...}}", r.objective)
    for f in ("architecture", "accelerator", "generated_accelerator", "baseline", "retrain"):
        v = getattr(r, f)
        need(v is None or isinstance(v, Mapping), f, "an object or null", v)
    need(isinstance(r.metrics, Mapping), "metrics", "an object", r.metrics)
    for k, v in r.metrics.items():
        need(v is None or _is_number(v), f"metrics.{k}", "a number or null", v)
    need(isinstance(r.constraints, (list, tuple)) and all(isinstance(c, Mapping) for c in r.constraints),
         "constraints", "a list of objects", r.constraints)
    for i, c in enumerate(r.constraints):
        for k in ("spec", "metric", "satisfied"):
            need(k in c, f"constraints[{i}]", f"an object with '{k}'", c)
    need(isinstance(r.repairs, (list, tuple)), "repairs", "a list", r.repairs)
    need(isinstance(r.retrains, (list, tuple)), "retrains", "a list", r.retrains)
    for f in ("all_constraints_met", "chance_level"):
        need(isinstance(getattr(r, f), bool), f, "true or false", getattr(r, f))
    for f in ("epochs", "warmup_epochs", "schema_version"):
        v = getattr(r, f)
        need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f, "an integer >= 0", v)
    for f in ("seconds", "search_accuracy"):
        v = getattr(r, f)
        need(v is None or _is_number(v), f, "a number or null", v)
    if r.status != "diverged":
        need(isinstance(r.architecture, Mapping) and r.architecture, "architecture",
             "a non-empty object for a finished run", r.architecture)
        need(isinstance(r.accelerator, Mapping) and r.accelerator, "accelerator",
             "a non-empty object for a finished run", r.accelerator)
        if r.status == "ok":
            need(r.all_constraints_met, "all_constraints_met", "true when status is 'ok'", r.all_constraints_met)
    else:
        need(r.architecture is None and r.accelerator is None, "architecture",
             "null for a diverged run (no NaN-derived design is reported)", r.architecture)


def read_result(run_dir: PathLike) -> Result:
    """The :class:`Result` of a run folder (or of a ``result.json`` path); errors name the file."""
    p = Path(run_dir)
    path = p if p.name == RESULT_FILE and not p.is_dir() else p / RESULT_FILE
    if not path.is_file():
        raise ConfigError(f"{p}: no {RESULT_FILE} (is it a finished run folder?)")
    return Result.from_dict(read_json(path), where=str(path))


def write_result(run_dir: PathLike, result: Result) -> Path:
    """Write ``result.json`` atomically (validated: a :class:`Result` cannot be invalid)."""
    path = Path(run_dir) / RESULT_FILE
    write_json(path, result.to_dict())
    return path


def finished_status(run_dir: PathLike) -> Optional[str]:
    """A finished folder's status (``ok``, ``constraints-violated``, ``diverged``), ``"unreadable"``
    for a broken ``result.json``, ``None`` when there is none (not finished)."""
    if not (Path(run_dir) / RESULT_FILE).is_file():
        return None
    try:
        return read_result(run_dir).status
    except ConfigError:
        return "unreadable"


# ---------------------------------------------------------------------------------------
# folder locks
# ---------------------------------------------------------------------------------------

class FolderLock:
    """An exclusive ``flock`` on a file, recording who holds it.

    The lock belongs to the open file, so a child process given the descriptor
    (``pass_fds``) keeps holding it after this process dies; it is released when the last
    descriptor closes.  Hence :meth:`release` only closes (an explicit unlock would also free
    the child's copy).
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.fd: Optional[int] = None

    def try_acquire(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot create the lock file: {exc.strerror or exc}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        self.fd = fd
        return True

    def acquire(self, should_stop: Callable[[], bool], poll_s: float = 0.2,
                on_wait: Optional[Callable[[Dict[str, Any]], None]] = None) -> bool:
        """Block until the lock is ours (True) or ``should_stop()`` says so (False)."""
        waited = False
        while not self.try_acquire():
            if should_stop():
                return False
            if not waited and on_wait is not None:
                on_wait(self.holder())
            waited = True
            time.sleep(poll_s)
        return True

    def record(self, **info: Any) -> None:
        """Write who holds the lock (for the messages of whoever waits on it)."""
        if self.fd is None:
            return
        import datetime
        data = json.dumps({**info, "host": socket.gethostname(),
                           "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}).encode()
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, data)

    def holder(self) -> Dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8") or "{}"))
        except (OSError, ValueError, TypeError):
            return {}

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock now (without taking it)."""
        if fcntl is None or not self.path.is_file():
            return False
        probe = FolderLock(self.path)
        if probe.try_acquire():
            probe.release()
            return False
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @property
    def inheritable_fds(self) -> Tuple[int, ...]:
        return (self.fd,) if self.fd is not None and fcntl is not None else ()

    def __enter__(self) -> "FolderLock":
        if not self.try_acquire():
            h = self.holder()
            raise ConfigError(f"{self.path.parent}: another search is running in this run folder (pid "
                              f"{h.get('pid', '?')} on {h.get('host', '?')} since {h.get('since', '?')}); wait for it "
                              "or choose another --out")
        self.record(pid=os.getpid())
        return self

    def __exit__(self, *exc: Any) -> None:
        # the lock file goes with the lock (a run folder keeps no trace of a run that never
        # started); unlinked before the descriptor closes, so no second holder can appear
        try:
            self.path.unlink()
        except OSError:
            pass
        self.release()


def run_lock(run_dir: PathLike) -> FolderLock:
    """The lock a search holds on its run folder (use as a context manager)."""
    return FolderLock(Path(run_dir) / LOCK_FILE)
