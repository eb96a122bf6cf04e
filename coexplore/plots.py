"""Plots of a search run and of an accelerator.

:func:`plot_trajectories` draws what a co-exploration run logged per epoch in its
``metrics.csv``: the surrogate's cost estimate next to the analytical cost of the current
argmax architecture (DANCE, Choi et al., DAC 2021, trains on the first and reports the
second), validation accuracy, the entropy of the architecture distribution and, for HDX
(Hong et al., DAC 2022), each constraint's ``g = metric - bound`` with the feasibility
line ``g = 0``.

:func:`plot_accelerator` draws one accelerator: its PE array, per-layer latency and energy
from the analytical model (memory-bound layers highlighted) and the network's energy split
over the levels of the memory hierarchy (``explain(...).energy_pj``).

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
pyplot's global state, and written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from accelerators import Accelerator, Layer, evaluate, explain
from accelerators.dataflows import get_dataflow
from .common import ConfigError, PathLike

from .pareto import save_figure

logger = logging.getLogger(__name__)

ENERGY_LEVELS = ("mac", "rf", "noc", "glb", "dram", "static")
_LEVEL_COLORS = {"mac": "#4c72b0", "rf": "#55a868", "noc": "#8172b2", "glb": "#ccb974", "dram": "#c44e52",
                 "static": "#8c8c8c"}


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} logged", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _series(df: pd.DataFrame, col: str) -> Optional[np.ndarray]:
    """A numeric column, or None when absent or all missing."""
    if col not in df.columns:
        return None
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    return v if np.isfinite(v).any() else None


def _g_unit(name: str):
    """Display scale, unit and sign rule of a constraint's g, from the constraint name."""
    for prefix, scale, unit in (("latency", 1e3, "ms"), ("energy", 1e3, "mJ"), ("area", 1.0, "mm^2"),
                                ("fps", 1.0, "fps")):
        if name.startswith(prefix):
            rule = "g = bound - metric" if prefix == "fps" else "g = metric - bound"
            return scale, unit, rule
    return 1.0, "", "g"


def _plot_lines(ax, df: pd.DataFrame, epoch: np.ndarray, cols: Sequence[str], labels: Sequence[str], scale: float,
                ylabel: str, what: str, log: bool = False) -> bool:
    drawn = False
    for col, label, style in zip(cols, labels, ("-o", "--s", ":^", "-.v")):
        v = _series(df, col)
        if v is not None:
            ax.plot(epoch, v * scale, style, ms=3, lw=1.2, label=label)
            drawn = True
    if drawn:
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
        if log:
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
    else:
        _no_data(ax, what)
    return drawn


def _run_title(run_dir: Path, df: pd.DataFrame) -> str:
    """What run and what budget a plot shows, from the run's config.yaml when present."""
    from .runfolder import CONFIG_FILE
    try:
        from .config import load_config
        cfg = load_config(run_dir / CONFIG_FILE)
    except Exception:  # noqa: BLE001 - a plot of a foreign folder still gets a title
        return f"run {run_dir.name}: {len(df)} epochs logged"
    space = cfg.search_space if isinstance(cfg.search_space, str) else getattr(cfg.search_space, "name", "custom")
    cons = "; ".join(cfg.constraints.to_list()) or "no constraints"
    steps = f", {cfg.steps_per_epoch} steps/epoch" if cfg.steps_per_epoch else ""
    limit = f", {cfg.data.limit} images/split" if cfg.data.limit else ""
    return (f"run {cfg.name} ({cfg.method}, lambda {cfg.lam:g}, {cons}) on {space}\n"
            f"budget: {cfg.warmup_epochs} warm-up + {cfg.search_epochs} search epochs{steps}, {cfg.data.name}{limit}; "
            f"{len(df)} epochs logged")


def plot_trajectories(run_dir: PathLike, out_dir: Optional[PathLike] = None) -> List[Path]:
    """Plot a run's per-epoch log into ``plots/trajectory.png`` and ``.svg``.

    Panels (no twin axes): latency, energy and area (the surrogate's estimate next to the
    analytical cost of the current argmax architecture), EDAP (log scale); the derived
    network's validation accuracy (inherited weights, BatchNorm recalibrated; the
    supernet's own when logged), the loss terms, the architecture entropy (on an axis from
    0, with the Gumbel temperature in the legend) and every constraint's ``g`` with the
    ``g = 0`` line (``g = metric - bound`` for ``<=``, ``g = bound - metric`` for ``>=``;
    ``g <= 0`` is feasible).  Epoch ticks are integers.  Missing columns leave a labelled
    empty panel.  The title says which run and what budget.

    Args:
        run_dir: the run folder, holding ``metrics.csv``.
        out_dir: where to write; default ``run_dir / "plots"``.

    Returns:
        The paths written (PNG, SVG).

    Raises:
        ConfigError: ``metrics.csv`` is missing or unreadable.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    csv = run_dir / "metrics.csv"
    if not csv.is_file():
        raise ConfigError(f"{csv}: no such file (is {run_dir} a run folder?)")
    try:
        df = pd.read_csv(csv)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{csv}: malformed CSV: {exc}") from None
    epoch = _series(df, "epoch")
    epoch = np.arange(len(df), dtype=np.float64) + 1 if epoch is None else epoch + 1  # epochs count from 1

    fig = Figure(figsize=(15, 7.2))
    axes = fig.subplots(2, 4)
    both = ("surrogate", "argmax (analytical)")
    _plot_lines(axes[0, 0], df, epoch, ("surrogate_latency_s", "argmax_latency_s"), both, 1e3, "latency (ms)", "latency")
    axes[0, 0].set_title("latency")
    _plot_lines(axes[0, 1], df, epoch, ("surrogate_energy_j", "argmax_energy_j"), both, 1e3, "energy (mJ)", "energy")
    axes[0, 1].set_title("energy")
    _plot_lines(axes[0, 2], df, epoch, ("surrogate_area_mm2", "argmax_area_mm2"), both, 1.0, "area (mm^2)", "area")
    axes[0, 2].set_title("area")
    _plot_lines(axes[0, 3], df, epoch, ("argmax_edap",), ("argmax (analytical)",), 1.0, "EDAP (J·s·mm^2)", "EDAP",
                log=True)
    axes[0, 3].set_title("EDAP")

    ax = axes[1, 0]
    acc_cols = [c for c in ("val_acc", "val_acc_supernet") if _series(df, c) is not None]
    if acc_cols:
        labels = {"val_acc": "derived network (inherited weights, BN recalibrated)",
                  "val_acc_supernet": "supernet (the trained mixture)"}
        _plot_lines(ax, df, epoch, acc_cols, [labels[c] for c in acc_cols], 100.0, "validation accuracy (%)",
                    "validation accuracy")
    else:
        _no_data(ax, "validation accuracy")
    ax.set_title("accuracy")
    _plot_lines(axes[1, 1], df, epoch, ("loss", "ce", "cost_loss", "train_loss"),
                ("architecture loss", "architecture CE", "hardware cost (normalised)", "weight-step loss"), 1.0,
                "loss", "loss")
    axes[1, 1].set_title("loss terms")

    ax = axes[1, 2]
    ent = _series(df, "entropy")
    if ent is not None:
        tau = _series(df, "tau")
        label = "entropy" + (f" (tau {tau[0]:.3g} -> {tau[-1]:.3g})" if tau is not None else "")
        ax.plot(epoch, ent, "-o", ms=3, color="tab:purple", label=label)
        ax.set_ylim(0.0, max(float(np.nanmax(ent)) * 1.1, 1e-3))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_ylabel("mean entropy per block (nats)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    else:
        _no_data(ax, "entropy")
    ax.set_title("architecture entropy")

    ax = axes[1, 3]
    g = [(c[2:], v) for c, v in ((c, _series(df, c)) for c in df.columns if c.startswith("g_")) if v is not None]
    if g:
        # Constraints on different metrics have different units: with several, each g is
        # divided by its largest magnitude, which keeps the sign (what feasibility is about).
        for name, v in g:
            scale, unit, rule = _g_unit(name)
            if len(g) == 1:
                ax.plot(epoch, v * scale, "-o", ms=3, lw=1.2, label=name)
                ax.set_ylabel(f"{rule}{f' ({unit})' if unit else ''}")
            else:
                peak = float(np.nanmax(np.abs(v))) or 1.0
                ax.plot(epoch, v / peak, "-o", ms=3, lw=1.2, label=f"{name}: {rule} (max |g| {peak * scale:.3g} {unit})")
                ax.set_ylabel("g / max |g|")
        ax.axhline(0.0, color="crimson", ls="--", lw=1.0, label="g = 0 (feasible below)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    else:
        _no_data(ax, "constraint")
    ax.set_title("constraints (g <= 0 is feasible)")

    for a in axes.ravel():
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    for a in axes[1]:
        a.set_xlabel("epoch")
    fig.suptitle(_run_title(run_dir, df), fontsize=10)
    # fixed margins: tight_layout would lay out all eight panels once more
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.08, top=0.87, wspace=0.38, hspace=0.32)
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    paths = save_figure(fig, [out / "trajectory.png", out / "trajectory.svg"])
    logger.debug("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def energy_breakdown_pj(accelerator: Accelerator, layers: Sequence[Layer], objective: str = "edp") -> Dict[str, float]:
    """The network's energy per hierarchy level, pJ: sums of ``explain(layer, acc).energy_pj``.

    Identical layer shapes are explained once (the analytical model is deterministic).
    """
    cache: Dict[Layer, Dict[str, float]] = {}
    total = {k: 0.0 for k in ENERGY_LEVELS}
    for layer in layers:
        if layer not in cache:
            cache[layer] = explain(layer, accelerator, mapping_objective=objective).energy_pj
        for k, v in cache[layer].items():
            total[k] = total.get(k, 0.0) + float(v)
    return total


def plot_accelerator(accelerator: Accelerator, layers: Sequence[Layer], out_path: PathLike,
                     formats: Optional[Sequence[str]] = None, objective: str = "edp",
                     title: Optional[str] = None) -> List[Path]:
    """Draw an accelerator and what a network costs on it.

    Panels: (a) the ``pe_y x pe_x`` PE array with the dataflow and RF/GLB sizes in the
    title; (b) per-layer latency and (c) per-layer energy from
    ``accelerators.evaluate(layers, [accelerator])``, memory-bound layers hatched in red;
    (d) the network's energy per level (mac/rf/noc/glb/dram/static) as a stacked bar.

    Args:
        accelerator: the accelerator.
        layers: the workload, ``L`` layers.
        out_path: the figure file; its suffix gives the format.
        formats: write these formats instead, e.g. ``("png", "svg")``, next to ``out_path``
            (same stem).
        objective: mapping objective passed to the cost model.
        title: figure title; default the accelerator's name and short description.

    Returns:
        The paths written.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    if len(layers) == 0:
        raise ConfigError("plot_accelerator: the layer list is empty")
    acc = accelerator
    costs = evaluate(layers, [acc], mapping_objective=objective)
    lat_ms = costs.latency_s[0] * 1e3
    en_uj = costs.energy_j[0] * 1e6  # the same unit as the stacked breakdown
    mem = costs.memory_bound[0]
    breakdown = energy_breakdown_pj(acc, layers, objective=objective)

    fig = Figure(figsize=(13, 7.5))
    # Fixed margins instead of tight_layout: laying out ~50 rotated tick labels twice
    # would double the rendering time.
    gs = fig.add_gridspec(2, 3, width_ratios=[1.0, 2.2, 0.6], left=0.04, right=0.98, top=0.9, bottom=0.2,
                          wspace=0.28, hspace=0.12)
    ax_pe = fig.add_subplot(gs[:, 0])
    ax_lat = fig.add_subplot(gs[0, 1])
    ax_en = fig.add_subplot(gs[1, 1], sharex=ax_lat)
    ax_bd = fig.add_subplot(gs[:, 2])

    # (a) PE array: one square per PE, one collection (fast even for 32 x 32)
    rects = [Rectangle((i + 0.08, j + 0.08), 0.84, 0.84) for j in range(acc.pe_y) for i in range(acc.pe_x)]
    ax_pe.add_collection(PatchCollection(rects, facecolor="#4c72b0", edgecolor="none", alpha=0.85))
    ax_pe.set_xlim(-0.2, acc.pe_x + 0.2)
    ax_pe.set_ylim(acc.pe_y + 0.2, -0.2)
    ax_pe.set_aspect("equal")
    ax_pe.set_xlabel(f"pe_x = {acc.pe_x} columns")
    ax_pe.set_ylabel(f"pe_y = {acc.pe_y} rows")
    ax_pe.set_xticks([])
    ax_pe.set_yticks([])
    glb = f"{acc.glb_bytes / 1024:.0f} KB" if acc.glb_bytes >= 1024 else f"{acc.glb_bytes} B"
    ax_pe.set_title(f"{acc.array_text()}, {get_dataflow(acc.dataflow).long_name} ({acc.dataflow})\n"
                    f"RF {acc.rf_bytes} B/PE, GLB {glb}, {acc.word_bits}-bit, {acc.clock_hz / 1e6:.0f} MHz",
                    fontsize=9)

    # (b), (c) per-layer bars, memory-bound layers highlighted
    idx = np.arange(len(layers))
    names = [l.name or f"{l.kind}{i}" for i, l in enumerate(layers)]
    for ax, vals, ylabel in ((ax_lat, lat_ms, "latency (ms)"), (ax_en, en_uj, "energy (uJ)")):
        # one colour scheme in both panels: compute-bound blue, memory-bound red and hatched
        bars = ax.bar(idx, vals, color=["#c44e52" if m else "#4c72b0" for m in mem],
                      edgecolor=["black" if m else "none" for m in mem], linewidth=0.5)
        for bar, m in zip(bars, mem):
            if m:  # hatching keeps memory-bound layers visible in greyscale print too
                bar.set_hatch("//")
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
    ax_lat.set_title(f"per layer: total {lat_ms.sum():.3f} ms, {en_uj.sum():.4g} uJ, "
                     f"{int(mem.sum())}/{len(layers)} layers memory-bound", fontsize=9)
    ax_lat.legend(handles=[Patch(color="#4c72b0", label="compute-bound"),
                           Patch(facecolor="#c44e52", edgecolor="black", hatch="//", label="memory-bound")],
                  fontsize=7, loc="upper right")
    step = max(1, -(-len(layers) // 30))
    ax_en.set_xticks(idx[::step])
    ax_en.set_xticklabels(names[::step], rotation=90, fontsize=6)
    ax_lat.tick_params(labelbottom=False)

    # (d) stacked energy breakdown for the whole network
    bottom = 0.0
    total_uj = sum(breakdown.values()) / 1e6
    for level in ENERGY_LEVELS:
        v = breakdown.get(level, 0.0) / 1e6  # uJ
        ax_bd.bar(0, v, bottom=bottom, color=_LEVEL_COLORS[level], width=0.6,
                  label=f"{level} {100 * v / total_uj:.0f}%" if total_uj > 0 else level)
        bottom += v
    ax_bd.set_xticks([0])
    ax_bd.set_xticklabels(["network"])
    ax_bd.set_ylabel("energy (uJ)")
    ax_bd.set_xlim(-0.6, 0.6)
    ax_bd.set_title("energy by level", fontsize=9)
    handles, labels = ax_bd.get_legend_handles_labels()
    ax_bd.legend(handles[::-1], labels[::-1], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.04))

    fig.suptitle(title or f"{acc.name or 'accelerator'}: {acc.short()}, area {float(costs.area_mm2[0]):.2f} mm^2",
                 fontsize=11)
    out_path = Path(out_path)
    targets = [out_path] if not formats else [out_path.with_suffix(f".{f.lstrip('.')}") for f in formats]
    paths = save_figure(fig, targets)
    logger.debug("wrote %s", ", ".join(str(p) for p in paths))
    return paths
