"""Fidelity check: the analytical model against the Eyeriss chip (Chen et al., JSSC 2017).

Published (AlexNet CONV1-5 at batch N = 4, VGG-16 CONV layers at N = 3, 200 MHz, 16 bit):
  * abstract: AlexNet CONV layers at 35 frames/s and 0.0029 DRAM accesses per MAC, 278 mW;
    VGG-16 CONV layers at 0.7 frames/s and 0.0035 DRAM accesses per MAC, 236 mW;
  * per-layer table (Table V): latency per batch of 4 of CONV1..5 = 16.5, 39.2, 21.8, 16.0,
    10.0 ms; active PEs 154, 135, 156, 156, 156 of 168; DRAM traffic 5.0, 4.0, 3.0, 2.1,
    1.3 MB; global-buffer traffic 18.5, 77.6, 50.2, 37.4, 24.9 MB.

The chip skips nothing (zero gating saves power, not time), so latency is comparable; its
DRAM traffic is run-length compressed and its power is on-chip only (no DRAM), so our
DRAM traffic should be somewhat higher and our on-chip energy is compared with power x
time.  Nothing here is fitted: the constants are those of ``accelerators/technology.py``.

Usage: python experiments/fidelity_eyeriss.py
"""

from __future__ import annotations

from accelerators import get_accelerator
from accelerators.cost_model import AnalyticalModel
from accelerators.networks import get_workload

PUBLISHED = {  # layer: (latency ms per batch of 4, active PEs, DRAM MB, GLB MB)
    "conv1": (16.5, 154, 5.0, 18.5),
    "conv2": (39.2, 135, 4.0, 77.6),
    "conv3": (21.8, 156, 3.0, 50.2),
    "conv4": (16.0, 156, 2.1, 37.4),
    "conv5": (10.0, 156, 1.3, 24.9),
}


def main() -> None:
    eyeriss = get_accelerator("eyeriss")
    model = AnalyticalModel(mapping_objective="edp")
    layers = [l for l in get_workload("alexnet", batch=4) if l.name in PUBLISHED]
    c = model.evaluate(layers, [eyeriss])
    print("AlexNet CONV layers on Eyeriss, batch 4 (published | model)")
    print(f"{'layer':<7}{'latency ms':>20}{'active PEs':>16}{'DRAM MB':>16}{'GLB MB':>18}")
    tot_pub = tot_mod = 0.0
    for i, l in enumerate(layers):
        ex = model.explain(l, eyeriss)
        pub = PUBLISHED[l.name]
        glb_mb = sum(ex.accesses_words["glb"].values()) * eyeriss.word_bytes / 1e6
        lat = c.latency_s[0, i] * 1e3
        tot_pub += pub[0]
        tot_mod += lat
        print(f"{l.name:<7}{pub[0]:>10.1f} |{lat:>7.1f}{pub[1]:>8d} |{ex.used_pes:>5d}"
              f"{pub[2]:>8.1f} |{c.dram_bytes[0, i] / 1e6:>5.1f}{pub[3]:>9.1f} |{glb_mb:>6.1f}")
    macs = sum(l.macs for l in layers)
    dram_acc = c.dram_bytes[0].sum() / eyeriss.word_bytes
    onchip = 0.0
    for l in layers:
        e = model.explain(l, eyeriss).energy_pj
        onchip += (e["mac"] + e["rf"] + e["noc"] + e["glb"] + e["static"]) * 1e-12
    print(f"{'total':<7}{tot_pub:>10.1f} |{tot_mod:>7.1f}")
    print(f"frames/s (CONV layers): published 35 | model {4 / (tot_mod / 1e3):.1f}")
    print(f"DRAM accesses per MAC: published 0.0029 | model {dram_acc / macs:.4f}")
    print(f"on-chip energy per batch: published 278 mW x {tot_pub:.1f} ms = {278e-3 * tot_pub:.1f} mJ "
          f"| model {onchip * 1e3:.1f} mJ (+ DRAM {c.energy_j[0].sum() * 1e3 - onchip * 1e3:.1f} mJ)")

    vgg = [l for l in get_workload("vgg16", batch=3) if l.kind != "linear"]
    cv = model.evaluate(vgg, [eyeriss])
    macs_v = sum(l.macs for l in vgg)
    print(f"VGG-16 CONV layers, batch 3: frames/s published 0.7 | model {3 / cv.latency_s[0].sum():.2f}; "
          f"DRAM accesses/MAC published 0.0035 | model {cv.dram_bytes[0].sum() / eyeriss.word_bytes / macs_v:.4f}")


if __name__ == "__main__":
    main()
