"""Tests of the dataflow registry: built-ins, user dataflows priced by their own functions, refusals."""

import dataclasses

import numpy as np
import pytest

from accelerators import (DATAFLOWS, Accelerator, ConfigError, Dataflow, HardwareSpace, TimeloopHints, Unrolling,
                          UnknownNameError, ZigZagHints, evaluate, explain, get_dataflow, get_hardware_space,
                          list_dataflows, register_dataflow)
from accelerators.dataflows import ws_array_level
from accelerators.hardware import DATAFLOW_NAMES, MIN_RF_WORDS
from accelerators.workload import conv, depthwise, linear

FAST_MEM = dict(dram_bw=1e6, glb_bw=1e6)  # bandwidth irrelevant: the latency is the compute cycles


def acc(pe_x, pe_y, df, rf=64, glb=108 * 1024, **kw):
    return Accelerator(pe_x=pe_x, pe_y=pe_y, rf_bytes=rf, glb_bytes=glb, dataflow=df, **kw)


def _transposed_ws_spatial(pe_x, pe_y, L):
    """WS with the axes swapped: rows <- K', columns <- C' (groups block-diagonal)."""
    G, Kg, Cg = L["G"], L["Kg"], L["Cg"]
    one = np.ones(np.broadcast_shapes(pe_x.shape, G.shape), dtype=np.int64)
    s_k = np.minimum(Kg, pe_y)
    s_c = np.minimum(Cg, pe_x)
    s_g = np.minimum(G, np.minimum(pe_y // s_k, pe_x // s_c))
    return Unrolling(s_g, s_k, s_c, one, one, one)


@pytest.fixture
def ws_t():
    """A user dataflow registered for the test's duration; its functions count their calls."""
    calls = {"spatial": 0, "array_level": 0}

    def spatial(pe_x, pe_y, L):
        calls["spatial"] += 1
        return _transposed_ws_spatial(pe_x, pe_y, L)

    def array_level(L, sp, rf_words, d):
        calls["array_level"] += 1
        return ws_array_level(L, sp, rf_words, d)

    df = register_dataflow(Dataflow("ws-t", "transposed weight-stationary", 3, spatial, array_level))
    yield df, calls
    DATAFLOWS.unregister("ws-t")


def test_builtins_in_registration_order():
    assert list_dataflows()[:3] == ["ws", "os", "rs"]
    assert list(DATAFLOWS)[:3] == ["ws", "os", "rs"] and "rs" in DATAFLOWS
    assert get_dataflow("RS").long_name == "row-stationary"
    with pytest.raises(UnknownNameError, match=r"known dataflows: ws, os, rs"):
        get_dataflow("xs")


@pytest.mark.parametrize("name", list_dataflows())
def test_every_dataflow_record(name):
    df = get_dataflow(name)
    assert df.name == name and df.long_name and callable(df.spatial) and callable(df.array_level)
    assert DATAFLOW_NAMES[name] == df.long_name and MIN_RF_WORDS[name] == df.min_rf_words
    # the smallest RF the dataflow accepts, and one byte less
    a = acc(8, 8, name, rf=df.min_rf_words * 2)
    assert a.dataflow == name
    with pytest.raises(ConfigError, match=f"too small for the {name} dataflow"):
        acc(8, 8, name, rf=df.min_rf_words * 2 - 1)


@pytest.mark.parametrize("name", list_dataflows())
def test_every_dataflow_prices_every_layer_kind(name):
    layers = [conv(16, 32, 3, 14, stride=2), depthwise(32, 5, 7), conv(32, 64, 1, 7, groups=4), linear(256, 10, N=8)]
    accs = [acc(16, 16, name), acc(4, 12, name, rf=512), acc(1, 1, name, glb=4096)]
    c = evaluate(layers, accs)
    macs = np.array([l.macs for l in layers], dtype=float)
    for j, a in enumerate(accs):
        assert np.all(c.latency_s[j] >= macs / (a.num_pes * a.clock_hz) * (1 - 1e-12))
        assert np.all((c.utilization[j] > 0) & (c.utilization[j] <= 1))
    for l in layers:
        ex = explain(l, accs[0])
        assert ex.used_pes <= ex.num_pes and ex.energy_j > 0


def test_user_dataflow_is_priced_by_its_own_functions(ws_t):
    df, calls = ws_t
    # A pointwise conv C=16 -> K=4 on a 2x2 map, on 16 columns x 4 rows.  Transposed WS puts
    # K'=4 on the rows and C'=16 on the columns: all 64 PEs busy, one output pixel per cycle,
    # 4 cycles.  RS (what an unknown name used to be priced as) needs 8, WS 16.
    l = conv(16, 4, 1, 2)
    a = acc(16, 4, "ws-t", **FAST_MEM)
    ex = explain(l, a)
    assert calls["spatial"] >= 1 and calls["array_level"] >= 1
    assert ex.spatial == {"groups": 1, "out_channels": 4, "in_channels": 16, "filter_rows": 1, "out_rows": 1,
                          "out_cols": 1}
    assert ex.used_pes == 64 and ex.cycles["compute"] == 4 and ex.utilization == pytest.approx(1.0)
    cycles = {d: explain(l, acc(16, 4, d, **FAST_MEM)).cycles["compute"] for d in ("rs", "ws")}
    assert cycles == {"rs": 8, "ws": 16}
    c = evaluate([l], [a, acc(16, 4, "rs", **FAST_MEM)])
    assert c.cycles[0, 0] == 4 and c.cycles[1, 0] == 8


def test_mixed_batch_equals_one_dataflow_at_a_time(ws_t):
    layers = [conv(16, 32, 3, 14), depthwise(32, 3, 14), linear(512, 10)]
    accs = [acc(8, 16, d) for d in ("rs", "ws-t", "ws", "os", "ws-t")]
    batch = evaluate(layers, accs)
    for j, a in enumerate(accs):
        one = evaluate(layers, [a])
        np.testing.assert_array_equal(batch.latency_s[j], one.latency_s[0])
        np.testing.assert_array_equal(batch.energy_j[j], one.energy_j[0])


def test_user_dataflow_in_a_hardware_space(ws_t):
    s = HardwareSpace({"pe_x": [8, 16], "dataflow": ["ws", "ws-t"]},
                      {"pe_y": 4, "rf_bytes": 16, "glb_bytes": 64 * 1024})
    assert {a.dataflow for a in s} == {"ws", "ws-t"}
    c = evaluate([conv(16, 4, 1, 2)], s.enumerate())
    assert c.cycles.shape == (4, 1)
    # the built-in spaces do not change when a dataflow is registered
    assert get_hardware_space("default").choices["dataflow"] == ("ws", "os", "rs")
    assert DATAFLOW_NAMES["ws-t"] == "transposed weight-stationary" and "ws-t" in MIN_RF_WORDS


def test_min_rf_words_comes_from_the_record():
    register_dataflow(dataclasses.replace(get_dataflow("ws"), name="ws-big-rf", min_rf_words=8))
    try:
        acc(8, 8, "ws-big-rf", rf=16)
        with pytest.raises(ConfigError, match="at least 8 words"):
            acc(8, 8, "ws-big-rf", rf=15)
    finally:
        DATAFLOWS.unregister("ws-big-rf")


def test_unregistered_dataflow_is_refused():
    with pytest.raises(ConfigError, match=r"field dataflow is 'ws-t'; allowed values: \['ws', 'os', 'rs'"):
        acc(8, 8, "ws-t")
    with pytest.raises(ConfigError, match=r"dataflow.*'ws-t'.*allowed values: \['ws', 'os', 'rs'"):
        HardwareSpace({"dataflow": ["ws", "ws-t"]}, {"pe_x": 8, "pe_y": 8, "rf_bytes": 16, "glb_bytes": 65536})
    with pytest.raises(ConfigError, match="allowed values"):
        HardwareSpace.from_dict({"choices": {"dataflow": ["zz"]},
                                 "fixed": {"pe_x": 8, "pe_y": 8, "rf_bytes": 16, "glb_bytes": 65536}})


def test_register_warns_on_overwrite(ws_t):
    df, _ = ws_t
    with pytest.warns(UserWarning, match="registered again"):
        register_dataflow(df)
    assert list_dataflows().count("ws-t") == 1


def _spatial_returning(factor):
    def spatial(pe_x, pe_y, L):
        sp = _transposed_ws_spatial(pe_x, pe_y, L)
        return sp._replace(k=sp.k * factor)
    return spatial


@pytest.mark.parametrize("spatial,array_level,match", [
    (_spatial_returning(0), ws_array_level, "factor k must be integers >= 1"),
    (_spatial_returning(64), ws_array_level, "more PEs than the array has"),
    (lambda pe_x, pe_y, L: (1, 1), ws_array_level, "must return an Unrolling"),
    (_transposed_ws_spatial, lambda L, sp, rf, d: (1, 2, 3), "must return an ArrayLevel"),
    (_transposed_ws_spatial, lambda L, sp, rf, d: ws_array_level(L, sp, rf, d)._replace(deliver=np.nan),
     "non-physical result"),
    (_transposed_ws_spatial, lambda L, sp, rf, d: ws_array_level(L, sp, rf, d)._replace(deliver=-1e15),
     "non-physical result"),
])
def test_broken_user_dataflows_are_caught(spatial, array_level, match):
    register_dataflow(Dataflow("broken", "broken", 3, spatial, array_level))
    try:
        with pytest.raises(ConfigError, match=match) as exc:
            evaluate([conv(16, 4, 3, 8)], [acc(16, 4, "broken")])
        assert "'broken'" in str(exc.value) and "\n" not in str(exc.value)
    finally:
        DATAFLOWS.unregister("broken")


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="WS 2"), "name must be lower-case"),
    (dict(name=""), "name must be lower-case"),
    (dict(long_name=""), "long_name"),
    (dict(min_rf_words=0), "min_rf_words must be an integer in 1..1024"),
    (dict(min_rf_words=True), "min_rf_words"),
    (dict(spatial=None), "spatial must be a function"),
    (dict(array_level="ws"), "array_level must be a function"),
    (dict(zigzag={"placement": ()}), "zigzag must be a ZigZagHints"),
    (dict(timeloop=("MC",)), "timeloop must be a TimeloopHints"),
])
def test_bad_dataflow_records(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(get_dataflow("ws"), **kwargs)
    with pytest.raises(ConfigError, match="expected a Dataflow"):
        register_dataflow("ws")


@pytest.mark.parametrize("make,match", [
    (lambda: ZigZagHints(placement=(("Z", "D1"),), default=("K", "C")), "placement entry"),
    (lambda: ZigZagHints(placement=(("K", "D3"),), default=("K", "C")), "placement entry"),
    (lambda: ZigZagHints(placement=(("K",),), default=("K", "C")), "placement must be"),
    (lambda: ZigZagHints(placement=(), default=("K",)), "default must be two loop dims"),
    (lambda: TimeloopHints("R=1 X=1", "MC", 1, "C=1", "SR"), "spatial_factors"),
    (lambda: TimeloopHints("R=1", "MM", 1, "C=1", "SR"), "spatial_permutation"),
    (lambda: TimeloopHints("R=1", "MC", 3, "C=1", "SR"), r"split must be an integer in 0\.\.2"),
    (lambda: TimeloopHints("R=1", "MC", 1, "C=one", "SR"), "rf_factors"),
])
def test_bad_export_hints(make, match):
    with pytest.raises(ConfigError, match=match):
        make()
