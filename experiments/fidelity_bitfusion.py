"""Fidelity check: BitFusion over Eyeriss, as the analytical model prices it, next to the published ratios.

Published (Sharma et al., "Bit Fusion: Bit-Level Dynamically Composable Architecture for
Accelerating Deep Neural Networks", ISCA 2018, abstract): "in the same area, frequency, and
process technology, BitFusion offers 3.9x speedup and 5.1x energy savings over Eyeriss"
(mean over its eight benchmarks: AlexNet, SVHN, CIFAR-10, LSTM, ResNet-18, RNN, VGG-7, LeNet-5,
at the per-layer bit widths of their quantised versions).

What we price (nothing is fitted; constants are those of ``accelerators/technology.py``):

* networks the project can build: AlexNet and ResNet-18 (built-in), VGG-7 and LeNet-5
  (``experiments/workloads/*.yaml``), batch 1.  SVHN, CIFAR-10 (their exact topologies), the
  RNN and the LSTM are left out;
* precisions -- assumed, not read from the paper's table (no PDF access here): the first and
  last layer at 8-bit weights and activations, every other layer at ``w``-bit weights and
  ``a``-bit activations, for two schedules: W4A4 and W2A2 (BitFusion's benchmarks are 4-, 2-
  and 1-bit networks with 8-bit first/last layers; 1-bit runs at 2 bits on its bricks); outputs
  and partial sums at the accelerator's width (16 bits);
* BitFusion-like: the built-in ``bitfusion-like`` (bit-fused, 16x32 fusion units, 112 KB
  buffer, 500 MHz, 32 B registers per unit, WS, 16 B/cycle DRAM, 64 B/cycle buffer);
* Eyeriss-like: the built-in ``eyeriss`` (12x14 RS PEs, 16-bit fixed, 520 B RF, 108 KB GLB)
  at BitFusion's 500 MHz and the same 16 B/cycle DRAM link, as the paper compares them at equal
  frequency; it runs every layer at 16 bits (it has no lower-precision mode, so the narrow
  weights and activations are stored at 16 bits too).

Usage: python experiments/fidelity_bitfusion.py [--out experiments/results/fidelity-bitfusion.md]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import List, Sequence

import numpy as np

from accelerators import Layer, get_accelerator, get_workload
from accelerators.cost_model import AnalyticalModel

ROOT = Path(__file__).resolve().parent
NETWORKS = {"alexnet": "alexnet", "resnet18": "resnet18", "vgg7-cifar": str(ROOT / "workloads" / "vgg7-cifar.yaml"),
            "lenet5": str(ROOT / "workloads" / "lenet5.yaml")}
SCHEDULES = ((4, 4), (2, 2))
PUBLISHED_SPEEDUP, PUBLISHED_ENERGY = 3.9, 5.1


def with_bits(layers: Sequence[Layer], w: int, a: int, edge: int = 8) -> List[Layer]:
    """First and last layer at ``edge`` bits, the others at ``w``-bit weights and ``a``-bit activations."""
    n = len(layers)
    return [dataclasses.replace(l, weight_bits=edge if i in (0, n - 1) else w, act_bits=edge if i in (0, n - 1) else a)
            for i, l in enumerate(layers)]


def geomean(x) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(x, dtype=np.float64)))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "fidelity-bitfusion.md"))
    args = ap.parse_args()

    bf = get_accelerator("bitfusion-like")
    ey = get_accelerator("eyeriss").with_(clock_hz=500e6, dram_bw=16.0, name="eyeriss-500MHz")
    model = AnalyticalModel(mapping_objective="edp")
    area = model.area_mm2([bf, ey])
    lines = [
        "# BitFusion over Eyeriss: the analytical model against the published ratios",
        "",
        "Reproduce with `python experiments/fidelity_bitfusion.py` (assumptions in its docstring).",
        "",
        f"* BitFusion-like: {bf.short()}, {bf.clock_hz / 1e6:g} MHz, DRAM {bf.dram_bw:g} B/cycle, "
        f"buffer {bf.glb_bw:g} B/cycle; area {area[0]:.2f} mm^2 (model)",
        f"* Eyeriss-like: {ey.short()}, {ey.clock_hz / 1e6:g} MHz, DRAM {ey.dram_bw:g} B/cycle, "
        f"buffer {ey.glb_bw:g} B/cycle; area {area[1]:.2f} mm^2 (model)",
        "* precisions: first and last layer W8A8, the others as the schedule says; outputs at 16 bits; "
        "Eyeriss runs everything at 16 bits",
        "",
        "| network | schedule | MACs (M) | Eyeriss ms | BitFusion ms | speed-up | Eyeriss mJ | BitFusion mJ "
        "| energy ratio | BitFusion bound (layers compute / memory) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for label, src in NETWORKS.items():
        base = get_workload(src)
        ce = model.evaluate(base, [ey])
        for w, a in SCHEDULES:
            layers = with_bits(base, w, a)
            cb = model.evaluate(layers, [bf])
            sp = ce.latency_total_s[0] / cb.latency_total_s[0]
            er = ce.energy_total_j[0] / cb.energy_total_j[0]
            summary.setdefault((w, a), []).append((sp, er))
            mem = int(cb.memory_bound[0].sum())
            lines.append(f"| {label} | W{w}A{a} | {sum(l.macs for l in base) / 1e6:,.1f} | "
                         f"{ce.latency_total_s[0] * 1e3:.3f} | {cb.latency_total_s[0] * 1e3:.3f} | {sp:.2f}x | "
                         f"{ce.energy_total_j[0] * 1e3:.3f} | {cb.energy_total_j[0] * 1e3:.3f} | {er:.2f}x | "
                         f"{len(layers) - mem} / {mem} |")
    lines += ["", "| schedule | geomean speed-up (model) | published | geomean energy reduction (model) | published |",
              "|---|---|---|---|---|"]
    for (w, a), vals in summary.items():
        lines.append(f"| W{w}A{a} | {geomean([v[0] for v in vals]):.2f}x | {PUBLISHED_SPEEDUP}x | "
                     f"{geomean([v[1] for v in vals]):.2f}x | {PUBLISHED_ENERGY}x |")
    # where the energy goes on one network, to read the ratios
    ex_layers = with_bits(get_workload("resnet18"), 4, 4)
    parts_b = {k: 0.0 for k in ("mac", "rf", "noc", "glb", "dram", "static")}
    parts_e = dict(parts_b)
    for lb, le in zip(ex_layers, get_workload("resnet18")):
        for k, v in model.explain(lb, bf).energy_pj.items():
            parts_b[k] += v
        for k, v in model.explain(le, ey).energy_pj.items():
            parts_e[k] += v
    tb, te = sum(parts_b.values()), sum(parts_e.values())
    lines += ["", "Energy breakdown, ResNet-18 (W4A4 on BitFusion-like, 16-bit on Eyeriss-like), share of each total:",
              "", "| level | Eyeriss-like | BitFusion-like |", "|---|---|---|"]
    for k in parts_b:
        lines.append(f"| {k} | {100 * parts_e[k] / te:.0f} % | {100 * parts_b[k] / tb:.0f} % |")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
