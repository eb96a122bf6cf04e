"""Where the analytical model and ZigZag still disagree on energy, and why: an analysis of the validation sweep.

Run after ``experiments/validate_zigzag.py`` (it reads ZigZag's per-pair results from the
cache that run filled; missing pairs are priced).  Three analyses, printed as tables:

1. **Substitution.**  Per layer, the Spearman rank correlation between ZigZag's energy and
   ours when one of our energy terms (RF, GLB or DRAM accesses) is replaced by ZigZag's own
   figure for that term.  A term whose replacement lifts the correlation is where the two
   models rank designs differently.
2. **Whole-loop mapper.**  ZigZag's LOMA merges each layer's loop prime factors down to
   ``lpf_limit`` (default 6) before it searches loop orders; a ResNet 3x3 layer has six
   temporal loops, so every loop is placed whole.  This computes, for every pair, the least
   DRAM traffic of a mapper restricted to whole temporal loops (after the dataflow's spatial
   unrolling) in any order, with one GLB/DRAM cut and the three operands' tiles sharing the
   GLB (partial sums at their width), and compares it with ZigZag's DRAM traffic and ours.
3. **A finer ZigZag** (``--lpf 7``): the ``--pairs`` pairs with the largest energy
   disagreement priced again by ZigZag with ``lpf_limit = 7`` (one more loop factor to place;
   minutes per pair), to see which way ZigZag's own answer moves when its search is finer.

Usage: python experiments/zigzag_granularity.py [--dataflows ws os rs] [--lpf 7 --pairs 4]
"""

from __future__ import annotations

import argparse
import itertools
import math
from typing import Dict, List

import numpy as np

from accelerators import AnalyticalModel, ZigZagBackend
from accelerators.cost_model import layer_shape, spatial_unrolling
from coexplore.validate import spearman
from validate_zigzag import sweep_accelerators, sweep_layers

# the loop dimensions each operand's index depends on (the convolution loop nest)
RELEVANT = {"W": {"G", "K", "C", "FY", "FX"}, "I": {"B", "G", "C", "OY", "OX", "FY", "FX"},
            "O": {"B", "G", "K", "OY", "OX"}}


def whole_loop_dram_words(layer, acc, psum_factor: int) -> float:
    """Least DRAM words (partial sums weighted by their width) of a mapper that places whole temporal loops."""
    sh, sp = layer_shape(layer), spatial_unrolling(layer, acc)
    cd = lambda a, b: -(-a // b)
    ext = {"B": sh["N"], "G": cd(sh["G"], sp["g"]), "K": cd(sh["Kg"], sp["k"]), "C": cd(sh["Cg"], sp["c"]),
           "FY": cd(sh["R"], sp["r"]), "FX": sh["S"], "OY": cd(sh["P"], sp["p"]), "OX": cd(sh["Q"], sp["q"])}
    spat = {"B": 1, "G": sp["g"], "K": sp["k"], "C": sp["c"], "FY": sp["r"], "FX": 1, "OY": sp["p"], "OX": sp["q"]}
    loops = [d for d, v in ext.items() if v > 1]
    st, cap = sh["st"], acc.glb_bytes * 8 // acc.word_bits

    def tile(op: str, inner) -> int:
        e = {d: spat[d] * (ext[d] if d in inner else 1) for d in ext}
        if op == "W":
            return e["G"] * e["K"] * e["C"] * e["FY"] * e["FX"]
        if op == "O":
            return e["B"] * e["G"] * e["K"] * e["OY"] * e["OX"]
        return e["B"] * e["G"] * e["C"] * ((e["OY"] - 1) * st + e["FY"]) * ((e["OX"] - 1) * st + e["FX"])

    full_o = tile("O", set(ext))
    best = math.inf
    for order in itertools.permutations(loops):  # inner -> outer
        for cut in range(len(order) + 1):
            inner, outer = set(order[:cut]), order[cut:]
            if tile("W", inner) + tile("I", inner) + tile("O", inner) * psum_factor > cap:
                continue
            words = 0.0
            for op in ("W", "I", "O"):
                rel = [k for k, d in enumerate(outer) if d in RELEVANT[op]]
                if op == "O":
                    # partial sums: reduction loops outside the innermost output-relevant outer loop
                    n_red = math.prod(ext[d] for k, d in enumerate(outer)
                                      if d not in RELEVANT["O"] and (not rel or k > rel[0]))
                    words += full_o * ((2 * n_red - 1) * psum_factor if n_red > 1 else 1)
                    continue
                mult = math.prod(ext[d] for d in outer[rel[0]:]) if rel else 1
                words += tile(op, inner) * mult
            best = min(best, words)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataflows", nargs="+", default=["ws", "os", "rs"])
    ap.add_argument("--lpf", type=int, default=0, help="re-price the worst pairs with this lpf_limit (0: skip)")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    accs, layers = sweep_accelerators(args.dataflows), sweep_layers()
    zz = ZigZagBackend(tech="zigzag", workers=args.workers, progress=True)
    ours = AnalyticalModel(tech="zigzag")
    A, L = len(accs), len(layers)
    res = zz.pairs([(l, a) for a in accs for l in layers])
    rec = [[res[i * L + j].record for j in range(L)] for i in range(A)]
    z_tot = np.array([[r["energy_pj"] for r in row] for row in rec])
    z_lvl = {k: np.array([[r["energy_pj_by_level"][k] for r in row] for row in rec]) for k in ("rf", "glb", "dram")}
    o_lvl: Dict[str, np.ndarray] = {k: np.zeros((A, L)) for k in ("mac", "rf", "noc", "glb", "dram", "static")}
    for i, a in enumerate(accs):
        for j, l in enumerate(layers):
            e = ours.explain(l, a).energy_pj
            for k in o_lvl:
                o_lvl[k][i, j] = e[k]
    o_tot = sum(o_lvl.values())
    rho = lambda x: [spearman(x[:, j], z_tot[:, j]) for j in range(L)]
    names = [l.name for l in layers]
    print(f"1. substitution: Spearman of energy across {A} accelerators, per layer ({', '.join(names)})")
    rows = [("ours", o_tot)] + [(f"ours, ZigZag's {k}", o_tot - o_lvl[k] + z_lvl[k]) for k in ("rf", "glb", "dram")]
    for label, x in rows:
        r = rho(x)
        print(f"   {label:<20}" + "".join(f"{v:7.2f}" for v in r) + f"   median {np.nanmedian(r):.2f}")
    share = np.median(z_lvl["dram"] / z_tot, axis=0)
    print("   share of ZigZag's energy in DRAM accesses: " + " ".join(f"{v:.2f}" for v in share))

    print("\n2. whole-loop mapper: DRAM words, median ratio (p10..p90) and Spearman per layer")
    psf = int(ours.tech.psum_bits_factor)
    wl = np.array([[whole_loop_dram_words(l, a, psf) for l in layers] for a in accs])
    wb = np.array([a.word_bits for a in accs])[:, None] / 8.0
    z_dram = np.array([[r["dram_bytes"] for r in row] for row in rec]) / wb
    o_dram = np.array([[ours.explain(l, a).dram_bytes for l in layers] for a in accs]) / wb
    print(f"   {'layer':<22}{'ZigZag / whole-loop':>22}{'rho':>6}{'ZigZag / ours':>18}{'rho':>6}")
    for df in ["all"] + list(args.dataflows):
        idx = [i for i, a in enumerate(accs) if df in ("all", a.dataflow)]
        r_wl = [spearman(wl[idx, j], z_dram[idx, j]) for j in range(L)]
        r_o = [spearman(o_dram[idx, j], z_dram[idx, j]) for j in range(L)]
        print(f"   {df:<4} median over layers: ZigZag / whole-loop {np.median(z_dram[idx] / wl[idx]):.2f}, rho "
              f"{np.nanmedian(r_wl):.2f} | ZigZag / ours {np.median(z_dram[idx] / o_dram[idx]):.2f}, rho "
              f"{np.nanmedian(r_o):.2f}")
    for j, n in enumerate(names):
        q1 = np.percentile(z_dram[:, j] / wl[:, j], [10, 50, 90])
        q2 = np.percentile(z_dram[:, j] / o_dram[:, j], [10, 50, 90])
        print(f"   {n:<22}{q1[1]:>8.2f} ({q1[0]:.2f}..{q1[2]:.2f}){spearman(wl[:, j], z_dram[:, j]):>6.2f}"
              f"{q2[1]:>8.2f} ({q2[0]:.2f}..{q2[2]:.2f}){spearman(o_dram[:, j], z_dram[:, j]):>6.2f}")

    if args.lpf:
        dev = np.abs(np.log(o_tot / z_tot))
        order = np.argsort(-dev, axis=None)
        worst, seen = [], set()
        for f in order:  # one per design: designs that differ only in DRAM bandwidth price alike
            a = accs[f // L]
            key = (f % L, a.pe_x, a.pe_y, a.rf_bytes, a.glb_bytes, a.dataflow)
            if key not in seen:
                seen.add(key)
                worst.append(int(f))
            if len(worst) == args.pairs:
                break
        fine = ZigZagBackend(tech="zigzag", lpf_limit=args.lpf, workers=args.workers, progress=True)
        pairs = [(layers[f % L], accs[f // L]) for f in worst]
        got = fine.pairs(pairs)
        print(f"\n3. the {len(pairs)} largest energy disagreements, ZigZag with lpf_limit 6 and {args.lpf}, and ours (uJ)")
        for (l, a), f, g in zip(pairs, worst, got):
            i, j = f // L, f % L
            print(f"   {l.name:<18} {a.short():<28} lpf6 {z_tot[i, j] / 1e6:8.1f}  lpf{args.lpf} "
                  f"{g.record['energy_pj'] / 1e6:8.1f}  ours {o_tot[i, j] / 1e6:8.1f}   DRAM MB: "
                  f"{rec[i][j]['dram_bytes'] / 1e6:.2f} -> {g.record['dram_bytes'] / 1e6:.2f} (ours "
                  f"{o_dram[i, j] * wb[i, 0] / 1e6:.2f})")


if __name__ == "__main__":
    main()
