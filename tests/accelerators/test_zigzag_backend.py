"""The ZigZag backend: the translation ZigZag's own validators accept, the cost-source protocol,
the per-pair cache, resumption after an interruption, the process pool and the errors.

ZigZag runs here only on tiny pairs (a few loop prime factors each, well under a second of
LOMA search) and each test caches into its own folder.
"""

import dataclasses

import numpy as np
import pytest

from accelerators import (COST_SOURCES, Accelerator, AnalyticalModel, ConfigError, get_cost_source, list_cost_sources,
                          list_dataflows)
from accelerators import zigzag_backend as zb
from accelerators.technology import DEFAULT_TECH, ZIGZAG_TECH
from accelerators.workload import conv, depthwise, linear, matmul

zigzag = pytest.importorskip("zigzag", reason='the zigzag extra is not installed (pip install "coexplore[zigzag]")')

# Pairs whose temporal loops have few prime factors: LOMA searches them in well under a second.
TINY = [conv(4, 4, 1, 2, name="pw"), depthwise(4, 3, 4, name="dw"), linear(16, 8, N=2, name="fc")]


def tiny_acc(df="ws", rf=32, **kw):
    return Accelerator(pe_x=4, pe_y=4, rf_bytes=rf, glb_bytes=8 * 1024, dataflow=df, **kw)


@pytest.fixture
def backend(tmp_path):
    return zb.ZigZagBackend(tech="zigzag", workers=1, cache_dir=tmp_path, progress=False)


# ---- the translation, checked by ZigZag itself ---------------------------------------------

@pytest.mark.parametrize("dataflow", list_dataflows())
@pytest.mark.parametrize("layer", TINY + [conv(3, 16, 3, 8, stride=2, groups=1), conv(8, 8, 3, 6, groups=4),
                                          matmul(6, 8, 5, groups=3)], ids=str)
def test_translation_passes_zigzag_validators(dataflow, layer):
    acc = Accelerator(pe_x=8, pe_y=4, rf_bytes=64, glb_bytes=32 * 1024, dataflow=dataflow, dram_bw=6.5)
    job = zb.ZigZagBackend(tech="default", cache=False).job(layer, acc)
    hw, workload = zb.build_zigzag_inputs(job["accelerator"], job["layer"], job["mapping"])  # raises if refused
    (node,) = [n for n in workload.topological_sort()]
    sizes = {str(k): v for k, v in node.layer_dim_sizes.items()}
    assert np.prod(list(sizes.values())) == layer.macs
    assert hw.operational_array.total_unit_count == acc.num_pes
    # the spatial mapping fits the array and is the dataflow's unrolling
    sm = job["mapping"][1]["spatial_mapping"]
    for axis, cap in (("D1", acc.pe_x), ("D2", acc.pe_y)):
        assert np.prod([int(e.split(", ")[1]) for e in sm.get(axis, [])]) <= cap


def test_translation_carries_the_technology():
    acc = tiny_acc(rf=64)
    rec = zb.zigzag_accelerator(acc, ZIGZAG_TECH)
    wb = acc.word_bits
    per_word = lambda m: rec["memories"][m]["r_cost"] / (rec["memories"][m]["ports"][0]["bandwidth_max"] / wb)
    assert per_word("rf") == pytest.approx(float(ZIGZAG_TECH.e_rf(64, wb)), rel=1e-6)
    assert per_word("glb") == pytest.approx(float(ZIGZAG_TECH.e_glb(8 * 1024, wb)), rel=1e-6)
    assert per_word("dram") == pytest.approx(float(ZIGZAG_TECH.e_dram(wb)), rel=1e-6)
    assert rec["operational_array"]["unit_energy"] == pytest.approx(float(ZIGZAG_TECH.e_mac(wb)))
    assert all(p["bandwidth_min"] == wb for m in rec["memories"].values() for p in m["ports"])
    layer = zb.zigzag_layer(TINY[0], 0, "pw", 0, wb, ZIGZAG_TECH.psum_bits(wb))
    assert layer["operand_precision"] == {"W": 16, "I": 16, "O": 32, "O_final": 16}


def test_translation_carries_operand_precision():
    # the layer's own bits, the word where it has none; partial sums at out_bits or the technology's width
    wb, ps = 16, ZIGZAG_TECH.psum_bits(16)
    l = TINY[0]
    assert zb.zigzag_layer(l, 0, "pw", 0, wb, ps)["operand_precision"] == {"W": 16, "I": 16, "O": 32, "O_final": 16}
    l4 = dataclasses.replace(l, weight_bits=4, act_bits=8)
    assert zb.zigzag_layer(l4, 0, "pw", 0, wb, ps)["operand_precision"] == {"W": 4, "I": 8, "O": 32, "O_final": 16}
    l24 = dataclasses.replace(l, weight_bits=2, act_bits=2, out_bits=24)
    assert zb.zigzag_layer(l24, 0, "pw", 0, wb, ps)["operand_precision"] == {"W": 2, "I": 2, "O": 24, "O_final": 24}
    acc = tiny_acc(rf=64)
    job = zb.ZigZagBackend(tech="zigzag", cache=False).job(l4, acc)
    zb.build_zigzag_inputs(job["accelerator"], job["layer"], job["mapping"])  # ZigZag's validators accept it


def test_zigzag_prices_operand_bits_and_ignores_the_mac_scheme(backend, caplog):
    # ZigZag moves fewer bits for a 4-bit layer; it has no bit-serial/bit-fused MAC model, so a
    # bit-fused accelerator is priced as a fixed one (with a warning)
    l = TINY[0]
    l4 = dataclasses.replace(l, weight_bits=4, act_bits=4, out_bits=4)
    acc = tiny_acc(rf=64)
    c16, c4 = backend.evaluate([l], [acc]), backend.evaluate([l4], [acc])
    assert c4.dram_bytes[0, 0] < c16.dram_bytes[0, 0]
    with caplog.at_level("WARNING", logger="accelerators.zigzag_backend"):
        fused = backend.evaluate([l4], [acc.with_(precision="bit-fused")])
    assert "no model of the bit-fused" in caplog.text
    assert fused.latency_s[0, 0] == pytest.approx(c4.latency_s[0, 0])


def test_zigzag_refuses_the_bits_the_analytical_model_refuses(backend):
    l = dataclasses.replace(TINY[0], act_bits=32)
    for src in (backend, AnalyticalModel(ZIGZAG_TECH)):
        with pytest.raises(ConfigError, match="act_bits=32 is not supported; allowed values: 1..16"):
            src.evaluate([l], [tiny_acc()])


# ---- the cost-source protocol --------------------------------------------------------------

def test_registered_and_described(backend):
    assert "zigzag" in list_cost_sources() and "zigzag" in COST_SOURCES
    d = backend.describe()
    assert d["name"] == "zigzag" and "3.9.1" in d["version"] and d["technology_preset"] == "zigzag"
    assert d["fingerprint"] == backend.fingerprint()
    same = zb.ZigZagBackend(tech="zigzag", workers=4, cache=False, progress=True)
    assert same.fingerprint() == backend.fingerprint()  # how the numbers are made is not what they are
    for other in (zb.ZigZagBackend(tech="default", cache=False), zb.ZigZagBackend(tech="zigzag", lpf_limit=5, cache=False),
                  zb.ZigZagBackend(tech="zigzag", mapping_objective="energy", cache=False)):
        assert other.fingerprint() != backend.fingerprint()
    built = get_cost_source("zigzag", mapping_objective="latency", tech="zigzag", cache=False)
    assert isinstance(built, zb.ZigZagBackend) and built.mapping_objective == "latency"


def test_evaluate_shapes_units_and_bounds(backend):
    accs = [tiny_acc("ws"), tiny_acc("os", clock_hz=400e6)]
    c = backend.evaluate(TINY, accs)
    assert c.latency_s.shape == c.energy_j.shape == (2, 3) and c.area_mm2.shape == (2,)
    macs = np.array([l.macs for l in TINY], dtype=float)
    for j, a in enumerate(accs):
        assert np.all(c.latency_s[j] >= macs / (a.num_pes * a.clock_hz))
        assert np.all(c.energy_j[j] >= macs * float(ZIGZAG_TECH.e_mac(16)) * 1e-12)
        once = np.array([l.weight_elems + l.input_elems for l in TINY]) * 2 + np.array([l.output_elems for l in TINY]) * 2
        assert np.all(c.dram_bytes[j] >= once * (1 - 1e-9))
        np.testing.assert_allclose(c.latency_s[j], c.cycles[j] / a.clock_hz)
    np.testing.assert_allclose(c.area_mm2, AnalyticalModel(ZIGZAG_TECH).area_mm2(accs))
    # the same design at twice the clock: same cycles, half the time
    np.testing.assert_allclose(backend.evaluate(TINY[:1], [tiny_acc("os")]).cycles[0], c.cycles[1, :1])


# ---- cache and resumption ------------------------------------------------------------------

def test_cache_is_content_addressed(backend, tmp_path):
    pairs = [(l, tiny_acc("ws")) for l in TINY]
    first = backend.pairs(pairs)
    assert backend.last_run == 3 and not any(r.cached for r in first)
    assert len(zb.PairCache(tmp_path / "zigzag")) == 3
    again = zb.ZigZagBackend(tech="zigzag", workers=1, cache_dir=tmp_path, progress=False)
    second = again.pairs(pairs + pairs[:1])  # a duplicate pair runs once
    assert again.last_run == 0 and all(r.cached for r in second)
    assert [r.record for r in second[:3]] == [r.record for r in first]
    # another technology is another key: nothing is reused
    other = zb.ZigZagBackend(tech="default", workers=1, cache_dir=tmp_path, progress=False)
    other.pairs(pairs[:1])
    assert other.last_run == 1
    # a damaged cache file is recomputed, not trusted
    path = next((tmp_path / "zigzag").glob("*/*.json"))
    path.write_text("{not json")
    again.pairs(pairs)
    assert again.last_run == 1


def test_resumes_after_an_interruption(tmp_path, monkeypatch):
    pairs = [(l, tiny_acc(df)) for df in ("ws", "os") for l in TINY[:2]]
    clean = zb.ZigZagBackend(tech="zigzag", workers=1, cache=False, progress=False).pairs(pairs)
    real, calls = zb.run_zigzag_pair, []

    def interrupted(job):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(job)
        return real(job)

    monkeypatch.setattr(zb, "run_zigzag_pair", interrupted)
    b = zb.ZigZagBackend(tech="zigzag", workers=1, cache_dir=tmp_path, progress=False)
    with pytest.raises(KeyboardInterrupt):
        b.pairs(pairs)
    assert len(zb.PairCache(tmp_path / "zigzag")) == 2  # what finished is kept
    monkeypatch.setattr(zb, "run_zigzag_pair", real)
    resumed = b.pairs(pairs)
    assert b.last_run == 2 and b.last_cached == 2
    assert [r.record["energy_pj"] for r in resumed] == [r.record["energy_pj"] for r in clean]


def test_process_pool_gives_the_same_numbers(tmp_path):
    pairs = [(TINY[0], tiny_acc("ws")), (TINY[1], tiny_acc("os")), (TINY[2], tiny_acc("ws", rf=64))]
    seen = []
    pooled = zb.ZigZagBackend(tech="zigzag", workers=2, cache_dir=tmp_path, progress=False)
    res = pooled.pairs(pairs, on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == [0, 1, 2] and pooled.last_run == 3
    single = zb.ZigZagBackend(tech="zigzag", workers=1, cache=False, progress=False).pairs(pairs)
    for a, b in zip(res, single):
        assert a.record["energy_pj"] == b.record["energy_pj"]
        assert a.record["latency_cycles"] == b.record["latency_cycles"]


def test_ray_tasks_give_the_same_numbers_and_are_cached(tmp_path, monkeypatch):
    """executor="ray": one Ray task per missing pair (counted through ray.remote), the same numbers
    as in-process runs, each result cached as it arrives, and Ray shut down again when it was
    started for the call."""
    ray = pytest.importorskip("ray", reason='the ray extra is not installed (pip install "coexplore[ray]")')
    submitted = []
    real_remote = ray.remote

    def counting_remote(*args, **kw):
        wrap = real_remote(*args, **kw)

        def on(fn):
            task = wrap(fn)

            class Counted:
                def remote(self, *a, **k):
                    submitted.append(fn.__name__)
                    return task.remote(*a, **k)
            return Counted()
        return on

    monkeypatch.setattr(ray, "remote", counting_remote)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    pairs = [(TINY[0], tiny_acc("ws")), (TINY[1], tiny_acc("os")), (TINY[0], tiny_acc("ws"))]  # one repeated
    seen = []
    on_ray = zb.ZigZagBackend(tech="zigzag", workers=2, cache_dir=tmp_path, progress=False, executor="ray")
    res = on_ray.pairs(pairs, on_result=lambda i, r: seen.append(i))
    assert submitted == ["run_zigzag_pair"] * 2 and on_ray.last_run == 2 and sorted(seen) == [0, 1, 2]
    assert not ray.is_initialized()
    single = zb.ZigZagBackend(tech="zigzag", workers=1, cache=False, progress=False).pairs(pairs)
    for a, b in zip(res, single):
        assert a.record["energy_pj"] == b.record["energy_pj"]
        assert a.record["latency_cycles"] == b.record["latency_cycles"]
    again = zb.ZigZagBackend(tech="zigzag", cache_dir=tmp_path, progress=False, executor="ray")
    again.pairs(pairs)
    assert again.last_run == 0 and again.last_cached == 2 and len(submitted) == 2  # all from the cache: no Ray


# ---- errors ------------------------------------------------------------------------------

def test_missing_or_wrong_zigzag_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(zb, "zigzag_version", lambda: None)
    with pytest.raises(ConfigError, match=r'pip install "coexplore\[zigzag\]"') as exc:
        get_cost_source("zigzag")
    assert "\n" not in str(exc.value)
    monkeypatch.setattr(zb, "zigzag_version", lambda: "3.8.7")
    with pytest.raises(ConfigError, match=r"3\.8\.7 is installed.*3\.9\.1"):
        zb.ZigZagBackend()


@pytest.mark.parametrize("kw, words", [({"mapping_objective": "dram"}, "mapping_objective 'dram'"),
                                       ({"lpf_limit": 0}, "lpf_limit"), ({"workers": 0}, "workers"),
                                       ({"executor": "dask"}, r"executor 'dask' is not supported; allowed values: \['local', 'ray'\]"),
                                       ({"tech": "fast"}, "technology 'fast' is unknown")])
def test_bad_options(kw, words):
    with pytest.raises(ConfigError, match=words):
        zb.ZigZagBackend(**kw)


def test_a_dataflow_without_zigzag_hints_is_refused():
    import dataclasses

    from accelerators import DATAFLOWS, get_dataflow, register_dataflow

    register_dataflow(dataclasses.replace(get_dataflow("ws"), name="ws-nozz", long_name="no zigzag", zigzag=None))
    try:
        acc = Accelerator(pe_x=4, pe_y=4, rf_bytes=32, glb_bytes=8 * 1024, dataflow="ws-nozz")
        with pytest.raises(ConfigError, match="no zigzag export hints"):
            zb.ZigZagBackend(cache=False).job(TINY[0], acc)
    finally:
        DATAFLOWS.unregister("ws-nozz")
