"""Agreement with ZigZag on the validation sweep, per way of grouping, without running ZigZag.

Reads ZigZag 3.9.1's answers for the 720 pairs of ``experiments/validate_zigzag.py`` (the
fixture it writes with ``--fixture``, ``tests/accelerators/data/zigzag_sweep.csv``), prices the
same pairs with the analytical model of this checkout (EDP mapping objective, technology
``--tech``) and prints a markdown table of Spearman rank correlations across accelerators and
median ratios ours / ZigZag, for:

* ``pooled``: per layer, across all accelerators of the dataflows given (WS+OS: 80; all: 120);
* ``per dataflow``: per (layer, dataflow), across that dataflow's 40 accelerators (the grouping
  of the measurement in issue 11), median over the (layer, dataflow) groups;

and a second table of what two design changes do to the energy of the ResNet-18 layers on
WS, in each model: the array from 8x8 to 32x32 (spatial reuse) and the RF from 32 B to 128 B
(temporal reuse), as the median and range over the other parameters and layers.

Usage: python experiments/zigzag_agreement.py [--tech zigzag] [--fixture CSV]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from accelerators import Accelerator, get_workload
from accelerators.cost_model import AnalyticalModel
from accelerators.technology import COST_MODEL_VERSION, TECH_PRESETS
from coexplore.validate import spearman

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "accelerators" / "data" / "zigzag_sweep.csv"
KEYS = ["dataflow", "pe_x", "pe_y", "rf_bytes", "glb_bytes", "dram_bw"]


def load(path, tech: str):
    """ZigZag's and our [A, L] latency (cycles) and energy (J) on the sweep, and the accelerators."""
    df = pd.read_csv(path)
    names = list(dict.fromkeys(df["layer"]))
    by_name = {l.name: l for l in get_workload("resnet18") + get_workload("mobilenetv2")}
    accs_df = df[KEYS].drop_duplicates().reset_index(drop=True)
    accs = [Accelerator(pe_x=int(r.pe_x), pe_y=int(r.pe_y), rf_bytes=int(r.rf_bytes), glb_bytes=int(r.glb_bytes),
                        dataflow=r.dataflow, dram_bw=float(r.dram_bw), glb_bw=64.0) for r in accs_df.itertuples()]
    ref = df.set_index(KEYS + ["layer"])
    pick = lambda col: np.array([[ref.loc[tuple(accs_df.iloc[i]) + (n,), col] for n in names]
                                 for i in range(len(accs))], dtype=np.float64)
    c = AnalyticalModel(TECH_PRESETS[tech], "edp").evaluate([by_name[n] for n in names], accs)
    return accs, names, {"latency": (c.cycles, pick("latency_cycles")),
                         "energy": (c.energy_j, pick("energy_pj") * 1e-12)}


def rows(accs, names, data, dataflows):
    out = []
    idx = [i for i, a in enumerate(accs) if a.dataflow in dataflows]
    for m, (ours, ref) in data.items():
        pooled = [spearman(ours[idx, j], ref[idx, j]) for j in range(len(names))]
        groups = [spearman(ours[[i for i in idx if accs[i].dataflow == df], j],
                           ref[[i for i in idx if accs[i].dataflow == df], j])
                  for df in dataflows for j in range(len(names))]
        ratio = ours[idx] / ref[idx]
        out.append({"dataflows": "+".join(d.upper() for d in dataflows), "metric": m,
                    "pooled rho median": np.nanmedian(pooled), "pooled rho worst": np.nanmin(pooled),
                    "per-dataflow rho median": np.nanmedian(groups), "per-dataflow rho worst": np.nanmin(groups),
                    "ratio median": np.median(ratio), "ratio p10": np.percentile(ratio, 10),
                    "ratio p90": np.percentile(ratio, 90)})
    return out


def design_effects(accs, names, data, dataflow: str = "ws"):
    """Energy change (new / old - 1) of a design change, per model, over the ResNet-18 layers."""
    ours, ref = data["energy"]
    key = lambda a: (a.dataflow, a.pe_x, a.pe_y, a.rf_bytes, a.glb_bytes, a.dram_bw)
    at = {key(a): i for i, a in enumerate(accs)}
    cols = [j for j, n in enumerate(names) if n.startswith("layer")]
    out = []
    for label, old, new in (("array 8x8 -> 32x32", {"pe_x": 8, "pe_y": 8}, {"pe_x": 32, "pe_y": 32}),
                            ("RF 32 B -> 128 B", {"rf_bytes": 32}, {"rf_bytes": 128})):
        d = {"ours": [], "ZigZag": []}
        for a in accs:
            if a.dataflow != dataflow or any(getattr(a, k) != v for k, v in old.items()):
                continue
            b = at[key(dataclasses.replace(a, **new))]
            i = at[key(a)]
            for j in cols:
                d["ours"].append(ours[b, j] / ours[i, j] - 1)
                d["ZigZag"].append(ref[b, j] / ref[i, j] - 1)
        out.append((label, {m: (np.median(v), np.min(v), np.max(v)) for m, v in d.items()}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tech", default="zigzag", choices=sorted(TECH_PRESETS))
    ap.add_argument("--fixture", default=str(FIXTURE))
    args = ap.parse_args()
    accs, names, data = load(args.fixture, args.tech)
    table = []
    for dfs in (("ws", "os"), ("ws", "os", "rs"), ("ws",), ("os",), ("rs",)):
        table += rows(accs, names, data, dfs)
    print(f"analytical {COST_MODEL_VERSION} ({args.tech} technology, EDP) vs ZigZag 3.9.1 (zigzag technology), "
          f"{len(names)} layers\n")
    cols = list(table[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in table:
        print("| " + " | ".join(v if isinstance(v, str) else f"{v:.3f}" for v in r.values()) + " |")
    print("\nWS energy of the ResNet-18 layers: change per design step, median (min..max) over the other "
          "parameters and the layers\n")
    print("| change | ours | ZigZag |\n|---|---|---|")
    for label, d in design_effects(accs, names, data):
        print(f"| {label} | " + " | ".join(f"{m * 100:+.0f} % ({lo * 100:+.0f}..{hi * 100:+.0f} %)"
                                            for m, lo, hi in d.values()) + " |")


if __name__ == "__main__":
    main()
