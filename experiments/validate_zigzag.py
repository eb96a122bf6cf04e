"""Validation sweep: the analytical model against ZigZag 3.9.1 (LOMA mapping search on), matched constants.

The sweep (fixed, not sampled, so that every number in experiments/results/validate-zigzag.md
can be reproduced exactly):

* 40 accelerators per dataflow: PE arrays (pe_y x pe_x) 8x8, 8x16, 16x16, 16x32, 32x32;
  RF 32 B and 128 B per PE; GLB 64 KiB and 256 KiB; DRAM 8 and 16 B/cycle; 16-bit words,
  200 MHz, a 64 B/cycle GLB port;
* dataflows WS and OS, and RS (which ZigZag expresses with filter rows and input channels
  together on D2);
* 6 layers: ResNet-18 layer1.0.conv1 (3x3, 64->64, 56x56), layer2.0.conv1 (3x3 stride 2,
  64->128), layer4.1.conv1 (3x3, 512->512, 7x7); MobileNetV2 features.2.conv.0.0 (1x1,
  16->96, 112x112), features.4.conv.1.0 (3x3 depthwise stride 2, 144 channels),
  features.15.conv.2 (1x1, 960->160, 7x7).

Both models use the ``zigzag`` technology preset (ZigZag's per-access energies, 2x partial
sums, no NoC or static energy) and the EDP mapping objective.  ZigZag results are cached per
pair under the project cache (``$COEXPLORE_CACHE`` or ``~/.cache/coexplore``), so a rerun, or
an interrupted run restarted, only prices what is missing.

Usage:
    python experiments/validate_zigzag.py [--dataflows ws os rs] [--workers 2] [--stem validate-zigzag]

Writes ``experiments/results/<stem>.{csv,json,txt,png}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerators import Accelerator, get_workload
from coexplore.validate import format_report, validate, write_outputs

ARRAYS = ((8, 8), (16, 8), (16, 16), (32, 16), (32, 32))  # (pe_x, pe_y)
RF_BYTES = (32, 128)
GLB_BYTES = (64 * 1024, 256 * 1024)
DRAM_BW = (8.0, 16.0)
LAYERS = {"resnet18": ("layer1.0.conv1", "layer2.0.conv1", "layer4.1.conv1"),
          "mobilenetv2": ("features.2.conv.0.0", "features.4.conv.1.0", "features.15.conv.2")}
RESULTS = Path(__file__).resolve().parent / "results"


def sweep_accelerators(dataflows):
    return [Accelerator(pe_x=x, pe_y=y, rf_bytes=rf, glb_bytes=glb, dataflow=df, dram_bw=bw, glb_bw=64.0)
            for df in dataflows for (x, y) in ARRAYS for rf in RF_BYTES for glb in GLB_BYTES for bw in DRAM_BW]


def sweep_layers():
    out = []
    for net, names in LAYERS.items():
        by_name = {l.name: l for l in get_workload(net)}
        out += [by_name[n] for n in names]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataflows", nargs="+", default=["ws", "os", "rs"])
    ap.add_argument("--workers", type=int, default=None, help="ZigZag processes (default: all cores)")
    ap.add_argument("--stem", default="validate-zigzag", help="output file stem under experiments/results/")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--fixture", default=None,
                    help="also write ZigZag's per-pair numbers as a compact CSV (the test suite's reference: "
                         "tests/accelerators/data/zigzag_sweep.csv)")
    args = ap.parse_args()
    accs = sweep_accelerators(args.dataflows)
    layers = sweep_layers()
    v = validate(layers, accs, against="zigzag", tech="zigzag", mapping_objective="edp", workers=args.workers,
                 progress=True)
    print(format_report(v, title=f"analytical model vs ZigZag: {len(layers)} layers x {len(accs)} accelerators "
                                 f"({', '.join(args.dataflows)})"))
    for p in write_outputs(v, args.out, args.stem).values():
        print("wrote", p)
    if args.fixture:
        write_fixture(v, args.fixture)
        print("wrote", args.fixture)


def write_fixture(v, path) -> None:
    """ZigZag's answers for every pair of the sweep: the energy-ranking test's reference."""
    import pandas as pd

    from coexplore.common import atomic_write_text

    rows = []
    for i, a in enumerate(v.accelerators):
        for j, l in enumerate(v.layers):
            r = v.ref_records[i][j]
            rows.append({"layer": l.name, "dataflow": a.dataflow, "pe_x": a.pe_x, "pe_y": a.pe_y,
                         "rf_bytes": a.rf_bytes, "glb_bytes": a.glb_bytes, "dram_bw": a.dram_bw,
                         "energy_pj": round(r["energy_pj"], 3), "dram_energy_pj": round(r["energy_pj_by_level"]["dram"], 3),
                         "latency_cycles": r["latency_cycles"], "dram_bytes": r["dram_bytes"]})
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))


if __name__ == "__main__":
    main()
