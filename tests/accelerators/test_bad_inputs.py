"""Hardening: every bad accelerator, hardware space, layer or workload is a one-line ConfigError naming the field.

No tracebacks, no silent nonsense: NaN, infinities, huge and tiny numbers, booleans, strings
for numbers and malformed structures, given as Python values and as YAML files.
"""

import math

import pytest

from accelerators import Accelerator, ConfigError, HardwareSpace, Layer, evaluate, get_accelerator
from accelerators.hardware import load_accelerator
from accelerators.workload import conv_output_size, load_workload

GOOD_ACC = dict(pe_x=16, pe_y=16, rf_bytes=16, glb_bytes=108 * 1024, dataflow="ws")
GOOD_FIXED = dict(pe_x=8, pe_y=8, rf_bytes=16, glb_bytes=65536, dataflow="ws")
GOOD_LAYER = dict(kind="conv", N=1, K=8, C=8, R=3, S=3, P=4, Q=4, stride=1, groups=1)


def one_line(exc: pytest.ExceptionInfo, *words: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


# ---- Accelerator ------------------------------------------------------------------------

ACC_CASES = [
    # field, value, words the message must contain
    ("pe_x", math.nan, ["pe_x", "1..4096"]),
    ("pe_x", math.inf, ["pe_x", "1..4096"]),
    ("pe_x", 1e20, ["pe_x", "1..4096"]),
    ("pe_x", 10 ** 400, ["pe_x", "1..4096"]),
    ("pe_x", 4097, ["pe_x", "1..4096"]),
    ("pe_x", True, ["pe_x", "positive integer"]),
    ("pe_x", "16", ["pe_x", "positive integer"]),
    ("pe_x", None, ["pe_x"]),
    ("pe_x", [16], ["pe_x"]),
    ("pe_y", -1, ["pe_y", "1..4096"]),
    ("pe_y", 7.5, ["pe_y", "positive integer"]),
    ("rf_bytes", 2 ** 21, ["rf_bytes", "1048576"]),
    ("rf_bytes", math.nan, ["rf_bytes"]),
    ("glb_bytes", 2 ** 35, ["glb_bytes", "17179869184"]),
    ("glb_bytes", -math.inf, ["glb_bytes"]),
    ("clock_hz", math.nan, ["clock_hz", "1e3..1e11"]),
    ("clock_hz", math.inf, ["clock_hz", "1e3..1e11"]),
    ("clock_hz", 1e-300, ["clock_hz", "1e3..1e11"]),
    ("clock_hz", 0, ["clock_hz", "positive number"]),
    ("clock_hz", 2e11, ["clock_hz", "1e3..1e11"]),
    ("clock_hz", True, ["clock_hz"]),
    ("clock_hz", "200MHz", ["clock_hz"]),
    ("dram_bw", math.inf, ["dram_bw", "1e-3..1e9"]),
    ("dram_bw", math.nan, ["dram_bw", "1e-3..1e9"]),
    ("dram_bw", -16.0, ["dram_bw", "1e-3..1e9"]),
    ("dram_bw", 1e-4, ["dram_bw", "1e-3..1e9"]),
    ("dram_bw", 1e10, ["dram_bw", "1e-3..1e9"]),
    ("glb_bw", math.inf, ["glb_bw", "bytes per cycle"]),
    ("glb_bw", {}, ["glb_bw"]),
    ("word_bits", math.nan, ["word_bits", "allowed values"]),
    ("word_bits", 12, ["word_bits", "allowed values"]),
    ("word_bits", True, ["word_bits"]),
    ("dataflow", "xs", ["dataflow", "allowed values"]),
    ("dataflow", 3, ["dataflow", "allowed values"]),
    ("dataflow", None, ["dataflow"]),
    ("name", 5, ["name", "string"]),
    ("precision", "bit-parallel", ["precision", "allowed values", "bit-fused"]),
    ("precision", 4, ["precision", "allowed values"]),
    ("precision", None, ["precision", "allowed values"]),
]


@pytest.mark.parametrize("field,value,words", ACC_CASES, ids=[f"{f}={v!r}"[:40] for f, v, _ in ACC_CASES])
def test_bad_accelerator_fields(field, value, words):
    with pytest.raises(ConfigError) as exc:
        Accelerator(**{**GOOD_ACC, field: value})
    one_line(exc, *words)
    with pytest.raises(ConfigError) as exc:
        Accelerator.from_dict({**GOOD_ACC, field: value}, where="my.yaml")
    one_line(exc, "my.yaml", *words)


@pytest.mark.parametrize("line,words", [
    ("pe_x: .nan", ["pe_x", "1..4096"]),
    ("clock_hz: .inf", ["clock_hz", "1e3..1e11"]),
    ("clock_hz: 1e-300", ["clock_hz"]),
    ("dram_bw: -.inf", ["dram_bw"]),
    ("pe_y: 1e20", ["pe_y"]),
    ("rf_bytes: [16, 32]", ["rf_bytes"]),
    ("glb_bytes: {a: 1}", ["glb_bytes"]),
    ("word_bits: yes", ["word_bits"]),
    ("precision: stripes", ["precision", "allowed values"]),
    ("precision: [fixed]", ["precision", "allowed values"]),
])
def test_bad_accelerator_yaml(tmp_path, line, words):
    key = line.split(":")[0]
    base = "\n".join(f"{k}: {v}" for k, v in GOOD_ACC.items() if k != key)
    p = tmp_path / "acc.yaml"
    p.write_text(base + "\n" + line + "\n")
    with pytest.raises(ConfigError) as exc:
        load_accelerator(p)
    one_line(exc, str(p), *words)


def test_accelerator_bounds_are_accepted_and_priced():
    # the extremes of every range are valid and price to finite, physical numbers
    accs = [Accelerator(pe_x=4096, pe_y=4096, rf_bytes=2 ** 20, glb_bytes=2 ** 34, dataflow="os", clock_hz=1e11,
                        dram_bw=1e9, glb_bw=1e9, word_bits=32),
            Accelerator(pe_x=1, pe_y=1, rf_bytes=6, glb_bytes=1024, dataflow="rs", clock_hz=1e3, dram_bw=1e-3,
                        glb_bw=1e-3, word_bits=16)]
    c = evaluate([Layer("conv", 1, 8, 8, 3, 3, 4, 4)], accs)
    assert (c.latency_s > 0).all() and (c.energy_j > 0).all() and (c.utilization <= 1).all()
    assert Accelerator(**{**GOOD_ACC, "dataflow": "WS"}).dataflow == "ws"


# ---- HardwareSpace ----------------------------------------------------------------------

SPACE_CASES = [
    # choices, fixed, words
    ({"pe_x": [8]}, [1, 2], ["'fixed' must be a mapping", "list"]),
    ({"pe_x": [8]}, "pe_y=8", ["'fixed' must be a mapping"]),
    ([1, 2], None, ["'choices' must be a mapping"]),
    ({"pe_x": [[8, 16]]}, GOOD_FIXED, ["pe_x", "not a single value"]),
    ({"pe_x": [8, [16]]}, GOOD_FIXED, ["pe_x", "not a single value"]),
    ({"pe_x": [{"a": 1}]}, GOOD_FIXED, ["pe_x", "not a single value"]),
    ({"pe_x": {"a": 1}}, GOOD_FIXED, ["pe_x", "non-empty list"]),
    ({"pe_x": "8,16"}, GOOD_FIXED, ["pe_x", "non-empty list"]),
    ({"pe_x": [True, 8]}, GOOD_FIXED, ["pe_x", "positive integer"]),
    ({"pe_x": [8, math.nan]}, GOOD_FIXED, ["pe_x", "1..4096"]),
    ({"pe_x": [None]}, GOOD_FIXED, ["pe_x", "not a single value"]),
    ({"pe_x": [8, 5000]}, GOOD_FIXED, ["pe_x", "1..4096"]),
    ({"clock_hz": [math.inf]}, GOOD_FIXED, ["clock_hz", "1e3..1e11"]),
    ({"clock_hz": [1e-300]}, GOOD_FIXED, ["clock_hz", "1e3..1e11"]),
    ({"dram_bw": [0]}, GOOD_FIXED, ["dram_bw", "1e-3..1e9"]),
    ({"glb_bw": ["fast"]}, GOOD_FIXED, ["glb_bw"]),
    ({"dataflow": [["ws"]]}, {k: v for k, v in GOOD_FIXED.items() if k != "dataflow"}, ["dataflow"]),
    ({"dataflow": ["ws", 1]}, {k: v for k, v in GOOD_FIXED.items() if k != "dataflow"},
     ["dataflow", "allowed values"]),
    ({"word_bits": [8, 12]}, GOOD_FIXED, ["word_bits", "allowed values"]),
    ({"clock_hz": [1e8]}, {**GOOD_FIXED, "pe_x": math.nan}, ["fixed 'pe_x'", "1..4096"]),
    ({"clock_hz": [1e8]}, {**GOOD_FIXED, "dram_bw": True}, ["fixed 'dram_bw'"]),
    ({"clock_hz": [1e8]}, {**GOOD_FIXED, "glb_bytes": [1024]}, ["fixed 'glb_bytes'", "not a single value"]),
    ({"clock_hz": [1e8]}, {**GOOD_FIXED, "pe_z": 1}, ["unknown fixed field", "pe_z"]),
    ({"precision": ["fixed", "bitfusion"]}, GOOD_FIXED, ["precision", "allowed values"]),
    ({"precision": ["fixed", "fixed"]}, GOOD_FIXED, ["precision", "repeat"]),
    ({"precision": [["fixed"]]}, GOOD_FIXED, ["precision", "not a single value"]),
    ({"precision": ["bit-fused"]}, {**GOOD_FIXED, "word_bits": 32}, ["word_bits", "bit-fused", "allowed values"]),
    ({"clock_hz": [1e8]}, {**GOOD_FIXED, "precision": "serial"}, ["fixed 'precision'", "allowed values"]),
]


@pytest.mark.parametrize("choices,fixed,words", SPACE_CASES, ids=[str(i) for i in range(len(SPACE_CASES))])
def test_bad_hardware_spaces(choices, fixed, words):
    with pytest.raises(ConfigError) as exc:
        HardwareSpace(choices, fixed)
    one_line(exc, *words)


@pytest.mark.parametrize("text,words", [
    ("choices: {pe_x: [8]}\nfixed: [1, 2]\n", ["'fixed' must be a mapping"]),
    ("choices: [pe_x, pe_y]\n", ["'choices' must be a mapping"]),
    ("choices: {pe_x: [[1, 2]]}\n", ["pe_x", "not a single value"]),
    ("choices: {pe_x: [.nan]}\n", ["pe_x", "1..4096"]),
    ("choices: {pe_x: [true, 8]}\n", ["pe_x", "positive integer"]),
    ("choices: {dataflow: [{ws: 1}]}\n", ["dataflow", "not a single value"]),
    ("choices: {pe_x: [8]}\nfixed: {pe_y: 8, rf_bytes: 16, glb_bytes: 65536, dataflow: ws, clock_hz: .inf}\n",
     ["clock_hz", "1e3..1e11"]),
    ("choices: {pe_x: [8]}\nfixed: {pe_y: 8, rf_bytes: 16, glb_bytes: 1e40, dataflow: ws}\n", ["glb_bytes"]),
    ("choices: {pe_x: 8}\n", ["pe_x", "non-empty list"]),
    ("choices: {precision: [fixed, loom, 16]}\nfixed: {pe_x: 8, pe_y: 8, rf_bytes: 16, glb_bytes: 65536, dataflow: ws}\n",
     ["precision", "allowed values"]),
    ("name: [a]\nchoices: {pe_x: [8]}\n", ["name"]),
    ("- 1\n- 2\n", ["expected a mapping"]),
])
def test_bad_hardware_space_yaml(tmp_path, text, words):
    p = tmp_path / "space.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        HardwareSpace.load(p)
    one_line(exc, str(p), *words)


def test_hardware_space_values_keep_their_type_for_fingerprints():
    # validation must not rewrite values: an int clock stays an int, so fingerprints of
    # existing spaces (on which evaluators key) do not change
    fixed = {k: v for k, v in GOOD_FIXED.items() if k != "pe_x"}
    s = HardwareSpace({"pe_x": [8, 16]}, {**fixed, "clock_hz": 25000000})
    assert s.fixed["clock_hz"] == 25000000 and isinstance(s.fixed["clock_hz"], int)
    assert s.enumerate()[0].clock_hz == 25e6


@pytest.mark.parametrize("call,words", [
    (lambda s: s.decode([0.5]), ["index", "not an integer"]),
    (lambda s: s.decode([math.nan]), ["index", "not an integer"]),
    (lambda s: s.freeze(["pe_x", 8]), ["expected a mapping"]),
    (lambda s: s.sample(-1), ["number of samples"]),
    (lambda s: s.sample(2.5), ["number of samples"]),
])
def test_bad_hardware_space_calls(call, words):
    s = HardwareSpace({"pe_x": [8, 16]}, {k: v for k, v in GOOD_FIXED.items() if k != "pe_x"})
    with pytest.raises(ConfigError) as exc:
        call(s)
    one_line(exc, *words)


# ---- Layer and workload files -----------------------------------------------------------

LAYER_CASES = [
    ({"K": 1e20}, ["K", "1..16777216"]),
    ({"K": 2 ** 32, "C": 2 ** 32, "P": 2 ** 20, "Q": 2 ** 20}, ["K", "1..16777216"]),
    ({"N": math.nan}, ["N", "positive integer"]),
    ({"P": math.inf}, ["P", "positive integer"]),
    ({"Q": "4"}, ["Q", "positive integer"]),
    ({"R": 200, "S": 1}, ["R", "1..128"]),
    ({"S": True}, ["S", "positive integer"]),
    ({"stride": 64}, ["stride", "1..32"]),
    ({"stride": 0}, ["stride", "1..32"]),
    ({"groups": 0}, ["groups"]),
    ({"groups": 3}, ["groups=3 must divide"]),
    ({"N": 2 ** 20, "K": 2 ** 12, "C": 2 ** 12}, ["macs", "2^40"]),
    ({"K": 1, "C": 2 ** 10, "R": 1, "S": 1, "P": 2 ** 14, "Q": 2 ** 14, "stride": 32}, ["input_elems", "2^40"]),
    ({"kind": "pool"}, ["kind 'pool' is unknown", "allowed kinds"]),
    ({"kind": ["conv"]}, ["kind", "allowed kinds"]),
    ({"name": 5}, ["name", "string"]),
]


@pytest.mark.parametrize("change,words", LAYER_CASES, ids=[str(c)[:40] for c, _ in LAYER_CASES])
def test_bad_layers(change, words):
    with pytest.raises(ConfigError) as exc:
        Layer(**{**GOOD_LAYER, **change})
    one_line(exc, *words)
    with pytest.raises(ConfigError) as exc:
        Layer.from_dict({**GOOD_LAYER, **change}, where="wl.yaml: layers[0]")
    one_line(exc, "wl.yaml: layers[0]", *words)


@pytest.mark.parametrize("text,words", [
    ("layers: [{kind: conv, K: .nan, C: 8, R: 3, S: 3, P: 4, Q: 4}]", ["layers[0]", "field K"]),
    ("layers: [{kind: conv, K: 1.0e+20, C: 8, R: 3, S: 3, P: 4, Q: 4}]", ["layers[0]", "field K", "16777216"]),
    ("layers: [{kind: conv, K: 1e20, C: 8, R: 3, S: 3, P: 4, Q: 4}]", ["layers[0]", "field K"]),  # YAML: a string
    ("layers: [{kind: conv, K: 8, C: 8, R: 3, S: 3, P: .inf, Q: 4}]", ["layers[0]", "field P"]),
    ("layers: [{kind: conv, K: 8, C: 8, R: 3, S: 3, P: 4, Q: 4, stride: 1e3}]", ["layers[0]", "field stride"]),
    ("layers: [{kind: linear, K: 4294967296, C: 4294967296}]", ["layers[0]", "field K"]),
    ("layers: [{kind: linear, K: 8, C: 8}, {kind: conv, K: 8, C: 8, R: 3, S: 3, P: 4, Q: [4]}]",
     ["layers[1]", "field Q"]),
    ("layers: [5]", ["layers[0]", "expected a mapping"]),
    ("layers: {kind: conv}", ["'layers' must be a non-empty list"]),
    ("layers: []", ["'layers' must be a non-empty list"]),
    ("layers: [{kind: conv, K: 8, C: 8}]", ["layers[0]", "missing required field"]),
    ("layers: [{kind: conv, K: 8, C: 8, R: 3, S: 3, P: 4, Q: 4, bias: true}]", ["layers[0]", "bias"]),
])
def test_bad_workload_yaml(tmp_path, text, words):
    p = tmp_path / "wl.yaml"
    p.write_text(text + "\n")
    with pytest.raises(ConfigError) as exc:
        load_workload(p)
    one_line(exc, str(p), *words)


@pytest.mark.parametrize("args,words", [
    ((28, 3, 0, 1), ["stride"]),
    ((28, 3, 1, -1), ["padding"]),
    ((2, 5, 1, 0), ["does not fit"]),
    ((28, 3, 1, 1, 0), ["dilation"]),
    ((28.0, 3, 1, 1), ["size"]),
    ((True, 3, 1, 1), ["size"]),
])
def test_bad_conv_output_size(args, words):
    with pytest.raises(ConfigError) as exc:
        conv_output_size(*args)
    one_line(exc, *words)


def test_builtin_accelerators_still_valid():
    for name in ("eyeriss", "tpu-like", "shidiannao-like", "dance-ws", "dance-rs"):
        assert get_accelerator(name).name == name


# ---- precision: layer bits an accelerator cannot run or hold ------------------------------

PRECISION_CASES = [
    # accelerator changes, layer bits, words the message must contain
    ({}, dict(weight_bits=32), ["weight_bits=32", "allowed values", "1..16", "fixed"]),  # wider than the word
    ({"word_bits": 8}, dict(act_bits=16), ["act_bits=16", "allowed values", "1..8", "fixed"]),
    ({"word_bits": 8, "precision": "bit-serial"}, dict(act_bits=12), ["act_bits=12", "allowed values", "1..8"]),
    ({"word_bits": 8, "precision": "loom"}, dict(weight_bits=9), ["weight_bits=9", "allowed values", "1..8"]),
    ({"precision": "bit-fused"}, dict(act_bits=32), ["act_bits=32", "allowed values", "1..16", "2, 4, 8 or 16"]),
    ({"precision": "bit-fused", "word_bits": 8}, dict(weight_bits=24), ["weight_bits=24", "allowed values"]),
    # an RF too small for one weight, one input and one output at the layer's bits (6 B = 3 x 16 bits)
    ({"rf_bytes": 6, "dataflow": "rs"}, dict(weight_bits=16, act_bits=16, out_bits=32),
     ["rf_bytes=6", "allowed values", "rf_bytes >= 8"]),
    # a GLB too small for one of each per PE: 256 PEs x (16 + 16 + 32) bits = 2048 B
    ({"glb_bytes": 1536, "rf_bytes": 64}, dict(weight_bits=16, act_bits=16, out_bits=32),
     ["glb_bytes=1536", "allowed values", "glb_bytes >= 2048"]),
]


@pytest.mark.parametrize("changes,layer_bits,words", PRECISION_CASES, ids=[str(i) for i in range(len(PRECISION_CASES))])
def test_bad_precision_for_the_accelerator(changes, layer_bits, words):
    a = Accelerator(**{**GOOD_ACC, **changes})
    layer = Layer(**{**GOOD_LAYER, **layer_bits, "name": "c1"})
    with pytest.raises(ConfigError) as exc:
        evaluate([Layer(**GOOD_LAYER), layer], [a])
    one_line(exc, "c1", *words)
    from accelerators.cost_model import explain
    with pytest.raises(ConfigError) as exc:
        explain(layer, a)
    one_line(exc, *words)


def test_precision_at_the_limits_is_accepted():
    # exactly the widest bits, and an RF that exactly holds one of each, price fine
    a = Accelerator(**{**GOOD_ACC, "rf_bytes": 8, "dataflow": "rs"})
    c = evaluate([Layer(**GOOD_LAYER, weight_bits=16, act_bits=16, out_bits=32)], [a])
    assert (c.latency_s > 0).all()
    for p, b in (("bit-fused", 16), ("bit-serial", 16), ("loom", 1), ("bit-fused", 1)):
        c = evaluate([Layer(**GOOD_LAYER, weight_bits=b, act_bits=b)], [Accelerator(**{**GOOD_ACC, "precision": p})])
        assert (c.latency_s > 0).all() and (c.utilization <= 1).all()


def test_bits_above_the_word_of_a_fixed_space_member_are_refused():
    # a hardware space whose fixed-precision members have 4- and 8-bit words, priced with 8-bit layers:
    # the 4-bit members cannot run them
    fixed = {k: v for k, v in GOOD_FIXED.items()}
    space = HardwareSpace({"word_bits": [8, 4]}, fixed)
    layer = Layer(**GOOD_LAYER, weight_bits=8, act_bits=8, name="c8")
    evaluate([layer], space.enumerate()[:1])  # the 8-bit member is fine
    with pytest.raises(ConfigError) as exc:
        evaluate([layer], space.enumerate())
    one_line(exc, "c8", "weight_bits=8", "allowed values", "1..4", "word_bits=4")
