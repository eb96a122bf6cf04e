"""The analytical model ranks designs the way ZigZag does, on the validation sweep.

``data/zigzag_sweep.csv`` holds ZigZag 3.9.1's answers (LOMA, lpf_limit 6, EDP mappings, the
``zigzag`` technology preset) for every pair of ``experiments/validate_zigzag.py``: 40
accelerators x WS, OS and RS x 6 ResNet-18 and MobileNetV2 layers.  It was written by
``python experiments/validate_zigzag.py --fixture tests/accelerators/data/zigzag_sweep.csv``;
ZigZag is not needed to run this test, which re-prices the sweep with the analytical model
(a few milliseconds) and checks the agreement that ``experiments/results/validate-zigzag.md``
reports (``python experiments/zigzag_agreement.py`` prints it per grouping).  The bars sit a
little under the measured values, so that a change to the model's structure that costs
agreement turns the test red.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from accelerators import Accelerator, get_workload
from accelerators.cost_model import AnalyticalModel
from accelerators.technology import ZIGZAG_TECH

DATA = Path(__file__).parent / "data" / "zigzag_sweep.csv"


def spearman(x, y):
    from scipy.stats import rankdata
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


@pytest.fixture(scope="module")
def sweep():
    df = pd.read_csv(DATA)
    layers = {l.name: l for l in get_workload("resnet18") + get_workload("mobilenetv2")}
    names = list(dict.fromkeys(df["layer"]))
    keys = ["dataflow", "pe_x", "pe_y", "rf_bytes", "glb_bytes", "dram_bw"]
    accs_df = df[keys].drop_duplicates().reset_index(drop=True)
    accs = [Accelerator(pe_x=int(r.pe_x), pe_y=int(r.pe_y), rf_bytes=int(r.rf_bytes), glb_bytes=int(r.glb_bytes),
                        dataflow=r.dataflow, dram_bw=float(r.dram_bw), glb_bw=64.0) for r in accs_df.itertuples()]
    c = AnalyticalModel(ZIGZAG_TECH, "edp").evaluate([layers[n] for n in names], accs)
    ref = df.set_index(keys + ["layer"])
    pick = lambda col: np.array([[ref.loc[tuple(accs_df.iloc[i]) + (n,), col] for n in names]
                                 for i in range(len(accs))], dtype=np.float64)
    e_dram = float(ZIGZAG_TECH.e_dram(16))
    return {"names": names, "accs": accs, "ours": c, "energy": pick("energy_pj") * 1e-12,
            "dram_energy": pick("dram_energy_pj") * 1e-12, "cycles": pick("latency_cycles"),
            "ours_onchip": c.energy_j - c.dram_bytes / 2 * e_dram * 1e-12}


def per_layer(ours, ref):
    return np.array([spearman(ours[:, j], ref[:, j]) for j in range(ours.shape[1])])


def test_the_sweep_is_complete(sweep):
    assert len(sweep["accs"]) == 120 and len(sweep["names"]) == 6
    assert {a.dataflow for a in sweep["accs"]} == {"ws", "os", "rs"}


def test_latency_ranks_like_zigzag(sweep):
    rho = per_layer(sweep["ours"].cycles, sweep["cycles"])
    assert np.median(rho) >= 0.72, rho  # measured 0.77 (the 1.0 model: 0.77)
    assert 0.8 <= np.median(sweep["ours"].cycles / sweep["cycles"]) <= 1.25


def test_energy_scale_agrees(sweep):
    ratio = sweep["ours"].energy_j / sweep["energy"]
    assert 0.8 <= np.median(ratio) <= 1.25


def test_on_chip_energy_ranks_like_zigzag(sweep):
    # everything but the DRAM accesses: the array, RF and GLB structure of the two models
    rho = per_layer(sweep["ours_onchip"], sweep["energy"] - sweep["dram_energy"])
    assert np.median(rho) >= ONCHIP_BAR, rho


def test_energy_ranks_like_zigzag(sweep):
    # all three dataflows together; measured 0.68 (0.70 with the 1.0 model): what limits it is the
    # DRAM traffic of ZigZag's whole-loop mappings, see experiments/results/validate-zigzag.md
    rho = per_layer(sweep["ours"].energy_j, sweep["energy"])
    assert np.median(rho) >= ENERGY_BAR, rho


def test_ws_energy_ranks_like_zigzag(sweep):
    # within weight-stationary designs, where what the RF holds (filters x channels per PE) and
    # partial-sum width decide the on-chip traffic: measured 0.93 (the 1.0 model: 0.78)
    idx = [i for i, a in enumerate(sweep["accs"]) if a.dataflow == "ws"]
    rho = per_layer(sweep["ours"].energy_j[idx], sweep["energy"][idx])
    assert np.median(rho) >= 0.85, rho


ENERGY_BAR = 0.62
ONCHIP_BAR = 0.58  # measured 0.65
