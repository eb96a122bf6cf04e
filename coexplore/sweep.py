"""Sweeps: run a grid of co-exploration searches, in parallel on one machine or on a Ray cluster.

A sweep spec names a base run config, overrides applied to every point (``set``) and a
grid whose cartesian product gives the points::

    name: dance-lambda
    base: experiments/configs/quickstart.yaml   # relative to the sweep file; optional
    set: {search_epochs: 4}                             # every point (dotted keys ok)
    grid:                                        # RunConfig fields (dotted ok)
      lam: [0.1, 0.5, 1.0]
      constraints: [["latency <= 0.1ms"], ["latency <= 0.2ms"]]
      seed: [0, 1]

Every point's config is validated with :func:`coexplore.config.load_config` before
anything runs.  Each point runs ``python -m coexplore.cli --quiet search`` in its own run
folder ``<out>/<point id>``, the id being the readable grid values plus a short hash of the
point's overrides (``lam=0.5,seed=1__1a2b3c4d``).

Resume semantics are those of the run folders (:mod:`coexplore.search`): a folder with a
``result.json`` is finished and never rerun; one with ``checkpoints/last.pt`` is continued
with ``--resume``.  The sweep rewrites ``<out>/sweep_status.csv`` atomically whenever a
point starts or ends, so re-running the same command after Ctrl-C, a crash or a SIGKILL of
the sweep continues where it stopped.  Each point's process holds an exclusive lock on
``<point>/.sweep.lock`` (an inherited ``flock``): when the sweep itself is killed, the points
that were running finish on their own, and a new sweep waits for them instead of starting
them a second time.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import itertools
import json
import logging
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union,
                    get_type_hints)

import pandas as pd
import yaml

from .common import ConfigError, PathLike, atomic_write_text, check_keys, read_yaml, write_yaml

from .config import RunConfig, load_config
from .runfolder import (CHECKPOINT_DIR, CHECKPOINT_FILE, RESULT_FILE, ExitCode, FolderLock)
from .runfolder import finished_status as _run_status


logger = logging.getLogger(__name__)

SPEC_KEYS = ("name", "base", "set", "grid")
SPEC_FILE = "sweep.yaml"
STATUS_FILE = "sweep_status.csv"
SUMMARY_FILE = "sweep_summary.csv"
LOG_FILE = "sweep.log"
LOCK_FILE = ".sweep.lock"
CHECKPOINT = Path(CHECKPOINT_DIR) / CHECKPOINT_FILE
VIOLATED_EXIT_CODE = int(ExitCode.CONSTRAINTS_VIOLATED)
MAX_POINTS = 10_000  # larger grids are almost surely a typo
STATUSES = ("pending", "running", "done", "violated", "diverged", "failed", "interrupted")
BACKENDS = ("local", "ray")
RAY_HINT = 'pip install "coexplore[ray]"'
_ID_PART_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-")
_OPERATORS = (("<=", "le"), (">=", "ge"), ("==", "eq"), ("!=", "ne"), ("<", "lt"), (">", "gt"))
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

CommandFn = Callable[["Point", Path, bool], Sequence[str]]


# ---------------------------------------------------------------------------------------
# the spec
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One grid point of a sweep."""

    id: str  # run folder name: the grid values in short form + "__" + 8 hex digits of the overrides' hash
    values: Tuple[Tuple[str, Any], ...]  # (grid key, value), in grid order
    overrides: Tuple[str, ...]  # "key=value" overrides: the sweep's ``set``, the grid values, the run name
    legacy_id: str = ""  # the folder name coexplore < 0.2 gave this point (still resumed when present)

    def as_dict(self) -> Dict[str, Any]:
        """The grid values as ``{key: value}``."""
        return dict(self.values)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep spec.  Build it with :meth:`load` or :meth:`from_dict`."""

    name: str  # sweep label
    base: Optional[Path] = None  # base run config (absolute path); None: RunConfig defaults
    set: Tuple[Tuple[str, Any], ...] = ()  # (key, value) overrides applied to every point
    grid: Tuple[Tuple[str, Tuple[Any, ...]], ...] = ()  # (key, candidate values), one axis each

    @classmethod
    def load(cls, path: PathLike, validate: bool = True) -> "Sweep":
        """Read a sweep YAML file; ``base`` is resolved relative to the file's folder.

        Args:
            path: the sweep spec.
            validate: also build every point's :class:`RunConfig` (see :meth:`validate`).

        Raises:
            ConfigError: a missing or malformed file, or an invalid spec; the message names
                the file and the field (and the point, for a bad value).
        """
        path = Path(path)
        data = read_yaml(path)
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: a sweep spec must be a YAML mapping with fields {list(SPEC_KEYS)}")
        data = dict(data)
        data.setdefault("name", path.stem)
        return cls.from_dict(data, base_dir=path.parent, where=str(path), validate=validate)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: Optional[PathLike] = None, where: str = "sweep",
                  validate: bool = True) -> "Sweep":
        """Build a sweep from a mapping with the fields ``name``, ``base``, ``set`` and ``grid``.

        Args:
            data: the spec.
            base_dir: folder that a relative ``base`` is resolved against (default: the
                current directory, at call time).
            where: the spec's name in error messages (a file path, usually).
            validate: also build every point's :class:`RunConfig` (see :meth:`validate`).

        Raises:
            ConfigError: unknown or missing fields, an empty or non-list grid axis, a key
                that is not a RunConfig field, a key both in ``set`` and ``grid``, or a point
                whose config is invalid.
        """
        check_keys(data, SPEC_KEYS, where, required=("grid",))
        name = data.get("name", "sweep")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: name must be a non-empty string, got {name!r}")
        base = data.get("base")
        base_path: Optional[Path] = None
        if base is not None:
            if not isinstance(base, (str, os.PathLike)) or not str(base).strip():
                raise ConfigError(f"{where}: base must be the path of a run config YAML, got {base!r}")
            base_path = Path(base).expanduser()
            if not base_path.is_absolute():
                base_path = Path(base_dir if base_dir is not None else os.getcwd()) / base_path
            base_path = base_path.resolve()
            if validate and not base_path.is_file():
                raise ConfigError(f"{where}: base: {base_path}: no such file")

        set_ = data.get("set") or {}
        if not isinstance(set_, Mapping):
            raise ConfigError(f"{where}: set must be a mapping of RunConfig fields to values, e.g. {{search_epochs: 4}}, "
                              f"got {set_!r}")
        set_items = []
        for key, value in set_.items():
            _check_field(key, f"{where}: set.{key}")
            set_items.append((str(key), _plain(value)))

        grid = data.get("grid")
        if not isinstance(grid, Mapping) or not grid:
            raise ConfigError(f"{where}: grid must be a non-empty mapping of RunConfig fields to lists of values, "
                              f"e.g. {{lam: [0.1, 1.0]}}, got {grid!r}")
        grid_items = []
        for key, values in grid.items():
            sub = f"{where}: grid.{key}"
            _check_field(key, sub)
            if not isinstance(values, (list, tuple)):
                raise ConfigError(f"{sub} must be a list of values, e.g. [{values!r}], got {values!r}")
            if not values:
                raise ConfigError(f"{sub} is an empty list; give at least one value")
            seen = set()
            for v in values:
                canon = _canonical(v)
                if canon in seen:
                    raise ConfigError(f"{sub} lists {v!r} twice")
                seen.add(canon)
            grid_items.append((str(key), tuple(_plain(v) for v in values)))

        keys = [f"set.{k}" for k, _ in set_items] + [f"grid.{k}" for k, _ in grid_items]
        for a, b in itertools.combinations(keys, 2):
            ka, kb = a.split(".", 1)[1], b.split(".", 1)[1]
            if ka == kb or ka.startswith(kb + ".") or kb.startswith(ka + "."):
                raise ConfigError(f"{where}: {a} and {b} set the same field; keep one")
        size = math.prod(len(v) for _, v in grid_items)
        if size > MAX_POINTS:
            raise ConfigError(f"{where}: grid has {size} points ({' x '.join(str(len(v)) for _, v in grid_items)}); "
                              f"the limit is {MAX_POINTS}")
        sweep = cls(name=name.strip(), base=base_path, set=tuple(set_items), grid=tuple(grid_items))
        for _, value in set_items:
            _inline_yaml(value, f"{where}: set")
        if validate:
            sweep.validate(where)
        return sweep

    # ---- points ------------------------------------------------------------------------
    def points(self) -> List[Point]:
        """The cartesian product of the grid, in grid order (the last key varies fastest).

        Returns:
            One :class:`Point` per combination.  Ids are stable: they depend only on the
            ``set`` and grid values, not on the base file or the grid's position.
        """
        set_overrides = tuple(f"{k}={_inline_yaml(v, 'set.' + k)}" for k, v in self.set)
        keys = [k for k, _ in self.grid]
        named = "name" in keys or "name" in dict(self.set)
        out = []
        for combo in itertools.product(*(vals for _, vals in self.grid)):
            values = tuple(zip(keys, combo))
            overrides = set_overrides + tuple(f"{k}={_inline_yaml(v, 'grid.' + k)}" for k, v in values)
            pid = _point_id(values, self.set)
            if not named:  # each run is named after its point, not after the base config
                overrides += (f"name={pid.split('__')[0][:128]}",)
            out.append(Point(id=pid, values=values, overrides=overrides, legacy_id=_legacy_point_id(values, self.set)))
        return out

    def validate(self, where: str = "sweep") -> List[RunConfig]:
        """Build every point's config, so a bad grid fails before anything runs.

        Returns:
            The resolved :class:`RunConfig` of each point, in :meth:`points` order.

        Raises:
            ConfigError: naming the point (its grid values) and the field; or two points
                with the same id.
        """
        configs = []
        ids: Dict[str, Point] = {}
        for p in self.points():
            if p.id in ids:
                raise ConfigError(f"{where}: points {_describe(ids[p.id])} and {_describe(p)} get the same id "
                                  f"{p.id!r}")
            ids[p.id] = p
            try:
                configs.append(load_config(self.base, p.overrides))
            except ConfigError as exc:
                raise ConfigError(f"{where}: grid point {_describe(p)}: {exc}") from None
        return configs

    def to_dict(self) -> Dict[str, Any]:
        """The resolved spec (absolute ``base``), loadable again with :meth:`from_dict`."""
        return {"name": self.name, "base": str(self.base) if self.base else None,
                "set": {k: v for k, v in self.set}, "grid": {k: list(v) for k, v in self.grid}}


def _check_field(key: Any, where: str) -> None:
    """Reject a key that is not a (dotted) :class:`RunConfig` field."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where}: keys must be RunConfig field names, got {key!r}")
    cls: Any = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not is_dataclass(cls):
            raise ConfigError(f"{where}: {'.'.join(parts[:i])} is not a section, so {key!r} is not a field")
        names = [f.name for f in fields(cls)]
        if part not in names:
            section = f" of {'.'.join(parts[:i])}" if i else ""
            raise ConfigError(f"{where}: unknown RunConfig field {key!r}; allowed fields{section}: {sorted(names)}")
        cls = get_type_hints(cls)[part]


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so values dump to YAML and compare after a round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _canonical(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _inline_yaml(value: Any, where: str) -> str:
    """A one-line YAML text that :func:`coexplore.config.apply_overrides` parses back to ``value``."""
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True).strip()
    except yaml.YAMLError:
        raise ConfigError(f"{where}: {value!r} is not a YAML value") from None
    if text.endswith("\n..."):
        text = text[: -len("\n...")].rstrip()
    if "\n" in text or yaml.safe_load(text) != value:
        raise ConfigError(f"{where}: {value!r} cannot be passed as a key=value override")
    return text


def _label(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "+".join(_label(v) for v in value) or "none"
    if isinstance(value, Mapping):
        return "+".join(f"{k}-{_label(v)}" for k, v in value.items()) or "none"
    return str(value)


def _safe(text: str) -> str:
    """Filesystem-safe: comparison operators as words, other odd characters as ``_``."""
    for op, word in _OPERATORS:
        text = text.replace(op, f"_{word}_")
    out = "".join(c if c in _ID_PART_CHARS else "_" for c in text)
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_.") or "x"


#: Short names of grid keys in point names.
_ABBREVIATIONS = {"lam": "lam", "seed": "s", "search_epochs": "ep", "warmup_epochs": "wep", "a_lr": "alr",
                  "w_lr": "wlr", "path_mode": "", "hw_encoding": "enc", "hardware_space": "hw", "search_space": "",
                  "baseline_budget": "budget", "population": "pop", "limit": "n", "batch_size": "bs"}


def _short(key: str, value: Any) -> str:
    """One grid value in short form: ``dance``, ``lam0.1``, ``norepair``, ``s0``, ``latency_le_0.2ms``."""
    leaf = key.split(".")[-1]
    if leaf in ("method", "objective", "name"):
        return _safe(_label(value))
    if leaf == "constraints":
        return _safe(_label(value)) if value else "unconstrained"
    if isinstance(value, bool):
        return _safe(leaf) if value else "no" + _safe(leaf)
    return _safe(_ABBREVIATIONS.get(leaf, leaf) + _label(value)) if _ABBREVIATIONS.get(leaf, leaf) else \
        _safe(_label(value))


def _digest(values: Sequence[Tuple[str, Any]], set_items: Sequence[Tuple[str, Any]]) -> str:
    return hashlib.sha256(_canonical({"set": dict(set_items), "grid": dict(values)}).encode()).hexdigest()[:8]


def _point_id(values: Sequence[Tuple[str, Any]], set_items: Sequence[Tuple[str, Any]]) -> str:
    readable = "_".join(_short(k, v) for k, v in values)[:100].rstrip("_.")
    return f"{readable}__{_digest(values, set_items)}"  # "__" never occurs in the readable part


def _legacy_point_id(values: Sequence[Tuple[str, Any]], set_items: Sequence[Tuple[str, Any]]) -> str:
    """The folder name of coexplore < 0.2 (``key=value,...__hash``), so that old sweeps still resume."""
    readable = ",".join(f"{_safe(k)}={_safe(_label(v))}" for k, v in values)[:120].rstrip("_.,=")
    return f"{readable}__{_digest(values, set_items)}"


def _describe(p: Point) -> str:
    return ",".join(f"{k}={_label(v)}" for k, v in p.values)


# ---------------------------------------------------------------------------------------
# commands and run folders
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchCommand:
    """Builds a point's ``coexplore search`` command line (picklable, so Ray can ship it).

    Called as ``command(point, run_dir, resume) -> argv``; any callable with that signature
    can replace it in :func:`run_sweep`.
    """

    base: Optional[str] = None  # run config YAML (absolute path), or None for the defaults
    cache_dir: Optional[str] = None  # --cache-dir passed through
    python: str = field(default_factory=lambda: sys.executable)  # interpreter; the same path on every node

    def __call__(self, point: Point, run_dir: Path, resume: bool) -> List[str]:
        argv = [self.python, "-m", "coexplore.cli", "--quiet", "search"]
        if self.base:
            argv += ["--config", str(self.base)]
        argv += ["--out", str(run_dir)]
        if resume:
            argv.append("--resume")
        if self.cache_dir:
            argv += ["--cache-dir", str(self.cache_dir)]
        return argv + list(point.overrides)


def finished_status(run_dir: PathLike) -> Optional[str]:
    """The sweep status of a finished run folder (``done``, ``violated``, ``diverged``), ``failed``
    for an unreadable ``result.json`` (finished, so it is not rerun over), ``None`` when the
    folder holds no result (not finished)."""
    status = _run_status(run_dir)
    if status is None:
        return None
    return {"ok": "done", "constraints-violated": "violated", "diverged": "diverged"}.get(status, "failed")


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _terminate(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_line(path: Path) -> str:
    """The last line a point's process printed (skipping the sweep's ``#`` lines)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.strip() and not line.startswith("# "):
            return line.strip()[:300]
    return ""


def _execute_point(point: Point, run_dir: PathLike, command_fn: CommandFn, env_updates: Mapping[str, str],
                   cwd: Optional[str], should_stop: Optional[Callable[[], bool]] = None,
                   on_start: Optional[Callable[[subprocess.Popen], None]] = None,
                   grace_s: float = 10.0) -> Dict[str, Any]:
    """Run one point to its end under its folder lock; shared by the local and Ray backends.

    Returns:
        The point's status fields: ``status``, ``action`` (``ran``, ``resumed`` or
        ``skipped``), ``returncode``, ``started``, ``finished``, ``seconds`` and ``note``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = should_stop or (lambda: False)
    lock = FolderLock(run_dir / LOCK_FILE)

    def waiting(holder: Dict[str, Any]) -> None:
        logger.info("%s: waiting for pid %s on %s (a run of this point started by an earlier sweep) to finish",
                    point.id, holder.get("pid", "?"), holder.get("host", "?"))

    if not lock.acquire(stop, on_wait=waiting):
        return {"status": "pending", "action": "", "note": "interrupted before it started"}
    try:
        prior = finished_status(run_dir)
        if prior is not None:
            return {"status": prior, "action": "skipped", "note": "finished by an earlier sweep"}
        if stop():
            return {"status": "pending", "action": "", "note": "interrupted before it started"}
        resume = (run_dir / CHECKPOINT).is_file()
        argv = [str(a) for a in command_fn(point, run_dir, resume)]
        env = {**os.environ, **env_updates}
        log_path = run_dir / LOG_FILE
        action = "resumed" if resume else "ran"
        started, t0 = _now(), time.monotonic()
        with open(log_path, "ab") as log:
            log.write(f"# {started} sweep: {'resuming' if resume else 'starting'} {point.id}\n"
                      f"# $ {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, cwd=cwd, pass_fds=lock.inheritable_fds)
            except OSError as exc:
                log.write(f"# could not start: {exc}\n".encode())
                return {"status": "failed", "action": action, "started": started, "finished": _now(),
                        "seconds": 0.0, "note": f"could not start {argv[0]}: {exc}"}
            lock.record(pid=proc.pid, point=point.id)
            if on_start is not None:
                on_start(proc)
            try:
                rc = proc.wait()
            except BaseException:  # KeyboardInterrupt (Ray's cancel), SystemExit: the child must not outlive us
                _terminate(proc, grace_s)
                raise
            seconds = time.monotonic() - t0
            last = _last_line(log_path)
            log.write(f"# {_now()} sweep: exit code {rc} after {seconds:.1f} s\n".encode())
    finally:
        lock.release()
    out = {"action": action, "returncode": rc, "started": started, "finished": _now(), "seconds": round(seconds, 3)}
    if rc == 0:
        status = finished_status(run_dir)
        if status is None:
            return {**out, "status": "failed", "note": f"exit code 0 but no {RESULT_FILE}"}
        return {**out, "status": status, "note": ""}
    if rc == VIOLATED_EXIT_CODE:
        return {**out, "status": "violated", "note": "a constraint is violated"}
    if rc == int(ExitCode.DIVERGED):
        return {**out, "status": "diverged", "note": f"the search diverged: {last}" if last else "the search diverged"}
    if stop() or rc in (-signal.SIGINT, 128 + signal.SIGINT):
        return {**out, "status": "interrupted", "note": "interrupted; rerun the sweep to resume it"}
    why = f"killed by signal {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals() else f"exit code {rc}"
    return {**out, "status": "failed", "note": f"{why}: {last}" if last else why}


class _StatusTable:
    """The sweep's status rows, rewritten atomically to ``sweep_status.csv`` on every change."""

    COLUMNS = ("status", "action", "returncode", "started", "finished", "seconds", "note")

    def __init__(self, path: Optional[Path], points: Sequence[Point], initial: Mapping[str, Mapping[str, Any]]):
        self.path = path
        self._lock = threading.Lock()
        self._rows: Dict[str, Dict[str, Any]] = {}
        for p in points:
            row: Dict[str, Any] = {"point": p.id, **{k: _cell(v) for k, v in p.values}}
            row.update(dict.fromkeys(self.COLUMNS))
            row.update(initial.get(p.id, {}))
            self._rows[p.id] = row

    def update(self, point_id: str, **values: Any) -> None:
        with self._lock:
            self._rows[point_id].update(values)
            self._write()

    def get(self, point_id: str, key: str) -> Any:
        with self._lock:
            return self._rows[point_id].get(key)

    def frame(self) -> pd.DataFrame:
        with self._lock:
            return _typed(pd.DataFrame(list(self._rows.values())))

    def write(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        if self.path is not None:
            atomic_write_text(self.path, _typed(pd.DataFrame(list(self._rows.values()))).to_csv(index=False))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    if "returncode" in df:
        df["returncode"] = pd.to_numeric(df["returncode"], errors="coerce").astype("Int64")
    if "seconds" in df:
        df["seconds"] = pd.to_numeric(df["seconds"], errors="coerce")
    return df


def _cell(value: Any) -> Any:
    """A grid value as a table cell: lists joined by ``"; "`` (as in load_runs), mappings as JSON."""
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    return value


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the sweep runs, SIGTERM raises KeyboardInterrupt, so children are stopped cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------

def run_sweep(sweep: Union[Sweep, PathLike], out_dir: PathLike, jobs: Optional[int] = 2, backend: str = "local",
              resume: bool = True, dry_run: bool = False, cache_dir: Optional[PathLike] = None,
              progress: bool = True, *, command_fn: Optional[CommandFn] = None, threads: Optional[int] = None,
              ray_address: Optional[str] = None, grace_s: float = 10.0) -> pd.DataFrame:
    """Run every point of a sweep that has not finished yet.

    Finished points (their folder has ``result.json``) are skipped; interrupted ones (a
    checkpoint, no result) continue with ``--resume``; failed ones are retried.  A failing
    point does not stop the others.  ``<out_dir>/sweep.yaml`` holds the resolved spec and
    ``<out_dir>/sweep_status.csv`` the statuses, rewritten atomically whenever a point
    starts or ends; each point's output goes to ``<out_dir>/<point id>/sweep.log``.  After
    Ctrl-C (or SIGTERM) the running points are terminated, the statuses written and
    KeyboardInterrupt re-raised; re-running the same call continues the sweep.

    Args:
        sweep: a :class:`Sweep` or the path of a sweep YAML.
        out_dir: the sweep folder (created).
        jobs: points run at once (local: >= 1; ray: None or 0 means as many as the cluster
            fits).
        backend: ``"local"`` (subprocesses on this machine) or ``"ray"`` (one Ray task per
            point; run folders must be on a filesystem every node shares).
        resume: continue an existing sweep folder; False refuses a folder that already holds
            runs of these points (nothing is ever deleted).
        dry_run: only report what would run; writes nothing.
        cache_dir: ``--cache-dir`` passed to every search (data and evaluator cache).
        progress: a progress bar on stderr.
        command_fn: ``command_fn(point, run_dir, resume) -> argv``; default
            :class:`SearchCommand` (``python -m coexplore.cli --quiet search ...``).
        threads: CPU threads per point (``OMP_NUM_THREADS`` etc. of the children; Ray's
            ``num_cpus`` per task); default ``max(1, cpu_count // jobs)``.
        ray_address: Ray cluster address (default: ``$RAY_ADDRESS``; neither: a local Ray).
        grace_s: seconds between SIGTERM and SIGKILL when stopping points.

    Returns:
        One row per point: ``point``, the grid values, ``status`` (``done``, ``violated``,
        ``failed``, ``interrupted``, ``pending`` or ``running``), ``action`` (``ran``,
        ``resumed``, ``skipped`` when it had finished before; ``would run`` / ``would
        resume`` in a dry run), ``returncode``, ``started``, ``finished``, ``seconds`` and
        ``note``.

    Raises:
        ConfigError: an invalid spec or argument, ``resume=False`` on a used folder, another
            sweep running in ``out_dir``, or Ray asked for but not installed.
        KeyboardInterrupt: after the running points were stopped and the statuses written.
    """
    if isinstance(sweep, Sweep):
        sweep.validate()
    else:
        sweep = Sweep.load(sweep)  # validates
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: allowed values: {list(BACKENDS)}")
    if jobs is None or jobs < 1:
        if backend == "local":
            raise ConfigError(f"jobs must be >= 1 with the local backend, got {jobs!r}")
        jobs = None
    if threads is None:
        threads = max(1, _cpu_count() // jobs) if jobs else 1
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    out = Path(out_dir).resolve()
    points = [replace(p, id=p.legacy_id) if (out / p.legacy_id).is_dir() and not (out / p.id).exists() else p
              for p in sweep.points()]
    if command_fn is None:
        command_fn = SearchCommand(base=str(sweep.base) if sweep.base else None,
                                   cache_dir=str(Path(cache_dir).resolve()) if cache_dir else None)

    initial: Dict[str, Dict[str, Any]] = {}
    for p in points:
        d = out / p.id
        prior = finished_status(d)
        if prior is not None:
            initial[p.id] = {"status": prior, "action": "skipped", "note": "finished before this sweep started"}
        else:
            initial[p.id] = {"status": "pending", "action": "resume" if (d / CHECKPOINT).is_file() else "run"}
    used = [pid for pid, row in initial.items() if row["action"] != "run"]
    if used and not resume:
        raise ConfigError(f"{out}: already holds runs of {len(used)} point(s) of this sweep (e.g. {used[0]}); "
                          f"resume it, or choose another output folder")
    todo = [p for p in points if initial[p.id]["action"] != "skipped"]

    if dry_run:
        for p in todo:
            again = initial[p.id]["action"] == "resume"
            initial[p.id].update(action="would resume" if again else "would run",
                                 note=shlex.join(str(a) for a in command_fn(p, out / p.id, again)))
        table = _StatusTable(None, points, initial)
        return table.frame()

    out.mkdir(parents=True, exist_ok=True)
    sweep_lock = FolderLock(out / LOCK_FILE)
    if not sweep_lock.try_acquire():
        holder = sweep_lock.holder()
        raise ConfigError(f"{out}: another sweep is running in this folder (pid {holder.get('pid', '?')} on "
                          f"{holder.get('host', '?')}); wait for it or stop it first")
    try:
        sweep_lock.record(pid=os.getpid(), sweep=sweep.name)
        _write_spec(out, sweep)
        _carry_over(out / STATUS_FILE, initial)
        table = _StatusTable(out / STATUS_FILE, points, initial)
        table.write()
        env_updates = {k: str(threads) for k in _THREAD_VARS}
        logger.info("sweep %s: %d points, %d to run (%s backend, %s at once, %d thread(s) each) in %s", sweep.name,
                    len(points), len(todo), backend, jobs or "as many as fit", threads, out)
        ctx = _RunContext(out=out, table=table, command_fn=command_fn, env_updates=env_updates, cwd=os.getcwd(),
                          grace_s=grace_s, jobs=jobs, threads=threads, progress=progress,
                          n_points=len(points), n_finished=len(points) - len(todo), name=sweep.name)
        try:
            with _sigterm_as_interrupt():
                if todo and backend == "local":
                    _run_local(todo, ctx)
                elif todo:
                    _run_ray(todo, ctx, ray_address)
        finally:
            table.write()
        df = table.frame()
        counts = df["status"].value_counts().to_dict()
        logger.info("sweep %s finished: %s", sweep.name, ", ".join(f"{v} {k}" for k, v in counts.items()))
        return df
    finally:
        sweep_lock.release()


def _write_spec(out: Path, sweep: Sweep) -> None:
    path = out / SPEC_FILE
    spec = sweep.to_dict()
    if path.is_file():
        try:
            old = read_yaml(path)
        except ConfigError:
            old = None
        if old != spec:
            logger.warning("%s: replacing a different sweep spec; points of the old one stay in their folders", path)
    write_yaml(path, spec)


def _carry_over(status_path: Path, initial: Dict[str, Dict[str, Any]]) -> None:
    """Keep the timings of points that finished in an earlier sweep."""
    if not status_path.is_file():
        return
    try:
        old = pd.read_csv(status_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return
    if "point" not in old:
        return
    for rec in old.to_dict("records"):
        row = initial.get(rec["point"])
        if row is not None and row["action"] == "skipped" and rec.get("status") == row["status"]:
            for k in ("returncode", "started", "finished", "seconds"):
                if rec.get(k, "") != "":
                    row[k] = rec[k]


@dataclass
class _RunContext:
    """What both backends need (one object instead of a long argument list)."""

    out: Path
    table: _StatusTable
    command_fn: CommandFn
    env_updates: Dict[str, str]
    cwd: str
    grace_s: float
    jobs: Optional[int]
    threads: int
    progress: bool
    n_points: int
    n_finished: int
    name: str

    def progress_bar(self):
        from tqdm import tqdm

        return tqdm(total=self.n_points, initial=self.n_finished, desc=self.name, unit="point",
                    disable=not self.progress, leave=True, file=sys.stderr)

    def report(self, point: Point, outcome: Mapping[str, Any]) -> None:
        status = outcome.get("status")
        secs = outcome.get("seconds")
        msg = f"{point.id}: {status}" + (f" after {secs:.1f} s" if isinstance(secs, (int, float)) else "")
        if outcome.get("note"):
            msg += f" ({outcome['note']})"
        (logger.warning if status == "failed" else logger.info)("%s", msg)


def _run_local(todo: Sequence[Point], ctx: _RunContext) -> None:
    """Up to ``ctx.jobs`` subprocesses at once, driven by a thread pool."""
    stop = threading.Event()
    live: Dict[str, subprocess.Popen] = {}
    live_lock = threading.Lock()

    def work(point: Point) -> Dict[str, Any]:
        def started(proc: subprocess.Popen) -> None:
            with live_lock:
                live[point.id] = proc
                stopped = stop.is_set()
            if stopped:  # the sweep was interrupted between Popen and here
                proc.terminate()
            again = ctx.table.get(point.id, "action") == "resume"
            ctx.table.update(point.id, status="running", action="resumed" if again else "ran", started=_now(), note="")

        if stop.is_set():
            return {"status": "pending"}
        try:
            outcome = _execute_point(point, ctx.out / point.id, ctx.command_fn, ctx.env_updates, ctx.cwd,
                                     should_stop=stop.is_set, on_start=started, grace_s=ctx.grace_s)
        except Exception as exc:  # a broken run folder must not stop the other points
            logger.exception("%s: could not run", point.id)
            outcome = {"status": "failed", "note": f"{type(exc).__name__}: {exc}"}
        finally:
            with live_lock:
                live.pop(point.id, None)
        ctx.table.update(point.id, **outcome)
        return outcome

    pool = ThreadPoolExecutor(max_workers=ctx.jobs, thread_name_prefix="sweep")
    futures: Dict[Any, Point] = {}
    bar = ctx.progress_bar()
    try:
        for p in todo:
            futures[pool.submit(work, p)] = p
        for fut in as_completed(futures):
            outcome = fut.result()
            ctx.report(futures[fut], outcome)
            bar.update(1)
    except BaseException:
        stop.set()
        for fut in futures:
            fut.cancel()
        with live_lock:
            procs = list(live.values())
        logger.warning("sweep interrupted: stopping %d running point(s); rerun the same command to resume",
                       len(procs))
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        _, not_done = wait_futures([f for f in futures if not f.cancelled()], timeout=ctx.grace_s)
        if not_done:
            with live_lock:
                procs = list(live.values())
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _run_ray(todo: Sequence[Point], ctx: _RunContext, address: Optional[str]) -> None:
    """One Ray task per point (``num_cpus=ctx.threads``), at most ``ctx.jobs`` in flight."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f'backend "ray" needs Ray, which is not installed: {RAY_HINT}') from None
    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=max(_cpu_count(), ctx.threads * (ctx.jobs or 1)), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        started_here = True
    inflight: Dict[Any, Point] = {}
    bar = ctx.progress_bar()
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if ctx.threads > cpus:
            raise ConfigError(f"threads={ctx.threads} CPUs per point, but the Ray cluster has {cpus:g}; "
                              f"no point could ever be scheduled")
        task = ray.remote(num_cpus=ctx.threads, max_retries=0)(_execute_point)
        queue = list(todo)
        limit = ctx.jobs or len(queue)
        while queue or inflight:
            while queue and len(inflight) < limit:
                p = queue.pop(0)
                ref = task.remote(p, str(ctx.out / p.id), ctx.command_fn, ctx.env_updates, ctx.cwd,
                                  grace_s=ctx.grace_s)
                inflight[ref] = p
                again = ctx.table.get(p.id, "action") == "resume"
                ctx.table.update(p.id, status="running", action="resumed" if again else "ran", started=_now(),
                                 note="submitted to Ray")
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                p = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    outcome = {"status": "interrupted", "note": "cancelled"}
                except ray.exceptions.RayError as exc:
                    outcome = {"status": "failed", "note": f"Ray: {str(exc).strip().splitlines()[-1][:300]}"}
                ctx.table.update(p.id, **outcome)
                ctx.report(p, outcome)
                bar.update(1)
    except BaseException:
        if inflight:
            logger.warning("sweep interrupted: cancelling %d Ray task(s); rerun the same command to resume",
                           len(inflight))
            for ref in inflight:
                ray.cancel(ref)  # KeyboardInterrupt in the task, which terminates its child process
            with contextlib.suppress(Exception):
                ray.wait(list(inflight), num_returns=len(inflight), timeout=ctx.grace_s + 5)
            for p in inflight.values():
                ctx.table.update(p.id, status="interrupted", note="cancelled; rerun the sweep to resume it")
        raise
    finally:
        bar.close()
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------

def summarize(out_dir: PathLike, write: bool = True) -> pd.DataFrame:
    """One row per point of a sweep folder: grid values, status and result metrics.

    The status comes from the run folder when it has finished (``result.json``), else
    from ``sweep_status.csv`` (a ``running`` point whose folder lock is free is reported
    ``interrupted``), else ``pending``.  Metrics are read with
    :func:`coexplore.pareto.load_runs`; its ``status`` column becomes ``result_status`` and
    columns that repeat a grid key are dropped.

    Args:
        out_dir: a folder written by :func:`run_sweep` (it holds ``sweep.yaml``).
        write: also write ``<out_dir>/sweep_summary.csv`` (atomically).

    Returns:
        The table: ``point``, the grid keys, ``status``, ``note``, ``run`` and the
        :func:`~coexplore.pareto.load_runs` columns (NaN for unfinished points).

    Raises:
        ConfigError: ``out_dir`` holds no ``sweep.yaml``, or it is invalid.
    """
    from .pareto import load_runs

    out = Path(out_dir)
    spec = out / SPEC_FILE
    if not spec.is_file():
        raise ConfigError(f"{out}: no {SPEC_FILE}; is this a sweep folder written by run_sweep?")
    sweep = Sweep.load(spec, validate=False)
    points = [replace(p, id=p.legacy_id) if (out / p.legacy_id).is_dir() and not (out / p.id).exists() else p
              for p in sweep.points()]
    recorded: Dict[str, Dict[str, str]] = {}
    if (out / STATUS_FILE).is_file():
        try:
            old = pd.read_csv(out / STATUS_FILE, dtype=str, keep_default_na=False)
            recorded = {r["point"]: r for r in old.to_dict("records")} if "point" in old else {}
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            logger.warning("%s: unreadable (%s); statuses come from the run folders only", out / STATUS_FILE, exc)

    rows = []
    finished = []
    for p in points:
        d = out / p.id
        status = finished_status(d)
        note = ""
        if status is not None:
            finished.append(d)
        else:
            rec = recorded.get(p.id, {})
            status = rec.get("status") or "pending"
            note = rec.get("note", "")
            if status == "running" and not _lock_held(d / LOCK_FILE):
                status, note = "interrupted", "its sweep stopped; rerun the sweep to resume it"
        rows.append({"point": p.id, **{k: _cell(v) for k, v in p.values}, "status": status, "note": note,
                     "run": str(d)})
    df = pd.DataFrame(rows)
    runs = _load_finished(finished, load_runs)
    if runs is not None and len(runs):
        runs = runs.rename(columns={"status": "result_status"})
        runs = runs.drop(columns=[c for c in runs.columns if c in df.columns and c != "run"])
        runs["run"] = runs["run"].map(lambda r: str(Path(r)))
        df = df.merge(runs, on="run", how="left")
    if write:
        atomic_write_text(out / SUMMARY_FILE, df.to_csv(index=False))
    return df


def _load_finished(dirs: Sequence[Path], load_runs: Callable[..., pd.DataFrame]) -> Optional[pd.DataFrame]:
    """load_runs on all finished folders; one by one when one of them is malformed."""
    if not dirs:
        return None
    try:
        return load_runs(dirs)
    except ConfigError:
        frames = []
        for d in dirs:
            try:
                frames.append(load_runs(d))
            except ConfigError as exc:
                logger.warning("summary: skipping the metrics of %s: %s", d, exc)
        return pd.concat(frames, ignore_index=True) if frames else None


def _lock_held(path: Path) -> bool:
    return FolderLock(path).held_elsewhere()


def exit_code(statuses: Union[pd.DataFrame, Sequence[str]]) -> int:
    """A sweep's exit code, like ``coexplore search``'s (:class:`~coexplore.runfolder.ExitCode`):
    1 if any point failed, was interrupted or did not run; else 4 if any diverged; else 3 if
    any violates a constraint; else 0.

    Args:
        statuses: a table from :func:`run_sweep` / :func:`summarize`, or the statuses.
    """
    values = list(statuses["status"]) if isinstance(statuses, pd.DataFrame) else list(statuses)
    if not all(s in ("done", "violated", "diverged") for s in values):
        return int(ExitCode.FAILED)
    if "diverged" in values:
        return int(ExitCode.DIVERGED)
    if "violated" in values:
        return VIOLATED_EXIT_CODE
    return int(ExitCode.OK)


def summary_rows(df: pd.DataFrame, dry_run: bool = False) -> List[Dict[str, Any]]:
    """The compact rows of a sweep's terminal table (the full table is ``sweep_summary.csv``):
    the point, its status and, for finished points, accuracy, latency and whether the
    constraints hold; a dry run shows what each point would do instead."""
    rows = []
    for rec in df.to_dict("records"):
        row: Dict[str, Any] = {"point": str(rec.get("point", "")).split("__")[0], "status": rec.get("status")}
        if dry_run:
            row["action"] = rec.get("action", "")
        else:
            acc, lat = rec.get("accuracy"), rec.get("latency_s")
            if isinstance(acc, float) and math.isfinite(acc):
                row["accuracy_%"] = round(100 * acc, 2)
            if isinstance(lat, float) and math.isfinite(lat):
                row["latency_ms"] = lat * 1e3
            met = rec.get("all_constraints_met")
            if isinstance(met, (bool, float)) and not (isinstance(met, float) and math.isnan(met)):
                row["met"] = bool(met)
            if rec.get("chance_level") is True:
                row["note"] = "chance level"
            elif rec.get("note"):
                row["note"] = str(rec["note"])[:40]
        rows.append(row)
    return rows
