"""``coexplore validate``: how well the analytical model agrees with another cost source (ZigZag).

Every figure of a co-exploration rests on the analytical model's ranking of designs, so the
question this module answers is a ranking question: for each layer, do the two models order
the accelerators the same way?  It prices a seeded sample of (layer, accelerator) pairs with
both sources and reports, per metric (latency, energy and DRAM traffic):

* the Spearman rank correlation across accelerators, per layer (median and worst);
* the ratio ours / reference per pair (median, 10th and 90th percentiles);
* the worst disagreements (largest ``|log ratio|``) with both models' energy breakdowns;

and, where the reference reports its energy per level (ZigZag), the same for the on-chip energy
(everything but the DRAM accesses), which separates the array- and buffer-level structure of
the two models from their DRAM-level mappings;

and writes a CSV of every pair, a JSON report and a log-log scatter plot (ours against the
reference, one colour per dataflow).  Both sources use the same technology constants (by
default the ``zigzag`` preset, ZigZag's own per-access energies), so what remains is the
structure of the two models, not their constants.

The ``validate`` command's parser lives here and is added to the CLI through
``coexplore.cli._command_hooks``; the CLI module stays the one place that runs commands.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from accelerators import Accelerator, AnalyticalModel, Layer, get_cost_source, get_dataflow
from accelerators.cost_model import layer_shape
from accelerators.technology import get_technology, list_technologies, technology_name

from .common import ConfigError, PathLike, atomic_write_text, write_json

logger = logging.getLogger(__name__)

METRICS = ("latency", "energy", "dram", "onchip")
_UNITS = {"latency": ("latency_s", 1e3, "ms"), "energy": ("energy_j", 1e6, "uJ"), "dram": ("dram_bytes", 1e-6, "MB"),
          "onchip": ("energy_j", 1e6, "uJ")}


# ---------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------

def unique_layers(layers: Sequence[Layer]) -> List[Layer]:
    """The layers of distinct shape (as the model prices them), in order of first appearance."""
    seen, out = set(), []
    for l in layers:
        key = tuple(sorted(layer_shape(l).items()))
        if key not in seen:
            seen.add(key)
            out.append(l)
    return out


def sample_pairs(layers: Sequence[Layer], accelerators: Sequence[Accelerator], n_acc: int, n_layers: Optional[int],
                 seed: int) -> Tuple[List[Layer], List[Accelerator]]:
    """A seeded sample: ``n_acc`` accelerators and ``n_layers`` distinct layers, drawn without replacement.

    Every sampled layer is priced on every sampled accelerator (a grid), so each layer has a
    full set of accelerators to rank.
    """
    if n_acc < 2:
        raise ConfigError(f"--sample must be at least 2 accelerators (a ranking needs two), got {n_acc}")
    rng = np.random.default_rng(seed)
    accs = list(accelerators)
    if n_acc > len(accs):
        raise ConfigError(f"--sample {n_acc}: the space has only {len(accs)} accelerators")
    pick = np.sort(rng.choice(len(accs), size=n_acc, replace=False))
    uniq = unique_layers(layers)
    if n_layers is None or n_layers >= len(uniq):
        lay = uniq
    else:
        if n_layers < 1:
            raise ConfigError(f"--layers must be at least 1, got {n_layers}")
        lay = [uniq[i] for i in np.sort(rng.choice(len(uniq), size=n_layers, replace=False))]
    return lay, [accs[i] for i in pick]


# ---------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------

def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass
class MetricSummary:
    """Agreement on one metric."""

    metric: str
    spearman_by_layer: Dict[str, float]  # layer label -> rank correlation across accelerators
    spearman_median: float
    spearman_worst: float
    worst_layer: str
    ratio_median: float  # ours / reference
    ratio_p10: float
    ratio_p90: float
    worst: List[Dict[str, Any]] = field(default_factory=list)  # the largest |log ratio| pairs

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def _summarise(metric: str, ours: np.ndarray, ref: np.ndarray, labels: List[str]) -> MetricSummary:
    """``ours``/``ref``: ``[A, L]``; Spearman along A per layer, ratios over all pairs."""
    rho = {lab: spearman(ours[:, j], ref[:, j]) for j, lab in enumerate(labels)}
    finite = {k: v for k, v in rho.items() if math.isfinite(v)}
    ratio = (ours / ref).reshape(-1)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    if finite:
        worst_layer = min(finite, key=finite.get)
        med, worst = float(np.median(list(finite.values()))), finite[worst_layer]
    else:
        worst_layer, med, worst = "", float("nan"), float("nan")
    q = np.percentile(ratio, [10, 50, 90]) if ratio.size else [float("nan")] * 3
    return MetricSummary(metric, rho, med, worst, worst_layer, float(q[1]), float(q[0]), float(q[2]))


# ---------------------------------------------------------------------------------------
# the validation
# ---------------------------------------------------------------------------------------

@dataclass
class Validation:
    """Both models on a grid of (accelerator, layer) pairs, and the agreement per metric."""

    layers: List[Layer]
    accelerators: List[Accelerator]
    ours: Dict[str, np.ndarray]  # metric -> [A, L]
    ref: Dict[str, np.ndarray]  # metric -> [A, L] (missing metrics absent)
    summaries: Dict[str, MetricSummary]
    ours_source: Dict[str, Any]  # describe() of the analytical model
    ref_source: Dict[str, Any]  # describe() of the reference
    ref_records: Optional[List[List[Dict[str, Any]]]] = None  # [A][L] ZigZag's per-pair records

    def labels(self) -> List[str]:
        return _labels(self.layers)

    def rows(self) -> List[Dict[str, Any]]:
        """One row per pair: the accelerator, the layer, both models' metrics and their ratios."""
        out = []
        for i, a in enumerate(self.accelerators):
            for j, (l, lab) in enumerate(zip(self.layers, self.labels())):
                row: Dict[str, Any] = {"layer": lab, "kind": l.kind, "macs": l.macs, "dataflow": a.dataflow,
                                       "pe_x": a.pe_x, "pe_y": a.pe_y, "rf_bytes": a.rf_bytes,
                                       "glb_bytes": a.glb_bytes, "dram_bw": a.dram_bw, "word_bits": a.word_bits}
                for m in METRICS:
                    if m in self.ref:
                        o, r = float(self.ours[m][i, j]), float(self.ref[m][i, j])
                        row[f"{m}_ours"], row[f"{m}_ref"] = o, r
                        row[f"{m}_ratio"] = o / r if r > 0 else float("nan")
                out.append(row)
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {"ours": self.ours_source, "reference": self.ref_source,
                "pairs": len(self.layers) * len(self.accelerators), "layers": self.labels(),
                "accelerators": len(self.accelerators),
                "dataflows": sorted({a.dataflow for a in self.accelerators}),
                "metrics": {m: s.to_dict() for m, s in self.summaries.items()}}


def _labels(layers: Sequence[Layer]) -> List[str]:
    out, used = [], {}
    for i, l in enumerate(layers):
        base = l.name or f"layer{i}"
        n = used.get(base, 0)
        used[base] = n + 1
        out.append(base if n == 0 else f"{base}#{n}")
    return out


def _ours_breakdown(model: AnalyticalModel, layer: Layer, acc: Accelerator) -> Dict[str, float]:
    ex = model.explain(layer, acc)
    return {k: v * 1e-6 for k, v in ex.energy_pj.items()}  # uJ


def _ref_breakdown(rec: Optional[Dict[str, Any]]) -> Dict[str, float]:
    if not rec:
        return {}
    out = {"mac": rec["mac_pj"] * 1e-6}
    out.update({k: v * 1e-6 for k, v in rec["energy_pj_by_level"].items()})
    return out


def validate(layers: Sequence[Layer], accelerators: Sequence[Accelerator], against: str = "zigzag",
             tech: Any = "zigzag", mapping_objective: str = "edp", worst: int = 10,
             reference: Any = None, **reference_options: Any) -> Validation:
    """Price every (accelerator, layer) pair with the analytical model and with ``against``.

    Args:
        layers: ``L`` layers (each is ranked across the accelerators).
        accelerators: ``A`` accelerators (at least 2).
        against: the registered cost source to compare with (``zigzag``).
        tech: technology preset or :class:`~accelerators.technology.Technology`, used by both.
        mapping_objective: what both mapping searches minimise.
        worst: how many of the largest disagreements to keep per metric.
        reference: an already built cost source to use instead of ``against`` (tests, benchmarks).
        **reference_options: passed to the reference's factory (``workers``, ``executor``, ``cache_dir``, ``progress``).
    """
    layers, accs = list(layers), list(accelerators)
    if len(accs) < 2:
        raise ConfigError("validate: at least 2 accelerators are needed to compare rankings")
    if not layers:
        raise ConfigError("validate: the layer list is empty")
    tech = get_technology(tech)
    model = AnalyticalModel(tech, mapping_objective)
    ref_src = reference if reference is not None else get_cost_source(
        against, mapping_objective=mapping_objective, tech=tech, **reference_options)
    c = model.evaluate(layers, accs)
    ours = {"latency": c.latency_s, "energy": c.energy_j, "dram": c.dram_bytes}
    records = None
    if hasattr(ref_src, "pairs") and hasattr(ref_src, "costs"):  # ZigZag: per-pair records with breakdowns
        A, L = len(accs), len(layers)
        res = ref_src.pairs([(l, a) for a in accs for l in layers])
        records = [[res[i * L + j].record for j in range(L)] for i in range(A)]
        rc = ref_src.costs(layers, accs, res)
    else:
        rc = ref_src.evaluate(layers, accs)
    ref = {"latency": rc.latency_s, "energy": rc.energy_j}
    if records is not None or np.any(rc.dram_bytes > 0):
        ref["dram"] = rc.dram_bytes
    if records is not None:  # on-chip energy: all but the DRAM accesses
        wb = np.array([a.word_bits for a in accs], dtype=np.float64)[:, None]
        e_dram = np.array([float(tech.e_dram(a.word_bits)) for a in accs])[:, None]
        ours["onchip"] = c.energy_j - c.dram_bytes / (wb / 8.0) * e_dram * 1e-12
        ref["onchip"] = rc.energy_j - np.array([[r["energy_pj_by_level"].get("dram", 0.0) for r in row]
                                                for row in records]) * 1e-12
    labels = _labels(layers)
    summaries = {}
    for m in METRICS:
        if m not in ref:
            continue
        s = _summarise(m, ours[m], ref[m], labels)
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = np.abs(np.log(ours[m] / ref[m]))
        dev = np.where(np.isfinite(dev), dev, -1.0)
        for flat in np.argsort(-dev, axis=None, kind="stable")[:worst]:
            i, j = np.unravel_index(flat, dev.shape)
            a, l = accs[i], layers[j]
            scale, unit = _UNITS[m][1], _UNITS[m][2]
            s.worst.append({
                "layer": labels[j], "accelerator": f"{a.short()} DRAM{a.dram_bw:g}B/c", "dataflow": a.dataflow,
                f"ours_{unit}": float(ours[m][i, j] * scale), f"ref_{unit}": float(ref[m][i, j] * scale),
                "ratio": float(ours[m][i, j] / ref[m][i, j]),
                "ours_energy_uJ": _ours_breakdown(model, l, a),
                "ref_energy_uJ": _ref_breakdown(records[i][j] if records else None),
                "ref_mapping": (records[i][j]["temporal"] if records else ""),
            })
        summaries[m] = s
    return Validation(layers, accs, ours, ref, summaries, model.describe(), ref_src.describe(), records)


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------

def summary_rows(v: Validation) -> List[Dict[str, Any]]:
    """One row per metric: Spearman median / worst (and where), ratio median and spread."""
    rows = []
    for m, s in v.summaries.items():
        rows.append({"metric": m, "spearman_median": round(s.spearman_median, 3),
                     "spearman_worst": round(s.spearman_worst, 3), "worst_layer": s.worst_layer,
                     "ratio_median": round(s.ratio_median, 3), "ratio_p10": round(s.ratio_p10, 3),
                     "ratio_p90": round(s.ratio_p90, 3)})
    return rows


def _fmt_breakdown(d: Dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3g}" for k, v in d.items() if v) or "-"


def format_report(v: Validation, title: str = "") -> str:
    """The report as plain text (fits 100 columns except the breakdown lines)."""
    src = v.ref_source
    lines = [title or f"analytical model vs {src['name']}",
             f"  ours: {v.ours_source['name']} {v.ours_source['version']} ({technology_name(get_technology(v.ours_source['technology']))} technology, "
             f"mapping objective {v.ours_source['mapping_objective']})",
             f"  reference: {src['name']} {src.get('version', '')}",
             f"  {len(v.layers)} layers x {len(v.accelerators)} accelerators = {len(v.layers) * len(v.accelerators)} "
             f"pairs; dataflows {', '.join(sorted({a.dataflow for a in v.accelerators}))}",
             "", "Spearman rank correlation across accelerators, per layer; ratio = ours / reference",
             f"{'metric':<9}{'rho median':>11}{'rho worst':>11}  {'(layer)':<24}{'ratio median':>13}{'p10..p90':>16}"]
    for m, s in v.summaries.items():
        lines.append(f"{m:<9}{s.spearman_median:>11.3f}{s.spearman_worst:>11.3f}  {s.worst_layer[:24]:<24}"
                     f"{s.ratio_median:>13.3f}{f'{s.ratio_p10:.2f}..{s.ratio_p90:.2f}':>16}")
    lines.append("")
    lines.append("per layer rho (" + ", ".join(v.summaries) + "):")
    for lab in v.labels():
        lines.append(f"  {lab[:40]:<40}" + "".join(f"{v.summaries[m].spearman_by_layer[lab]:>8.3f}" for m in v.summaries))
    for m, s in v.summaries.items():
        unit = _UNITS[m][2]
        lines += ["", f"largest {m} disagreements (energy breakdowns in uJ: ours | reference)"]
        for w in s.worst:
            lines.append(f"  {w['layer'][:22]:<22} {w['accelerator']:<38} ours {w[f'ours_{unit}']:.4g} {unit}, "
                         f"ref {w[f'ref_{unit}']:.4g} {unit}, ratio {w['ratio']:.3f}")
            lines.append(f"      ours: {_fmt_breakdown(w['ours_energy_uJ'])} | ref: {_fmt_breakdown(w['ref_energy_uJ'])}")
    return "\n".join(lines)


def scatter_figure(v: Validation):
    """A log-log scatter of ours against the reference per metric, one colour per dataflow."""
    from matplotlib.figure import Figure

    ms = list(v.summaries)
    fig = Figure(figsize=(4.2 * len(ms), 4.2))
    dfs = sorted({a.dataflow for a in v.accelerators})
    colors = {"ws": "#4c72b0", "os": "#dd8452", "rs": "#55a868"}
    palette = ["#8172b2", "#c44e52", "#937860", "#da8bc3"]
    for k, m in enumerate(ms):
        ax = fig.add_subplot(1, len(ms), k + 1)
        key, scale, unit = _UNITS[m]
        lo, hi = np.inf, 0.0
        for n, df in enumerate(dfs):
            idx = [i for i, a in enumerate(v.accelerators) if a.dataflow == df]
            x = v.ref[m][idx].reshape(-1) * scale
            y = v.ours[m][idx].reshape(-1) * scale
            ok = (x > 0) & (y > 0)
            ax.scatter(x[ok], y[ok], s=9, alpha=0.6, color=colors.get(df, palette[n % len(palette)]),
                       label=f"{df} ({get_dataflow(df).long_name})")
            if ok.any():
                lo, hi = min(lo, x[ok].min(), y[ok].min()), max(hi, x[ok].max(), y[ok].max())
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls="--", label="ours = reference")
        ax.set_xscale("log")
        ax.set_yscale("log")
        s = v.summaries[m]
        ax.set_title(f"{m}: rho median {s.spearman_median:.2f}, ratio {s.ratio_median:.2f}", fontsize=9)
        ax.set_xlabel(f"{v.ref_source['name']} ({unit})")
        ax.set_ylabel(f"analytical model ({unit})")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"analytical model vs {v.ref_source['name']}: {len(v.layers)} layers x {len(v.accelerators)} "
                 f"accelerators", fontsize=10)
    fig.tight_layout()
    return fig


def write_outputs(v: Validation, out_dir: PathLike, stem: str = "validate") -> Dict[str, Path]:
    """Write ``<stem>.csv`` (every pair), ``<stem>.json`` (the report), ``<stem>.txt`` and ``<stem>.png``."""
    import pandas as pd

    from .pareto import save_figure

    out = Path(out_dir)
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json", "txt": out / f"{stem}.txt",
             "png": out / f"{stem}.png"}
    atomic_write_text(paths["csv"], pd.DataFrame(v.rows()).to_csv(index=False))
    write_json(paths["json"], _jsonable(v.to_dict()))
    atomic_write_text(paths["txt"], format_report(v) + "\n")
    save_figure(scatter_figure(v), [paths["png"]])
    return paths


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if math.isfinite(float(o)) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


# ---------------------------------------------------------------------------------------
# the command (parser added to the CLI by coexplore.cli._command_hooks)
# ---------------------------------------------------------------------------------------

def add_parser(sub: Any, command: Any) -> None:
    """Add ``coexplore validate``: ``command(name, **kw)`` makes a subparser with the global options."""
    from accelerators import MAPPING_OBJECTIVES

    from .cli import int_at_least, seed_int

    v = command("validate", help="compare the analytical model with ZigZag: rank correlation, ratios, worst pairs",
                description="Price a seeded sample of (layer, accelerator) pairs with the analytical model and with "
                            "another cost source, using the same technology constants, and report per metric the "
                            "Spearman rank correlation across accelerators per layer (median and worst), the median "
                            "ratio and its spread, and the largest disagreements with both energy breakdowns. "
                            "Writes CSV, JSON, text and a log-log scatter plot into --out.")
    v.add_argument("--against", default="zigzag", help="the cost source to compare with (default: zigzag)")
    v.add_argument("--workload", "-w", required=True, help="built-in network name or a workload YAML file")
    v.add_argument("--space", "-s", default="default", help="hardware space name or YAML (default: default)")
    v.add_argument("--sample", type=int_at_least(2), default=12,
                   help="accelerators drawn from the space without replacement (default: 12)")
    v.add_argument("--layers", type=int_at_least(1), default=6,
                   help="distinct layers drawn from the workload (default: 6); every layer runs on every accelerator")
    v.add_argument("--seed", type=seed_int, default=0, help="seed of the sample (default: 0)")
    v.add_argument("--tech", default="zigzag", choices=list_technologies(),
                   help="technology constants of both models (default: zigzag, ZigZag's per-access energies)")
    v.add_argument("--mapping-objective", default="edp", choices=[m for m in MAPPING_OBJECTIVES if m != "dram"],
                   help="what both mapping searches minimise (default: edp)")
    v.add_argument("--batch", type=int_at_least(1), default=1, help="batch size N (default: 1)")
    v.add_argument("--workers", "-j", type=int_at_least(1), default=None,
                   help="processes for the reference's missing pairs (default: all cores); with --executor ray: "
                        "its tasks in flight (default: the cluster's CPUs)")
    v.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="where the reference's missing pairs run: local processes (default) or one Ray task each "
                        "(the ray extra; $RAY_ADDRESS names a cluster, else a local Ray)")
    v.add_argument("--worst", type=int_at_least(0), default=10, help="largest disagreements to list (default: 10)")
    v.add_argument("--out", "-o", default=None, help="folder for CSV/JSON/text/plot (default: validate-<against>-<workload>)")
    v.set_defaults(func=cmd_validate)


def cmd_validate(args: Any) -> int:
    """Run ``coexplore validate`` (see :func:`add_parser`)."""
    import sys

    from accelerators import get_hardware_space, get_workload, list_cost_sources

    if args.against == "analytical" or args.against not in list_cost_sources():
        raise ConfigError(f"--against {args.against!r}: allowed values: "
                          f"{[n for n in list_cost_sources() if n != 'analytical']}")
    layers = get_workload(args.workload, batch=args.batch)
    space = get_hardware_space(args.space)
    lay, accs = sample_pairs(layers, space.enumerate(), args.sample, args.layers, args.seed)
    opts = {"cache_dir": args.cache_dir, "progress": not args.quiet}
    if args.workers is not None:
        opts["workers"] = args.workers
    if args.executor != "local":
        opts["executor"] = args.executor
    v = validate(lay, accs, against=args.against, tech=args.tech, mapping_objective=args.mapping_objective,
                 worst=args.worst, **opts)
    stem = Path(args.workload).stem if Path(args.workload).suffix else args.workload
    out = Path(args.out) if args.out else Path(f"validate-{args.against}-{stem}")
    paths = write_outputs(v, out)
    if args.format == "json":
        import json
        print(json.dumps(_jsonable({**v.to_dict(), "files": {k: str(p) for k, p in paths.items()}}), indent=2))
    elif args.format == "csv":
        import pandas as pd
        sys.stdout.write(pd.DataFrame(summary_rows(v)).to_csv(index=False))
    else:
        print(format_report(v, title=f"{args.workload}: analytical model vs {args.against} on {len(accs)} accelerators "
                                     f"of space {space.name!r} (seed {args.seed})"))
        print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0
