"""Benchmark, side by side in one run: seconds per (layer, accelerator) pair, ZigZag against the analytical model.

Both price the same pairs (ResNet-18 and MobileNetV2 layers on accelerators of the default
hardware space), each with its own mapping search:

* ZigZag 3.9.1 (LOMA, lpf_limit 6, EDP), one pair at a time in this process, nothing cached;
* the analytical model one pair at a time (``evaluate([layer], [acc])``: what a caller pays
  for a single answer), and amortised over the whole default space (972 designs x the
  network's layers in one vectorised call: what a search pays per pair).

Prints the medians and their ratios and writes a figure (per-pair seconds on a log axis, one
box per way of pricing, medians marked) and a CSV of every timed pair.

Usage: python experiments/bench/bench_zigzag.py [--pairs 12] [--repeats 5] [--out bench-results]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from accelerators import ZigZagBackend, get_hardware_space
from accelerators.cost_model import AnalyticalModel
from accelerators.networks import get_workload
from coexplore.common import atomic_write_text
from coexplore.pareto import save_figure


def sample_pairs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    accs = get_hardware_space("default").enumerate()
    layers = []
    for net in ("resnet18", "mobilenetv2"):
        seen = set()
        for l in get_workload(net):
            key = (l.K, l.C, l.R, l.P, l.stride, l.groups)
            if key not in seen and l.kind != "linear":
                seen.add(key)
                layers.append(l)
    li = rng.choice(len(layers), size=n, replace=len(layers) < n)
    ai = rng.choice(len(accs), size=n, replace=False)
    return [(layers[i], accs[j]) for i, j in zip(li, ai)]


def time_pairs(pairs, repeats: int):
    """Seconds per pair: ZigZag (once each), ours one at a time (median of repeats), ours amortised."""
    zz = ZigZagBackend(tech="zigzag", workers=1, cache=False, progress=False)
    model = AnalyticalModel(tech="zigzag")
    zz.pairs(pairs[:1])  # import ZigZag and warm its caches before timing
    rows = []
    for layer, acc in pairs:
        t0 = time.perf_counter()
        zz.pairs([(layer, acc)])
        t_zz = time.perf_counter() - t0
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.evaluate([layer], [acc])
            ts.append(time.perf_counter() - t0)
        rows.append({"layer": layer.name, "accelerator": acc.short(), "zigzag_s": t_zz,
                     "ours_one_pair_s": statistics.median(ts)})
    accs = get_hardware_space("default").enumerate()
    amortised = []
    for net in ("resnet18", "mobilenetv2"):
        layers = get_workload(net)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.evaluate(layers, accs)
            ts.append(time.perf_counter() - t0)
        amortised.append(statistics.median(ts) / (len(layers) * len(accs)))
    return rows, amortised


def figure(rows, amortised):
    from matplotlib.figure import Figure

    zz = [r["zigzag_s"] for r in rows]
    one = [r["ours_one_pair_s"] for r in rows]
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    data = [zz, one, amortised]
    labels = [f"ZigZag 3.9.1\n(LOMA, one pair)", "analytical\n(one pair per call)", "analytical\n(whole space, per pair)"]
    ax.boxplot(data, tick_labels=labels, showfliers=True)
    for k, d in enumerate(data, 1):
        m = statistics.median(d)
        ax.scatter([k], [m], color="#c44e52", zorder=3)
        ax.annotate(f"{m:.2g} s", (k, m), textcoords="offset points", xytext=(8, 0), fontsize=8, va="center")
    ax.set_yscale("log")
    ax.set_ylabel("seconds per (layer, accelerator) pair")
    r1 = statistics.median(zz) / statistics.median(one)
    r2 = statistics.median(zz) / statistics.median(amortised)
    ax.set_title(f"median ZigZag / analytical: {r1:,.0f}x one pair at a time, {r2:,.0f}x amortised "
                 f"({len(rows)} pairs)", fontsize=9)
    fig.tight_layout()
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    rows, amortised = time_pairs(sample_pairs(args.pairs, args.seed), args.repeats)
    import pandas as pd
    out = Path(args.out)
    atomic_write_text(out / "zigzag_vs_analytical.csv", pd.DataFrame(rows).to_csv(index=False))
    save_figure(figure(rows, amortised), [out / "zigzag_vs_analytical.png"])
    zz = statistics.median(r["zigzag_s"] for r in rows)
    one = statistics.median(r["ours_one_pair_s"] for r in rows)
    am = statistics.median(amortised)
    print(f"{len(rows)} pairs, medians: ZigZag {zz:.3g} s/pair | analytical one pair {one:.3g} s "
          f"({zz / one:,.0f}x faster) | amortised over the default space {am:.3g} s ({zz / am:,.0f}x faster)")
    print(f"wrote {out / 'zigzag_vs_analytical.png'} and {out / 'zigzag_vs_analytical.csv'}")


if __name__ == "__main__":
    main()
