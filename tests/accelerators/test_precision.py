"""Precision in the cost model: the schemes, bits in capacity and traffic, physical bounds, hand-worked examples."""

import dataclasses

import numpy as np
import pytest

from accelerators import (Accelerator, ConfigError, HardwareSpace, Layer, get_accelerator, get_hardware_space,
                          get_precision, list_dataflows, list_precisions)
from accelerators import technology as T
from accelerators.cost_model import evaluate, explain
from accelerators.hardware import load_accelerator, save_accelerator
from accelerators.networks import get_workload
from accelerators.technology import DEFAULT_TECH, ZIGZAG_TECH
from accelerators.workload import conv

FAST_MEM = dict(dram_bw=1e6, glb_bw=1e6)
SCHEMES = ("fixed", "bit-serial", "loom", "bit-fused")


def acc(pe_x, pe_y, df, rf=64, glb=108 * 1024, **kw):
    return Accelerator(pe_x=pe_x, pe_y=pe_y, rf_bytes=rf, glb_bytes=glb, dataflow=df, **kw)


def bits(layers, w=None, a=None, o=None):
    return [dataclasses.replace(l, weight_bits=w, act_bits=a, out_bits=o) for l in layers]


def peak(scheme, wb, ab, word):
    """MACs per PE per cycle by the scheme's published rule, written out independently of the model."""
    r = lambda b: 2 if b <= 2 else 4 if b <= 4 else 8 if b <= 8 else 16
    lane = lambda b: 8 // r(b) if r(b) <= 8 else 8 / r(b)
    return {"fixed": 1.0, "bit-serial": word / ab, "loom": word * word / (wb * ab),
            "bit-fused": lane(wb) * lane(ab)}[scheme]


# ---------------------------------------------------------------------------------------
# the field and its registry
# ---------------------------------------------------------------------------------------

def test_builtin_schemes_are_registered_in_order():
    assert list_precisions()[:4] == list(SCHEMES)
    for name in SCHEMES:
        assert get_precision(name).name == name


def test_default_precision_leaves_records_and_files_unchanged(tmp_path):
    e = get_accelerator("eyeriss")
    assert e.precision == "fixed" and "precision" not in e.to_dict()
    assert e == e.with_(precision="FIXED") and e != e.with_(precision="bit-fused")
    bf = e.with_(precision="bit-fused")
    assert bf.to_dict()["precision"] == "bit-fused" and "bit-fused" in bf.short()
    save_accelerator(tmp_path / "bf.yaml", bf)
    assert load_accelerator(tmp_path / "bf.yaml") == bf


def test_fixed_accelerator_without_bits_prices_as_before():
    # the same numbers whether the field is spelled out or not (the golden tests pin the values)
    layers = get_workload("resnet18")
    a = evaluate(layers, [get_accelerator("eyeriss")])
    b = evaluate(layers, [get_accelerator("eyeriss").with_(precision="fixed")])
    assert np.array_equal(a.latency_s, b.latency_s) and np.array_equal(a.energy_j, b.energy_j)
    assert np.array_equal(a.area_mm2, b.area_mm2)


def test_layer_bits_equal_to_the_word_price_as_no_bits():
    layers = get_workload("resnet18")
    for name in ("eyeriss", "tpu-like"):
        a = get_accelerator(name)
        wb = a.word_bits
        plain, explicit = evaluate(layers, [a]), evaluate(bits(layers, wb, wb, wb), [a])
        np.testing.assert_allclose(explicit.latency_s, plain.latency_s, rtol=1e-12)
        np.testing.assert_allclose(explicit.energy_j, plain.energy_j, rtol=1e-12)
        np.testing.assert_allclose(explicit.dram_bytes, plain.dram_bytes, rtol=1e-12)


# ---------------------------------------------------------------------------------------
# hand-worked examples, one per scheme
# ---------------------------------------------------------------------------------------
# A 1x1 conv C=4 -> K=4 on a 2x2 map on a 4x4 WS array (as test_ws_pointwise_by_hand): 64 MACs,
# 16 weights, 16 inputs, 16 outputs, 4 array steps of 16 PEs, all of it fitting the GLB once.

HAND = conv(4, 4, 1, 2)
FU = 3673.5 / 1627.5  # BitFusion's synthesis: dynamic power of a fusion unit / a fixed 8-bit PE (4x4 array)


@pytest.mark.parametrize("scheme,w,a,cycles,mac_pj", [
    # fixed 16-bit MAC: 4 cycles whatever the bits; a 16-bit MAC is 1 pJ
    ("fixed", 4, 4, 4, 1.0),
    # Stripes: cycles x a/16 = 4 x 4/16 = 1; 1.92/1.57 x 1 pJ x 4/16 per MAC
    ("bit-serial", 8, 4, 1, 1.92 / 1.57 * 4 / 16),
    # Loom: cycles x w a / 256 = 4 x 32 / 256 = 0.5; 4.38/3.54 x 1 pJ x 32/256 per MAC
    ("loom", 4, 8, 0.5, 4.38 / 3.54 * 32 / 256),
    # BitFusion: 2-bit weights x 4-bit inputs fuse floor(8/2) floor(8/4) = 8 MACs per cycle: 4 / 8 = 0.5;
    # an 8-bit MAC is 1 pJ x (8/16)^2 = 0.25 pJ, a fusion unit FU = 2.26x that per cycle, over 8 MACs
    ("bit-fused", 2, 4, 0.5, 0.25 * FU / 8),
    # 3 bits round up to 4, 5 to 8: floor(8/4) floor(8/8) = 2 MACs per cycle
    ("bit-fused", 3, 5, 2, 0.25 * FU / 2),
    # 16-bit operands: temporal fusion, 4x the cycles of 8 x 8: 16 cycles, 4 x 0.25 FU pJ per MAC
    ("bit-fused", 16, 16, 16, 0.25 * FU * 4),
])
def test_scheme_by_hand(scheme, w, a, cycles, mac_pj):
    ex = explain(bits([HAND], w, a)[0], acc(4, 4, "ws", precision=scheme, **FAST_MEM))
    assert ex.used_pes == 16
    assert ex.cycles["compute"] == pytest.approx(cycles)
    assert ex.energy_pj["mac"] == pytest.approx(64 * mac_pj)
    assert ex.precision["MACs per PE per cycle (speed-up over one MAC)"] == pytest.approx(4 / cycles)
    assert ex.utilization == pytest.approx(1.0)
    # DRAM: 16 weights at w bits, 16 inputs at a bits, 16 outputs at the 16-bit word, each moved once;
    # DRAM energy is per bit: 200 pJ per 16-bit word = 12.5 pJ per bit
    dram_bits = 16 * w + 16 * a + 16 * 16
    assert ex.dram_bytes == pytest.approx(dram_bits / 8)
    assert ex.energy_pj["dram"] == pytest.approx(dram_bits * 12.5)
    assert ex.accesses_words["dram"] == {"weights": 16, "inputs": 16, "outputs": 16}


def test_fixed_scheme_stores_narrow_bits_but_computes_at_full_width():
    l8, l4 = bits([HAND], 8, 8, 8)[0], bits([HAND], 4, 4, 4)[0]
    a = acc(4, 4, "ws", **FAST_MEM)
    e8, e4 = explain(l8, a), explain(l4, a)
    assert e8.cycles["compute"] == e4.cycles["compute"] == 4  # no speed-up
    assert e8.energy_pj["mac"] == e4.energy_pj["mac"] == pytest.approx(64 * 1.0)  # a full 16-bit MAC
    assert e4.dram_bytes == pytest.approx(e8.dram_bytes / 2)  # half the bits moved
    assert e4.energy_pj["dram"] == pytest.approx(e8.energy_pj["dram"] / 2)
    assert e4.energy_pj["glb"] == pytest.approx(e8.energy_pj["glb"] / 2)


def test_half_the_bits_take_half_the_rf():
    # WS on a 3x3 conv with a 64 B RF (32 words at 16 bits): a PE holds f filters x q channels of
    # 9 taps, an input and f partial sums.  At 16 bits: f (9 q + 1) + 1 <= 32 words; at 8-bit weights
    # and inputs (16-bit partial sums) twice as many taps fit.
    l = conv(64, 64, 3, 8)
    a = acc(8, 8, "ws", rf=64, **FAST_MEM)
    r16 = explain(l, a).rf_allocation
    r8 = explain(bits([l], 8, 8)[0], a).rf_allocation
    assert r16["filters per PE"] * r16["channels per PE"] == 3  # f q = 3 at q = 1: 3 (9 + 1) + 1 = 31 <= 32
    taps16 = r16["filters per PE"] * r16["channels per PE"]
    taps8 = r8["filters per PE"] * r8["channels per PE"]
    assert taps8 >= 2 * taps16 - 1 and taps8 > taps16


def test_partial_sums_at_out_bits():
    # out_bits sets the width of partial sums and outputs; without it, psum_bits_factor x the word
    l = conv(64, 64, 3, 8)
    a = acc(8, 8, "ws", rf=64, **FAST_MEM)
    assert explain(bits([l], 8, 8, 24)[0], a).reuse["partial-sum bits"] == 24
    assert explain(bits([l], 8, 8)[0], a).reuse["partial-sum bits"] == 16
    assert explain(bits([l], 8, 8)[0], a, tech=ZIGZAG_TECH).reuse["partial-sum bits"] == 32
    e24, e8 = explain(bits([l], 8, 8, 24)[0], a), explain(bits([l], 8, 8, 8)[0], a)
    assert e24.dram_bytes > e8.dram_bytes


def test_explain_shows_the_precision_terms():
    ex = explain(bits([HAND], 2, 4)[0], acc(4, 4, "ws", precision="bit-fused"))
    text = str(ex)
    assert "precision: bit-fused" in text and "8 MACs per PE per cycle" in text and "fused at (2, 4)" in text
    assert ex.precision["bits"] == {"weights": 2, "inputs": 4, "outputs": 16, "partial sums": 16}


# ---------------------------------------------------------------------------------------
# physical bounds at every scheme and precision
# ---------------------------------------------------------------------------------------

PRECISIONS_PRICED = [(8, 8), (4, 4), (2, 8), (8, 2), (2, 2), (16, 16), (3, 5), (1, 6)]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dataflow", list_dataflows()[:3])
def test_physical_bounds_with_precision(scheme, dataflow):
    layers = get_workload("mobilenetv2-cifar")[:12] + get_workload("resnet18")[-3:]
    accs = [acc(16, 16, dataflow, precision=scheme), acc(12, 14, dataflow, rf=512, precision=scheme),
            acc(8, 8, dataflow, rf=16, glb=32 * 1024, precision=scheme, dram_bw=4.0)]
    for w, a in PRECISIONS_PRICED:
        c = evaluate(bits(layers, w, a), accs)
        macs = np.array([l.macs for l in layers], dtype=float)
        for j, x in enumerate(accs):
            thr = peak(scheme, w, a, x.word_bits)
            e_mac = float(get_precision(scheme).mac_energy(w, a, x.word_bits, DEFAULT_TECH))
            assert np.all(c.latency_s[j] >= macs / (x.num_pes * x.clock_hz * thr) * (1 - 1e-12)), (scheme, w, a)
            assert np.all(c.energy_j[j] >= macs * e_mac * 1e-12), (scheme, w, a)
            once = np.array([l.weight_elems * w + l.input_elems * a + l.output_elems * x.word_bits
                             for l in layers]) / 8.0
            assert np.all(c.dram_bytes[j] >= once * (1 - 1e-12)), (scheme, w, a)
            assert np.all((c.utilization[j] > 0) & (c.utilization[j] <= 1 + 1e-12)), (scheme, w, a)


def test_the_bound_is_tight_for_a_compute_bound_layer():
    # a layer that fills the array exactly reaches the scheme's peak: latency == the bound
    l = conv(16, 16, 1, 8)
    for scheme in SCHEMES:
        for w, a in ((8, 8), (4, 4), (2, 4)):
            x = acc(16, 16, "ws", precision=scheme, **FAST_MEM)
            c = evaluate(bits([l], w, a), [x])
            bound = l.macs / (x.num_pes * x.clock_hz * peak(scheme, w, a, x.word_bits))
            assert c.latency_s[0, 0] == pytest.approx(bound), (scheme, w, a)


def test_lower_bits_never_cost_more_on_a_scalable_scheme():
    layers = get_workload("resnet18")
    for scheme in ("bit-serial", "loom", "bit-fused"):
        x = get_accelerator("eyeriss").with_(precision=scheme)
        c8, c4, c2 = (evaluate(bits(layers, b, b), [x]) for b in (8, 4, 2))
        assert c4.latency_total_s[0] <= c8.latency_total_s[0] and c2.latency_total_s[0] <= c4.latency_total_s[0]
        assert c4.energy_total_j[0] < c8.energy_total_j[0] and c2.energy_total_j[0] < c4.energy_total_j[0]


def test_area_of_the_scalable_mac_units():
    e = get_accelerator("eyeriss")
    rf = e.rf_bytes / 1024 * DEFAULT_TECH.a_rf_mm2_per_kb
    glb = e.glb_bytes / 1024 * DEFAULT_TECH.a_sram_mm2_per_kb
    mac = {"fixed": 0.005, "bit-serial": 0.005 * T.SERIAL_AREA_FACTOR, "loom": 0.005 * T.LOOM_AREA_FACTOR,
           "bit-fused": 0.005 / 4 * T.FUSED_AREA_FACTOR}
    for scheme, a_mac in mac.items():
        got = evaluate(get_workload("resnet18")[:1], [e.with_(precision=scheme)]).area_mm2[0]
        assert got == pytest.approx(168 * (a_mac + rf) * 1.15 + glb), scheme


# ---------------------------------------------------------------------------------------
# the precision-scalable hardware space
# ---------------------------------------------------------------------------------------

def test_precision_scalable_space_searches_the_scheme():
    s = get_hardware_space("precision-scalable")
    assert list(s.choices["precision"]) == list(SCHEMES)
    assert {"pe_x", "pe_y", "rf_bytes", "dataflow", "precision"} <= set(s.labels)
    accs = s.enumerate()
    c = evaluate(bits(get_workload("resnet18"), 4, 4), accs)
    best = accs[int(np.argmin(c.edap))]
    assert best.precision != "fixed"  # 4-bit layers: a scalable scheme wins the EDAP
    plain = evaluate(get_workload("resnet18"), accs)
    assert accs[int(np.argmin(plain.edap))].precision in SCHEMES


def test_hardware_space_yaml_accepts_precision(tmp_path):
    p = tmp_path / "hw.yaml"
    p.write_text("name: p\nchoices: {pe_x: [8, 16], precision: [fixed, bit-fused]}\n"
                 "fixed: {pe_y: 8, rf_bytes: 16, glb_bytes: 65536, dataflow: ws}\n")
    s = HardwareSpace.load(p)
    assert [a.precision for a in s.enumerate()] == ["fixed", "bit-fused", "fixed", "bit-fused"]
    fixed_only = HardwareSpace({"pe_x": [8, 16]}, {"pe_y": 8, "rf_bytes": 16, "glb_bytes": 65536, "dataflow": "ws"})
    assert "precision" not in fixed_only.to_dict()["fixed"]


def test_bit_fused_units_sum_their_products_before_accumulating():
    # HAND (1x1, 4 -> 4) at 2-bit weights and 4-bit inputs, 16-bit partial sums, 64 B RF: the unit is
    # 2 bits.  Per MAC a fixed PE reads the input (4 bits: 2 units) and reads and writes a partial
    # sum (2 x 8 units); its one weight stays in the PE.  18 units = 36 bits = 2.25 16-bit words.  A
    # fusion unit does 8 such MACs per cycle and adds them in its tree: the partial-sum part falls
    # to 16 / 8 = 2 units, 4 in all = 0.5 words.
    l = bits([HAND], 2, 4)[0]
    fixed = explain(l, acc(4, 4, "ws", **FAST_MEM))
    fused = explain(l, acc(4, 4, "ws", precision="bit-fused", **FAST_MEM))
    assert fixed.reuse["RF reads per MAC (word-equivalents)"] == pytest.approx(2.25)
    assert fused.reuse["RF reads per MAC (word-equivalents)"] == pytest.approx(0.5)
    # at 16-bit operands (temporal fusion, a quarter of a MAC per cycle) nothing is summed together
    l16 = bits([HAND], 16, 16)[0]
    f16 = explain(l16, acc(4, 4, "ws", precision="bit-fused", **FAST_MEM))
    assert f16.reuse["RF reads per MAC (word-equivalents)"] == explain(l16, acc(4, 4, "ws", **FAST_MEM)).reuse[
        "RF reads per MAC (word-equivalents)"]
