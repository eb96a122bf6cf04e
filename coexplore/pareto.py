"""Pareto tools: read folders of runs, find the accuracy/cost front, measure it, plot it.

A run folder (written by :mod:`coexplore.search`) holds a ``result.json`` with the method,
seed, the found accelerator, the analytically checked metrics and the constraint status.
This module turns many such folders into one table (:func:`load_runs`), finds the
non-dominated runs for any pair of metrics (:func:`pareto_mask`, :func:`pareto_table`),
scores a front by its exact two-dimensional hypervolume (:func:`hypervolume_2d`; Zitzler
and Thiele, "Multiobjective Optimization Using Evolutionary Algorithms -- A Comparative
Case Study", PPSN 1998) and writes the front as CSV plus a PNG and an SVG plot
(:func:`write_pareto`), the comparison DANCE (Choi et al., DAC 2021) and HDX (Hong et al.,
DAC 2022) draw between soft-penalty and hard-constraint co-exploration.

Metric names: ``latency``, ``energy``, ``edap``, ``edp``, ``area``, ``fps``, ``error`` and
``accuracy``.  Values are kept in SI units / fractions in tables and in the hypervolume;
plots show latency in ms, energy in mJ, and error and accuracy in %.
"""

from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .common import METRICS as _VOCAB
from .common import ConfigError, PathLike, atomic_write_bytes, atomic_write_text
from .runfolder import RESULT_FILE, read_result

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class MetricSpec:
    """How one network-level metric is stored, optimised and displayed."""

    name: str  # public metric name, e.g. "latency"
    column: str  # column in the run table (the key in result.json's "metrics")
    minimize: bool  # True when smaller is better
    scale: float  # display value = stored value x scale
    unit: str  # display unit
    label: str  # axis label without the unit


#: Every metric of the shared vocabulary (:mod:`coexplore.common.metrics`), as the Pareto tools use it.
METRICS: Dict[str, MetricSpec] = {
    m.name: MetricSpec(m.name, m.key, m.minimize, m.display_scale, m.display_unit, m.label) for m in _VOCAB.values()}

_MARKERS = {True: "o", False: "X", None: "s"}  # constraints met / violated / unknown


def metric_spec(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of a metric name; unknown names fail with the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric {name!r}; known metrics: {sorted(METRICS)}") from None


def axis_label(name: str) -> str:
    """Axis label with unit, e.g. ``"latency (ms)"``."""
    spec = metric_spec(name)
    return f"{spec.label} ({spec.unit})"


# ---------------------------------------------------------------------------------------
# reading runs
# ---------------------------------------------------------------------------------------

def _read_result(path: Path) -> Dict[str, Any]:
    """Read and validate one ``result.json`` (:class:`~coexplore.runfolder.Result`); errors name the file."""
    return read_result(path).to_dict()


def _row(run_dir: Path, data: Mapping[str, Any]) -> Dict[str, Any]:
    """One table row from a parsed result.json."""
    row: Dict[str, Any] = {"run": str(run_dir), "method": data.get("method"), "seed": data.get("seed")}
    for k, v in data.items():
        if k in ("metrics", "accelerator", "constraints", "architecture") or k in row:
            continue
        if v is None or isinstance(v, (str, int, float, bool)):
            row[k] = v
    metrics = {k: (float(v) if v is not None else np.nan) for k, v in data["metrics"].items()}
    # Fill derivable metrics so that every run can be placed on every axis.
    if "error" not in metrics and "accuracy" in metrics:
        metrics["error"] = 1.0 - metrics["accuracy"]
    if "accuracy" not in metrics and "error" in metrics:
        metrics["accuracy"] = 1.0 - metrics["error"]
    if "fps" not in metrics and metrics.get("latency_s", 0) > 0:
        metrics["fps"] = 1.0 / metrics["latency_s"]
    row.update(metrics)
    for k, v in (data.get("accelerator") or {}).items():
        row[f"acc_{k}"] = v
    if data.get("architecture") and data.get("accelerator"):
        import hashlib
        blob = json.dumps({"a": data["architecture"], "h": data["accelerator"]}, sort_keys=True)
        row["design"] = hashlib.sha256(blob.encode()).hexdigest()[:10]  # equal for identical designs
    cons = data.get("constraints") or []
    row["constraints"] = "; ".join(str(c.get("spec", f"{c.get('metric')} {c.get('op')} {c.get('bound')}"))
                                   for c in cons)
    seen: Dict[str, int] = {}
    for c in cons:
        metric = str(c.get("metric", "constraint"))
        seen[metric] = seen.get(metric, 0) + 1
        key = metric if seen[metric] == 1 else f"{metric}_{seen[metric]}"
        if "bound" in c:
            row[f"bound_{key}"] = c["bound"]
        if "g" in c:
            row[f"g_{key}"] = c["g"]
    met = data.get("all_constraints_met")
    if met is None and cons and all("satisfied" in c for c in cons):
        met = all(bool(c["satisfied"]) for c in cons)
    row["all_constraints_met"] = met
    return row


def _as_path_list(paths: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    if isinstance(paths, (str, Path)) or hasattr(paths, "__fspath__"):
        return [Path(paths)]  # type: ignore[arg-type]
    return [Path(p) for p in paths]


def load_runs(paths: Union[PathLike, Iterable[PathLike]]) -> pd.DataFrame:
    """Read run folders into one table, one row per run.

    Each path is either a run folder (it holds ``result.json``; a malformed file is an
    error) or a parent folder, searched recursively for ``result.json`` files (a malformed
    one is skipped with a warning, so one broken run does not hide a sweep).

    Args:
        paths: one path or several.

    Returns:
        A DataFrame with columns ``run`` (the folder), ``method``, ``seed``, the other
        scalar top-level fields of result.json, every ``metrics`` key (``accuracy``,
        ``error``, ``latency_s``, ``fps``, ``energy_j``, ``area_mm2``, ``edap``, ``edp``,
        ...), the accelerator fields prefixed ``acc_``, ``constraints`` (the specs joined by
        ``"; "``), ``bound_<metric>`` and ``g_<metric>`` per constraint and
        ``all_constraints_met``.  Rows are sorted by run path.

    Raises:
        ConfigError: a path does not exist, a run folder's result.json is missing or
            malformed (the message names the file), or no run was found at all.
    """
    path_list = _as_path_list(paths)
    rows: List[Dict[str, Any]] = []
    seen: set = set()
    for p in path_list:
        if not p.exists():
            raise ConfigError(f"{p}: no such file or folder")
        if p.is_file():
            if p.name != RESULT_FILE:
                raise ConfigError(f"{p}: expected a run folder or its {RESULT_FILE}")
            p = p.parent
        direct = p / RESULT_FILE
        if direct.is_file():
            if direct.resolve() not in seen:
                seen.add(direct.resolve())
                rows.append(_row(p, _read_result(direct)))
            continue
        found = sorted(p.rglob(RESULT_FILE))
        if not found:
            raise ConfigError(f"{p}: no {RESULT_FILE} found in this folder or below it")
        for f in found:
            if f.resolve() in seen:
                continue
            seen.add(f.resolve())
            try:
                rows.append(_row(f.parent, _read_result(f)))
            except ConfigError as exc:
                logger.warning("skipping run: %s", exc)
    if not rows:
        raise ConfigError(f"no readable runs in {[str(p) for p in path_list]}")
    df = pd.DataFrame(rows).sort_values("run", kind="stable").reset_index(drop=True)
    return df


# ---------------------------------------------------------------------------------------
# fronts and hypervolume
# ---------------------------------------------------------------------------------------

def pareto_mask(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Non-dominated points when both coordinates are minimised, in O(n log n).

    A point is dominated when another is no worse in both coordinates and better in one.
    Duplicates do not dominate each other, so every copy of a front point is kept; points
    with a NaN coordinate are never on the front.

    Args:
        x: ``n`` values of the first objective.
        y: ``n`` values of the second objective.

    Returns:
        A bool array of shape ``n``, True for the non-dominated points.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    n = x.size
    mask = np.zeros(n, dtype=bool)
    ok = ~(np.isnan(x) | np.isnan(y))
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return mask
    xs, ys = x[idx], y[idx]
    order = np.lexsort((ys, xs))  # by x, then y
    xs, ys = xs[order], ys[order]
    new_group = np.empty(xs.size, dtype=bool)
    new_group[0] = True
    new_group[1:] = xs[1:] != xs[:-1]
    group = np.cumsum(new_group) - 1
    group_min = ys[new_group]  # sorted by y inside a group, so the first is the smallest
    # best y among all points with a strictly smaller x
    prev_best = np.concatenate(([np.inf], np.minimum.accumulate(group_min)[:-1]))
    front = (ys == group_min[group]) & (group_min[group] < prev_best[group])
    mask[idx[order[front]]] = True
    return mask


def hypervolume_2d(points: Union[Sequence[Sequence[float]], np.ndarray], ref: Sequence[float]) -> float:
    """Exact hypervolume of a two-objective minimisation front.

    The area dominated by the points and bounded by the reference point.  Points that do
    not dominate the reference point (any coordinate >= the reference) add nothing and are
    ignored, as are NaN points.

    Args:
        points: ``n x 2`` array of ``(x, y)``.
        ref: the reference point ``(x_ref, y_ref)``.

    Returns:
        The hypervolume (units of x times units of y); 0.0 when no point counts.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return 0.0
    pts = pts.reshape(-1, 2)
    rx, ry = (float(v) for v in ref)
    keep = (pts[:, 0] < rx) & (pts[:, 1] < ry)  # NaN compares False
    pts = pts[keep]
    if pts.shape[0] == 0:
        return 0.0
    front = pts[pareto_mask(pts[:, 0], pts[:, 1])]
    front = front[np.lexsort((front[:, 1], front[:, 0]))]  # x ascending, so y descending
    widths = np.diff(np.concatenate((front[:, 0], [rx])))
    return float(np.sum(widths * (ry - front[:, 1])))


def _values(df: pd.DataFrame, name: str) -> np.ndarray:
    spec = metric_spec(name)
    if spec.column not in df.columns:
        raise ConfigError(f"metric {name!r} needs column {spec.column!r}, which the runs do not have; "
                          f"columns: {list(df.columns)}")
    return pd.to_numeric(df[spec.column], errors="coerce").to_numpy(dtype=np.float64)


def _minimised(df: pd.DataFrame, name: str) -> np.ndarray:
    """Values of a metric turned into a quantity to minimise (maximised ones are negated)."""
    v = _values(df, name)
    return v if metric_spec(name).minimize else -v


def pareto_table(df: pd.DataFrame, x: str = "latency", y: str = "error") -> pd.DataFrame:
    """The runs on the Pareto front of two metrics, sorted along ``x`` (best first).

    Each metric is minimised or maximised as its name says (``fps`` and ``accuracy`` are
    maximised).  Display columns are added for scaled metrics: ``latency_ms``,
    ``energy_mJ``, ``error_pct``, ``accuracy_pct``.

    Args:
        df: a run table from :func:`load_runs`.
        x: metric on the first axis.
        y: metric on the second axis.

    Returns:
        The front rows (all columns of ``df`` plus the display columns), index reset.
    """
    if x == y:
        raise ConfigError(f"the two Pareto axes must differ, got {x!r} twice")
    mx, my = _minimised(df, x), _minimised(df, y)
    mask = pareto_mask(mx, my)
    front = df.loc[mask].copy()
    order = np.lexsort((my[mask], mx[mask]))
    front = front.iloc[order]
    for name in (x, y):
        spec = metric_spec(name)
        if spec.scale != 1.0:  # stored in SI units / fractions; add the display unit
            front[f"{name}_{'pct' if spec.unit == '%' else spec.unit}"] = _values(front, name) * spec.scale
    return front.reset_index(drop=True)


def default_reference(values: np.ndarray) -> float:
    """1.1 x the largest value (for a positive maximum); in general max + 0.1 |max|."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 1.0
    hi = float(v.max())
    if hi != 0:
        return hi + 0.1 * abs(hi)
    span = float(v.max() - v.min())
    return hi + (0.1 * span if span > 0 else 1.0)


# ---------------------------------------------------------------------------------------
# constraints on the axes
# ---------------------------------------------------------------------------------------

def _bound_on_axis(metric: str, bound: float, axis: str) -> Optional[float]:
    """A constraint bound expressed on a plot axis (raw units), or None if unrelated."""
    if metric == axis:
        return bound
    if {metric, axis} == {"fps", "latency"} and bound > 0:
        return 1.0 / bound
    if {metric, axis} == {"accuracy", "error"}:
        return 1.0 - bound
    return None


def _bound_text(metric: str, bound: float) -> str:
    from .common import HARDWARE_METRICS
    m = metric_spec(metric)
    op = HARDWARE_METRICS[metric].constraint_op if metric in HARDWARE_METRICS else "<="
    value = bound * m.scale
    return f"{metric} {op or '<='} {value:.4g} {m.unit}".rstrip()


def _constraint_lines(df: pd.DataFrame, x: str, y: str,
                      constraints: Optional[Mapping[str, Union[float, Sequence[float]]]],
                      from_runs: bool) -> Dict[str, List[Tuple[float, str]]]:
    """Bounds to draw: ``{"x": [(value, label)], "y": [...]}``, values in raw units, labels
    the constraint's text."""
    pairs: List[Tuple[str, float]] = []
    for metric, bounds in (constraints or {}).items():
        metric_spec(metric)
        for b in (bounds if isinstance(bounds, (list, tuple)) else [bounds]):
            pairs.append((metric, float(b)))
    if from_runs:
        for col in df.columns:
            if col.startswith("bound_"):
                metric = col[len("bound_"):].split("_")[0]
                if metric in METRICS:
                    for b in pd.to_numeric(df[col], errors="coerce").dropna().unique():
                        pairs.append((metric, float(b)))
    lines: Dict[str, List[Tuple[float, str]]] = {"x": [], "y": []}
    for metric, b in pairs:
        for ax_key, axis in (("x", x), ("y", y)):
            v = _bound_on_axis(metric, b, axis)
            if v is not None and not any(math.isclose(v, u, rel_tol=1e-9) for u, _ in lines[ax_key]):
                lines[ax_key].append((v, _bound_text(metric, b)))
    return lines


# ---------------------------------------------------------------------------------------
# rendering and writing
# ---------------------------------------------------------------------------------------

def render_figure(fig, fmt: str) -> bytes:
    """Render a :class:`matplotlib.figure.Figure` into bytes (Agg canvas; no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120 if fmt == "png" else None)
    return buf.getvalue()


def save_figure(fig, paths: Sequence[PathLike]) -> List[Path]:
    """Write a figure atomically to each path, in the format its suffix names."""
    out = []
    for p in paths:
        p = Path(p)
        fmt = p.suffix.lstrip(".").lower()
        if not fmt:
            raise ConfigError(f"{p}: give the figure file a suffix (.png, .svg or .pdf)")
        atomic_write_bytes(p, render_figure(fig, fmt))
        out.append(p)
    return out


def _method_colors(methods: Sequence[str]) -> Dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _run_labels(df: pd.DataFrame) -> List[str]:
    if "name" in df.columns:
        names = [str(n) if isinstance(n, str) and n else "" for n in df["name"]]
    else:
        names = [""] * len(df)
    runs = [Path(str(r)).name for r in df["run"]] if "run" in df.columns else [""] * len(df)
    return [n or r or f"run {i}" for i, (n, r) in enumerate(zip(names, runs))]


def plot_pareto(df: pd.DataFrame, x: str = "latency", y: str = "error",
                lines: Optional[Mapping[str, Sequence[Any]]] = None, title: Optional[str] = None):
    """A figure of all runs and their front.

    Runs are coloured by method and labelled with their run name; a round marker means all
    constraints met, a cross violated, a square unknown; a hollow marker means the run's
    accuracy is at chance level.  Runs that found the identical design share one label
    that says so.  The front is a step line; constraint bounds (``{"x": [(value, label)],
    "y": [...]}`` in raw units) are dashed lines labelled with the constraint.

    Returns:
        A :class:`matplotlib.figure.Figure` (not registered with pyplot).
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    sx, sy = metric_spec(x), metric_spec(y)
    xv, yv = _values(df, x) * sx.scale, _values(df, y) * sy.scale
    methods = [str(m) for m in df["method"].fillna("?").astype(str).unique()] if "method" in df else ["?"]
    colors = _method_colors(methods)
    method_col = df["method"].fillna("?").astype(str).to_numpy() if "method" in df else np.full(len(df), "?")
    met_col = df["all_constraints_met"].to_numpy() if "all_constraints_met" in df else np.full(len(df), None)
    met_key = np.array([None if (m is None or (isinstance(m, float) and math.isnan(m))) else bool(m)
                        for m in met_col], dtype=object)
    chance = np.array([bool(c) is True and not (isinstance(c, float) and math.isnan(c))
                       for c in (df["chance_level"] if "chance_level" in df else [False] * len(df))])

    fig = Figure(figsize=(7.2, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    for m in methods:
        for status, marker in _MARKERS.items():
            for hollow in (False, True):
                sel = (method_col == m) & np.array([k is status for k in met_key], dtype=bool) & (chance == hollow)
                if not sel.any():
                    continue
                if hollow:
                    ax.scatter(xv[sel], yv[sel], facecolors="none", edgecolors=[colors[m]], marker=marker, s=44,
                               linewidths=1.2, zorder=3)
                else:
                    ax.scatter(xv[sel], yv[sel], c=[colors[m]], marker=marker, s=40, alpha=0.9,
                               edgecolors="none" if marker != "X" else None, zorder=3)
    # one label per design: runs that found the identical design are named together
    labels = _run_labels(df)
    groups: Dict[Any, List[int]] = {}
    design = df["design"].tolist() if "design" in df.columns else [None] * len(df)
    for i in range(len(df)):
        if not (np.isfinite(xv[i]) and np.isfinite(yv[i])):
            continue
        key = design[i] if isinstance(design[i], str) else ("pt", round(float(xv[i]), 12), round(float(yv[i]), 12), i)
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        i = members[0]
        text = " = ".join(labels[j] for j in members)
        if len(members) > 1:
            text += " (identical design)"
        if chance[i]:
            text += " [chance]"
        ax.annotate(text, (xv[i], yv[i]), xytext=(5, 4), textcoords="offset points", fontsize=7, zorder=4)
    mask = pareto_mask(_minimised(df, x), _minimised(df, y))
    if mask.any():
        fx, fy = xv[mask], yv[mask]
        o = np.lexsort((fy, fx))
        ax.step(fx[o], fy[o], where="post" if sx.minimize else "pre", color="black", lw=1.2, zorder=2,
                label="Pareto front")
    drawn = []
    for key, axis_vals in (lines or {}).items():
        for item in axis_vals:
            v, text = item if isinstance(item, tuple) else (item, "constraint")
            if key == "x":
                ax.axvline(v * sx.scale, color="crimson", ls="--", lw=1.0, zorder=1)
                ax.annotate(text, (v * sx.scale, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -10),
                            textcoords="offset points", color="crimson", fontsize=7, rotation=0)
            else:
                ax.axhline(v * sy.scale, color="crimson", ls="--", lw=1.0, zorder=1)
                ax.annotate(text, (1.0, v * sy.scale), xycoords=("axes fraction", "data"), xytext=(-3, 3),
                            textcoords="offset points", color="crimson", fontsize=7, ha="right")
            drawn.append(text)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color=colors[m], label=m) for m in methods]
    handles += [Line2D([], [], ls="", marker="o", color="gray", label="constraints met"),
                Line2D([], [], ls="", marker="X", color="gray", label="constraints violated")]
    if chance.any():
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", color="gray",
                              label="accuracy at chance level"))
    if mask.any():
        handles.append(Line2D([], [], color="black", lw=1.2, label="Pareto front"))
    if drawn:
        handles.append(Line2D([], [], color="crimson", ls="--", lw=1.0, label="constraint: " + "; ".join(drawn)))
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)
    n = len(df)
    ax.set_title(title or f"{sy.label} vs {sx.label} ({n} run{'s' if n != 1 else ''}, {int(mask.sum())} on the front)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def write_pareto(runs: Union[pd.DataFrame, PathLike, Iterable[PathLike]], out_dir: PathLike,
                 x: str = "latency", y: str = "error",
                 constraints: Optional[Mapping[str, Union[float, Sequence[float]]]] = None,
                 constraints_from_runs: bool = True, ref: Optional[Sequence[float]] = None,
                 name: str = "pareto", title: Optional[str] = None) -> Dict[str, Any]:
    """Write the front of two metrics as CSV, PNG and SVG, and score it by hypervolume.

    Args:
        runs: a table from :func:`load_runs`, or paths to give it.
        out_dir: folder for ``{name}_{x}_{y}.csv/.png/.svg`` (created if needed).
        x: metric on the horizontal axis.
        y: metric on the vertical axis.
        constraints: extra constraint bounds to draw, ``{metric: bound or [bounds]}`` in raw
            units (s, J, mm^2, fractions, frames/s); ``fps`` bounds are drawn on a latency
            axis as ``1/fps`` and ``accuracy`` bounds on an error axis as ``1 - accuracy``.
        constraints_from_runs: also draw the bounds recorded in the runs' result.json.
        ref: hypervolume reference point in the minimised raw units of ``(x, y)``
            (maximised metrics are negated); default: ``max + 0.1 |max|`` of each axis over
            all runs, i.e. 1.1 x the maximum for positive values.
        name: file name prefix.
        title: plot title.

    Returns:
        ``{"front": [row dicts], "hypervolume": float, "reference_point": [rx, ry],
        "axes": {"x": ..., "y": ...}, "n_runs": int, "paths": {"csv": Path, "png": Path,
        "svg": Path}}``.  The hypervolume is in the raw units of the two (minimised) axes.
    """
    df = runs if isinstance(runs, pd.DataFrame) else load_runs(runs)
    if len(df) == 0:
        raise ConfigError("no runs to plot")
    front = pareto_table(df, x, y)
    mx, my = _minimised(df, x), _minimised(df, y)
    missing = ~(np.isfinite(mx) & np.isfinite(my))
    dropped = [str(r) for r in df.loc[missing, "run"]] if "run" in df.columns else []
    if missing.any():
        why = {str(r): str(st) for r, st in zip(df.loc[missing, "run"], df.loc[missing, "status"])} \
            if "status" in df.columns and "run" in df.columns else {}
        logger.warning("Pareto front: %d run(s) have no finite %s/%s and are left out: %s", int(missing.sum()), x, y,
                       ", ".join(f"{r} ({why.get(r, 'NaN')})" for r in dropped) or "(unnamed)")
    if ref is None:
        ref = (default_reference(mx), default_reference(my))
    ref = (float(ref[0]), float(ref[1]))
    hv = hypervolume_2d(np.stack([mx, my], axis=1), ref)
    out = Path(out_dir)
    stem = f"{name}_{x}_{y}"
    paths = {"csv": out / f"{stem}.csv", "png": out / f"{stem}.png", "svg": out / f"{stem}.svg"}
    atomic_write_text(paths["csv"], front.to_csv(index=False))
    lines = _constraint_lines(df, x, y, constraints, constraints_from_runs)
    fig = plot_pareto(df, x, y, lines=lines, title=title)
    save_figure(fig, [paths["png"], paths["svg"]])
    logger.info("Pareto front of %d runs: %d points, hypervolume %.6g; wrote %s", len(df), len(front), hv,
                ", ".join(str(p) for p in paths.values()))
    records = json.loads(front.to_json(orient="records"))
    return {"front": records, "hypervolume": hv, "reference_point": list(ref),
            "axes": {"x": x, "y": y}, "n_runs": int(len(df)), "dropped": dropped, "paths": paths}
