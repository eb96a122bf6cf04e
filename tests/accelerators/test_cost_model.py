"""Tests of the analytical cost model: hand-worked examples, physical bounds, golden numbers."""

import numpy as np
import pytest

from accelerators import (Accelerator, ConfigError, Layer, Unrolling, get_accelerator, get_hardware_space,
                          list_accelerators, list_dataflows)
from accelerators import cost_model
from accelerators.cost_model import AnalyticalModel, evaluate, explain
from accelerators.networks import get_workload, list_workloads
from accelerators.technology import DEFAULT_TECH, ZIGZAG_TECH
from accelerators.workload import conv, depthwise, linear

FAST_MEM = dict(dram_bw=1e6, glb_bw=1e6)  # make bandwidth irrelevant in hand-worked compute examples


def acc(pe_x, pe_y, df, rf=64, glb=108 * 1024, **kw):
    return Accelerator(pe_x=pe_x, pe_y=pe_y, rf_bytes=rf, glb_bytes=glb, dataflow=df, **kw)


# ---------------------------------------------------------------------------------------
# hand-worked examples, one per dataflow
# ---------------------------------------------------------------------------------------

def test_ws_pointwise_by_hand():
    # 1x1 conv, C=4 -> K=4 on a 2x2 map, on a 4x4 WS array: rows take the 4 input channels,
    # columns the 4 output channels, so each array step is one output pixel: 4 cycles.
    l = conv(4, 4, 1, 2)
    ex = explain(l, acc(4, 4, "ws", **FAST_MEM))
    assert ex.used_pes == 16
    assert ex.cycles["compute"] == 4
    assert ex.utilization == pytest.approx(1.0)
    # every weight is loaded once; the input stream is read once (one column fold);
    # every output is written once (one row fold, one filter tap)
    assert ex.accesses_words["glb"] == {"weights": 16, "inputs": 16, "outputs/psums": 16}
    assert ex.accesses_words["dram"] == {"weights": 16, "inputs": 16, "outputs": 16}
    assert ex.bound == "compute"


def test_os_conv_by_hand():
    # 3x3 conv C=2 -> K=2 with a 4x4 output on a 4x4 OS array: one PE per output pixel,
    # each accumulates K * C * R * S = 2 * 2 * 9 = 36 MACs sequentially.
    l = conv(2, 2, 3, 4)
    ex = explain(l, acc(4, 4, "os", **FAST_MEM))
    assert ex.spatial["out_rows"] == 4 and ex.spatial["out_cols"] == 4
    assert ex.cycles["compute"] == 36
    assert ex.utilization == pytest.approx(l.macs / (36 * 16))
    assert ex.utilization == pytest.approx(1.0)
    # outputs stay in the PEs: written to the buffer exactly once
    assert ex.accesses_words["glb"]["outputs/psums"] == l.output_elems


def test_rs_conv_by_hand():
    # 3x3 conv, 1 -> 1 channel, 4x4 output on a 3-row x 4-column RS array: rows take the
    # 3 filter rows, columns the 4 output rows; each PE runs a 1-D conv of S=3 taps over
    # Q=4 outputs: 12 cycles, all 12 PEs busy.
    l = conv(1, 1, 3, 4)
    ex = explain(l, acc(4, 3, "rs", **FAST_MEM))
    assert ex.spatial["filter_rows"] == 3 and ex.spatial["out_rows"] == 4
    assert ex.used_pes == 12
    assert ex.cycles["compute"] == 12
    assert ex.utilization == pytest.approx(1.0)


def test_depthwise_underutilises_weight_stationary():
    # The classic interplay: a depthwise layer has one input channel per output channel, so a
    # WS array (rows = C', cols = K') can only use its diagonal; RS/OS keep the array busy.
    l = depthwise(64, 3, 28)
    ws, rs, os_ = (evaluate([l], [acc(16, 16, df, **FAST_MEM)]) for df in ("ws", "rs", "os"))
    assert ws.utilization[0, 0] == pytest.approx(16 / 256)
    assert rs.utilization[0, 0] > 0.5 and os_.utilization[0, 0] > 0.5
    assert ws.latency_s[0, 0] > 5 * rs.latency_s[0, 0]


def test_layer_smaller_than_array_is_underutilised():
    l = conv(8, 8, 1, 4)  # 8 input channels on 32 rows
    c = evaluate([l], [acc(32, 32, "ws", **FAST_MEM)])
    assert c.utilization[0, 0] == pytest.approx((8 * 8) / (32 * 32))


def test_rf_size_matters_for_row_stationary():
    # A 7-tap filter row does not fit an 8-word RF (needs 2 S + 1 = 15 words): the row is split
    # and partial sums travel more.  A bigger RF holds several channels, but every access to it
    # costs more (per-access energy grows with capacity), so RF size is a real trade-off.
    l = conv(32, 64, 7, 16)
    small, mid, big = (acc(12, 12, "rs", rf=rf) for rf in (16, 64, 512))
    e_small, e_mid, e_big = evaluate([l], [small, mid, big]).energy_j[:, 0]
    ex_small, ex_mid, ex_big = (explain(l, a) for a in (small, mid, big))
    assert ex_small.rf_allocation["filter/row splits"] == 3
    assert ex_mid.rf_allocation["filter/row splits"] == 1
    assert e_mid < e_small
    assert ex_big.rf_allocation["channels per PE"] > ex_mid.rf_allocation["channels per PE"]
    assert ex_big.accesses_words["glb"]["outputs/psums"] < ex_mid.accesses_words["glb"]["outputs/psums"]
    assert ex_big.energy_pj["rf"] > ex_mid.energy_pj["rf"]


# ---------------------------------------------------------------------------------------
# physical bounds over every built-in workload and accelerator
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def priced():
    accs = [get_accelerator(n) for n in list_accelerators()]
    return {w: (get_workload(w), accs, evaluate(get_workload(w), accs)) for w in list_workloads()}


@pytest.mark.parametrize("workload", list_workloads())
def test_physical_bounds(priced, workload):
    layers, accs, c = priced[workload]
    macs = np.array([l.macs for l in layers], dtype=float)
    for j, a in enumerate(accs):
        assert np.all(c.latency_s[j] >= macs / (a.num_pes * a.clock_hz) * (1 - 1e-12)), a.name
        assert np.all(c.energy_j[j] >= macs * DEFAULT_TECH.e_mac(a.word_bits) * 1e-12), a.name
        once = np.array([l.weight_elems + l.input_elems + l.output_elems for l in layers]) * a.word_bytes
        assert np.all(c.dram_bytes[j] >= once * (1 - 1e-12)), a.name
        assert np.all((c.utilization[j] > 0) & (c.utilization[j] <= 1 + 1e-12)), a.name
        assert np.all(np.isfinite(c.latency_s[j])) and np.all(np.isfinite(c.energy_j[j]))
    assert np.all(c.area_mm2 > 0)


@pytest.mark.parametrize("workload", list_workloads())
@pytest.mark.parametrize("dataflow", list_dataflows())
def test_physical_bounds_every_dataflow(workload, dataflow):
    layers = get_workload(workload)
    accs = [acc(16, 16, dataflow), acc(12, 14, dataflow, rf=512), acc(32, 8, dataflow, rf=16, word_bits=8)]
    c = evaluate(layers, accs)
    macs = np.array([l.macs for l in layers], dtype=float)
    for j, a in enumerate(accs):
        assert np.all(c.latency_s[j] >= macs / (a.num_pes * a.clock_hz) * (1 - 1e-12))
        assert np.all(c.energy_j[j] >= macs * DEFAULT_TECH.e_mac(a.word_bits) * 1e-12)
        assert np.all((c.utilization[j] > 0) & (c.utilization[j] <= 1))


@pytest.mark.parametrize("workload", list_workloads())
@pytest.mark.parametrize("dataflow", list_dataflows())
def test_bigger_global_buffer_never_increases_dram_traffic(workload, dataflow):
    layers = get_workload(workload)
    sizes = [16, 32, 64, 108, 256, 1024]
    accs = [acc(16, 16, dataflow, glb=k * 1024) for k in sizes]
    # The least DRAM traffic any mapping achieves can only fall as the buffer grows (every
    # mapping that fits a small buffer fits a bigger one).  Energy-optimal mappings may trade a
    # little DRAM traffic for fewer accesses to a bigger, costlier buffer, so this is a bound
    # on the DRAM-optimal mapping (Timeloop's "last-level accesses" metric).
    d = evaluate(layers, accs, mapping_objective="dram").dram_bytes
    assert np.all(np.diff(d, axis=0) <= 1e-9 * d[:-1])
    # and the DRAM-optimal mapping is never worse on DRAM than the energy-optimal one
    assert np.all(d <= evaluate(layers, accs, mapping_objective="energy").dram_bytes * (1 + 1e-12))


def test_duplicate_layers_cost_the_same_and_order_is_kept():
    a, b = conv(16, 32, 3, 8, name="a"), conv(32, 32, 3, 8, name="b")
    c = evaluate([a, b, a], [get_accelerator("eyeriss")])
    assert c.latency_s.shape == (1, 3)
    assert c.latency_s[0, 0] == c.latency_s[0, 2] and c.energy_j[0, 0] == c.energy_j[0, 2]
    assert c.latency_s[0, 1] != c.latency_s[0, 0]


def test_vectorised_equals_one_by_one():
    layers = get_workload("resnet18")
    accs = get_hardware_space("default").sample(7, rng=3)
    batch = evaluate(layers, accs)
    for j, a in enumerate(accs):
        single = evaluate(layers, [a])
        np.testing.assert_allclose(batch.latency_s[j], single.latency_s[0])
        np.testing.assert_allclose(batch.energy_j[j], single.energy_j[0])


def test_mapping_objective_selects():
    layers = get_workload("mobilenetv2")
    a = [get_accelerator("eyeriss")]
    by_energy = evaluate(layers, a, mapping_objective="energy")
    by_latency = evaluate(layers, a, mapping_objective="latency")
    assert by_energy.energy_total_j[0] <= by_latency.energy_total_j[0] * (1 + 1e-12)
    assert by_latency.latency_total_s[0] <= by_energy.latency_total_s[0] * (1 + 1e-12)


def test_fc_layer_is_memory_bound_on_eyeriss():
    ex = explain(linear(9216, 4096), get_accelerator("eyeriss"))
    assert ex.bound == "dram-bandwidth"
    assert ex.accesses_words["dram"]["weights"] == 9216 * 4096


def test_network_metrics():
    c = evaluate(get_workload("resnet18"), [get_accelerator("eyeriss"), get_accelerator("tpu-like")])
    np.testing.assert_allclose(c.edap, c.energy_total_j * c.latency_total_s * c.area_mm2)
    np.testing.assert_allclose(c.metric("fps"), 1 / c.latency_total_s)
    with pytest.raises(ConfigError, match="known metrics"):
        c.metric("speed")


# ---------------------------------------------------------------------------------------
# the structure shared with ZigZag: multicast, what the RF buys, partial-sum width, RF reads
# ---------------------------------------------------------------------------------------

PW = conv(16, 96, 1, 112, name="pw")  # MobileNetV2's features.2 expansion: 1x1, 16 -> 96 on 112 x 112


def test_multicast_one_glb_read_feeds_a_row_of_pes():
    # WS sends each input down the array once per fold of s_k output channels: doubling the
    # columns halves the input reads from the GLB (one read, s_k receiving PEs)
    l = conv(64, 64, 3, 28)
    narrow, wide = (explain(l, acc(x, 16, "ws", rf=16, **FAST_MEM)) for x in (8, 16))
    assert narrow.spatial["out_channels"] == 8 and wide.spatial["out_channels"] == 16
    assert narrow.accesses_words["glb"]["inputs"] == 2 * wide.accesses_words["glb"]["inputs"]
    assert wide.reuse["PEs fed per GLB input read (multicast)"] == pytest.approx(16)


def test_a_larger_rf_buys_temporal_reuse_in_ws():
    # 32 B holds 3 filters x 2 channels of the 1x1 layer (and their 2-word partial sums); 128 B
    # holds all 12 x 2 of a PE's weights: each input serves 12 filters and the weights are loaded
    # once for the layer instead of once per output-row tile
    small, big = (explain(PW, acc(8, 8, "ws", rf=rf), tech=ZIGZAG_TECH) for rf in (32, 128))
    assert (small.rf_allocation["filters per PE"], small.rf_allocation["channels per PE"]) == (3, 2)
    assert (big.rf_allocation["filters per PE"], big.rf_allocation["channels per PE"]) == (12, 2)
    assert big.accesses_words["glb"]["weights"] == PW.weight_elems
    assert small.accesses_words["glb"]["weights"] > 10 * PW.weight_elems
    assert small.accesses_words["glb"]["inputs"] == 4 * big.accesses_words["glb"]["inputs"]
    assert big.energy_pj["glb"] < small.energy_pj["glb"]


def test_os_keeps_input_chunks_or_partial_sums_whichever_is_cheaper():
    # a 1x1 layer with 16 input channels: a 128 B RF holds a pixel's 16 inputs, which then serve
    # every output channel; a 32 B RF is better used for 7 partial sums (2 words each)
    small, big = (explain(PW, acc(8, 8, "os", rf=rf), tech=ZIGZAG_TECH) for rf in (32, 128))
    assert small.rf_allocation["output partial sums per PE"] == 7 and small.rf_allocation["inputs per PE"] == 1
    assert big.rf_allocation["inputs per PE"] == 16 and big.rf_allocation["output partial sums per PE"] == 1
    assert big.accesses_words["glb"]["inputs"] < small.accesses_words["glb"]["inputs"] / 10


def test_partial_sums_are_wider_than_words():
    import dataclasses

    narrow = dataclasses.replace(ZIGZAG_TECH, psum_bits_factor=1)
    l = conv(512, 512, 3, 7, name="layer4.1.conv1")
    a = acc(8, 8, "ws", rf=32, glb=64 * 1024)
    wide_x, narrow_x = explain(l, a, tech=ZIGZAG_TECH), explain(l, a, tech=narrow)
    assert wide_x.reuse["partial-sum bits"] == 32 and narrow_x.reuse["partial-sum bits"] == 16
    # per MAC the RF reads and writes a partial sum: 1 + 1 + 2 x 2 words instead of 1 + 1 + 2
    assert wide_x.reuse["RF reads per MAC (word-equivalents)"] == pytest.approx(6.0)
    assert narrow_x.reuse["RF reads per MAC (word-equivalents)"] == pytest.approx(4.0)
    # 32-bit partial sums of 256 channels x 49 pixels no longer leave room for every input channel
    # in a 64 KiB GLB: the GLB tile shrinks and DRAM traffic grows
    assert wide_x.dram_bytes > narrow_x.dram_bytes
    assert wide_x.energy_j > narrow_x.energy_j


def test_partial_sum_traffic_is_charged_at_its_width():
    # the GLB's energy is its words, partial sums counted twice (2 words each), times its per-word energy
    l, a = conv(64, 64, 3, 14), acc(8, 8, "ws", rf=128, glb=1024 * 1024)
    ex = explain(l, a, tech=ZIGZAG_TECH)
    g, d = ex.accesses_words["glb"], ex.accesses_words["dram"]
    assert g["outputs/psums"] > l.output_elems  # partial sums bounce through the GLB
    ps_dram = 2 if d["outputs"] > l.output_elems else 1
    words = g["weights"] + g["inputs"] + 2 * g["outputs/psums"] + d["weights"] + d["inputs"] + ps_dram * d["outputs"]
    assert ex.energy_pj["glb"] == pytest.approx(words * float(ZIGZAG_TECH.e_glb(a.glb_bytes, 16)), rel=1e-9)


def test_rf_reads_count_the_input_once_per_filter_it_serves():
    ex = explain(conv(64, 64, 3, 14), get_accelerator("eyeriss"))
    f = ex.rf_allocation["filters per PE"]
    assert f > 1
    assert ex.reuse["RF reads per MAC (word-equivalents)"] == pytest.approx(1 + 1 / f + 2)


# ---------------------------------------------------------------------------------------
# golden numbers (regression pins of the model's own output; bump COST_MODEL_VERSION to change)
# ---------------------------------------------------------------------------------------

# Model version 2.0 re-pinned these: latency is unchanged; energy is 12-13 % lower in every layer
# because a PE now reads an input from its RF once per f filters it serves (the input stays in
# its operand register), not once per MAC: RS reads 1 + 1/f + 2 words per MAC instead of 4
# (f = 11..20 filters per PE here).  Partial sums are one word wide in the default technology,
# so the partial-sum width changes nothing here.
ALEXNET_EYERISS = {  # layer: (latency ms, energy mJ), batch 1, mapping objective edp
    "conv1": (3.4848, 0.724495),  # version 1.0: 0.825419
    "conv2": (8.2944, 1.37598),  # 1.58116
    "conv3": (4.79232, 1.06646),  # 1.20921
    "conv4": (3.59424, 0.803687),  # 0.910752
    "conv5": (2.39616, 0.541292),  # 0.612668
}

# New in 2.0: the zigzag technology (2x partial sums, ZigZag's per-access energies) on a 16x16
# array with a 128 B RF and a 64 KiB GLB, which exercises every new term: partial-sum width in
# the RF, the NoC, the GLB tile and DRAM; WS filters x channels per PE; OS input chunks.
ZIGZAG_PRESET = {  # (layer, dataflow): (latency ms, energy mJ)
    ("layer1.0.conv1", "ws"): (2.25792, 0.325057),
    ("features.2.conv.0.0", "ws"): (0.87904, 0.271302),
    ("layer1.0.conv1", "os"): (2.94912, 0.37669),
    ("features.2.conv.0.0", "os"): (0.88576, 0.279954),
    ("layer1.0.conv1", "rs"): (2.79552, 0.326538),
    ("features.2.conv.0.0", "rs"): (0.88576, 0.273196),
}


def test_golden_zigzag_preset():
    layers = {l.name: l for l in get_workload("resnet18") + get_workload("mobilenetv2")}
    for (name, df), (lat, en) in ZIGZAG_PRESET.items():
        a = acc(16, 16, df, rf=128, glb=64 * 1024)
        c = evaluate([layers[name]], [a], tech=ZIGZAG_TECH)
        assert c.latency_s[0, 0] * 1e3 == pytest.approx(lat, rel=1e-5), (name, df)
        assert c.energy_j[0, 0] * 1e3 == pytest.approx(en, rel=1e-5), (name, df)


def test_golden_alexnet_on_eyeriss():
    layers = [l for l in get_workload("alexnet") if l.name in ALEXNET_EYERISS]
    assert [l.name for l in layers] == list(ALEXNET_EYERISS)
    c = evaluate(layers, [get_accelerator("eyeriss")])
    for i, l in enumerate(layers):
        lat, en = ALEXNET_EYERISS[l.name]
        assert c.latency_s[0, i] * 1e3 == pytest.approx(lat, rel=1e-5), l.name
        assert c.energy_j[0, i] * 1e3 == pytest.approx(en, rel=1e-5), l.name


def test_golden_areas():
    c = evaluate([conv(16, 16, 3, 8)], [get_accelerator(n) for n in ("eyeriss", "dance-ws", "dance-rs")])
    # PEs x (MAC + RF) x 1.15 + GLB
    exp = [168 * (0.005 + 520 / 1024 * 0.035) * 1.15 + 108 * 0.012,
           256 * (0.005 + 16 / 1024 * 0.035) * 1.15 + 108 * 0.012,
           96 * (0.005 + 32 / 1024 * 0.035) * 1.15 + 108 * 0.012]
    np.testing.assert_allclose(c.area_mm2, exp, rtol=1e-9)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------

def test_bad_objective():
    with pytest.raises(ConfigError, match="allowed values"):
        AnalyticalModel(mapping_objective="speed")


def test_empty_inputs():
    with pytest.raises(ConfigError, match="empty"):
        evaluate([], [get_accelerator("eyeriss")])
    with pytest.raises(ConfigError, match="empty"):
        evaluate([conv(3, 8, 3, 8)], [])


# ---------------------------------------------------------------------------------------
# int64 safety at the bounds of Layer and Accelerator (see accelerators/workload.py)
# ---------------------------------------------------------------------------------------

# Each shape sits at a bound where one of the model's largest products peaks.
EXTREME_LAYERS = [
    Layer("conv", 1, 8192, 1, 128, 1, 1024, 1024, 32),  # RS input deliveries: tall kernel, max stride, 2^40 MACs
    Layer("conv", 1, 1024, 1024, 1, 1, 1024, 1024, 32),  # OS input windows: 1x1 kernel, max stride, ~2^40 input
    Layer("conv", 2 ** 20, 1024, 1024, 1, 1, 1, 1, 32),  # batched 1x1 on a 1x1 map: batch becomes strided rows
    Layer("linear", 2 ** 16, 2 ** 4, 2 ** 20, 1, 1, 1, 1),  # a 2^40-MAC matrix product
    Layer("conv", 1, 64, 64, 128, 128, 128, 128),  # the largest kernel
    Layer("depthwise", 1, 2 ** 24, 2 ** 24, 3, 3, 64, 64, 1, 2 ** 24),  # 2^24 groups
]
EXTREME_ACCS = [Accelerator(pe_x=x, pe_y=y, rf_bytes=rf, glb_bytes=2 ** 34, dataflow=df, clock_hz=clk,
                            dram_bw=bw, glb_bw=bw, word_bits=wb)
                for df in ("ws", "os", "rs")
                for (x, y) in ((1, 1), (4096, 4096), (4096, 1), (1, 4096), (14, 12))
                for rf, wb, clk, bw in ((8, 16, 1e3, 1e-3), (2 ** 20, 4, 1e11, 1e9), (12, 32, 2e8, 16.0))]


def test_no_int64_overflow_at_the_bounds(monkeypatch):
    # The same model in float64, which cannot wrap around, must agree with the int64 one: an
    # overflow would flip a sign or lose 2^64 somewhere (or trip the physical-result guard).
    for l in EXTREME_LAYERS:
        assert l.macs <= 2 ** 40 and l.input_elems <= 2 ** 40
    exact = evaluate(EXTREME_LAYERS, EXTREME_ACCS, mapping_objective="edp")
    for k in ("latency_s", "energy_j"):
        assert np.all(np.isfinite(getattr(exact, k))) and np.all(getattr(exact, k) > 0)
    assert np.all((exact.utilization > 0) & (exact.utilization <= 1))

    layer_matrix, acc_arrays = cost_model._layer_matrix, cost_model._acc_arrays

    def float_layers(layers):
        lm, inverse = layer_matrix(layers)
        return lm.astype(np.float64), inverse

    def float_accs(accs):
        a = acc_arrays(accs)
        return {k: (v.astype(np.float64) if k in ("pe_x", "pe_y", "rf_bytes", "glb_bytes", "word_bits", "rf_words",
                                                  "glb_words") else v) for k, v in a.items()}

    monkeypatch.setattr(cost_model, "_layer_matrix", float_layers)
    monkeypatch.setattr(cost_model, "_acc_arrays", float_accs)
    monkeypatch.setattr(cost_model, "_unrolling", lambda df, sp, pes: Unrolling(*sp))  # float factors
    shadow = evaluate(EXTREME_LAYERS, EXTREME_ACCS, mapping_objective="edp")
    # near-ties may pick another mapping in float; the objective they minimise must agree
    np.testing.assert_allclose(exact.energy_j * exact.latency_s, shadow.energy_j * shadow.latency_s, rtol=1e-6)


def test_explain_renders():
    text = str(explain(get_workload("resnet18")[0], get_accelerator("eyeriss")))
    for word in ("spatial", "RF", "GLB tile", "DRAM loops", "energy", "bound"):
        assert word in text
