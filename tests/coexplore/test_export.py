"""The Timeloop and ZigZag exports.

ZigZag (zigzag-dse 3.9.1, in the test extra) runs here: its own validators check every export
and one export is run through its API and compared with the ZigZag backend.  Timeloop cannot be
installed here, so its files get structure checks against the v0.3 input format.
"""

import dataclasses
import logging
import math
import re

import pytest
import yaml

from accelerators import (DATAFLOWS, Accelerator, ConfigError, TimeloopHints, ZigZagHints, get_accelerator,
                          get_dataflow, get_workload, list_dataflows, register_dataflow)
from accelerators.technology import DEFAULT_TECH, ZIGZAG_TECH
from accelerators.workload import conv, depthwise, linear
from coexplore.export import export_all, export_timeloop, export_zigzag

ZZ_SPATIAL = re.compile(r"^([A-Z]+), ([0-9]+)$")


def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def eyeriss_alexnet():
    return get_accelerator("eyeriss"), get_workload("alexnet")


MIXED = [conv(3, 16, 3, 28, stride=2, name="stem"), depthwise(16, 3, 28, name="dw/3x3"),
         conv(16, 32, 1, 28, name="pw"), conv(32, 32, 3, 14, stride=2, groups=4, name="grouped"),
         linear(32 * 14 * 14, 10, N=4, name="fc")]


# ---- Timeloop ---------------------------------------------------------------------------

def timeloop_checks(acc, layers, out):
    paths = export_timeloop(acc, layers, out)
    assert paths[-1] == out / "README.txt" and paths[-1].read_text().startswith("Target: Timeloop v3.0.x")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert not [p for p in out.rglob(".*") if p.is_file()]  # atomic writes leave no temp files

    arch = load(out / "arch.yaml")["architecture"]
    assert arch["version"] == 0.3
    system = arch["subtree"][0]
    dram = system["local"][0]
    assert dram["class"] == "DRAM"
    assert dram["attributes"]["width"] == dram["attributes"]["block-size"] * acc.word_bits
    chip = system["subtree"][0]
    glb = chip["local"][0]["attributes"]
    assert chip["local"][0]["class"] == "SRAM"
    assert glb["depth"] * glb["width"] == acc.glb_bytes * 8
    assert glb["width"] == glb["block-size"] * glb["word-bits"] and glb["word-bits"] == acc.word_bits
    assert glb["read_bandwidth"] == pytest.approx(acc.glb_bw * 8 / acc.word_bits)
    pe = chip["subtree"][0]
    lo, hi = map(int, re.fullmatch(r"PE\[(\d+)\.\.(\d+)\]", pe["name"]).groups())
    assert hi - lo + 1 == acc.num_pes
    rf, mac = pe["local"]
    assert (rf["class"], mac["class"]) == ("regfile", "intmac")
    for comp in (rf, mac):
        assert comp["attributes"]["meshX"] == acc.pe_x and comp["attributes"]["meshY"] == acc.pe_y
        assert comp["attributes"]["meshX"] * comp["attributes"]["meshY"] == acc.num_pes
    assert rf["attributes"]["depth"] * rf["attributes"]["width"] == acc.rf_bytes * 8

    cons = load(out / "constraints.yaml")["architecture_constraints"]["targets"]
    names = {"DRAM", chip["local"][0]["name"], rf["name"], mac["name"]}
    assert {c["target"] for c in cons} <= names
    assert load(out / "mapper.yaml")["mapper"]["optimization-metrics"] == ["edp"]

    problems = sorted((out / "problems").glob("*.yaml"))
    assert len(problems) == len(layers)
    for path, layer in zip(problems, layers):
        prob = load(path)["problem"]
        shape, inst = prob["shape"], prob["instance"]
        dims = shape["dimensions"]
        coeffs = {c["name"] for c in shape["coefficients"]}
        assert set(inst) == set(dims) | coeffs
        assert math.prod(inst[d] for d in dims) == layer.macs
        assert inst["Wstride"] == inst["Hstride"] == layer.stride
        for ds in shape["data-spaces"]:  # every projection names declared dimensions/coefficients
            for term in ds["projection"]:
                for factor in term:
                    assert factor[0] in dims and all(f in coeffs for f in factor[1:])
        if layer.groups > 1:
            assert shape["name"] == "Grouped-CNN-Layer" and inst["G"] == layer.groups
            assert (inst["C"], inst["M"]) == (layer.C // layer.groups, layer.K // layer.groups)
        else:
            assert shape["name"] == "CNN-Layer" and "G" not in inst
            assert (inst["C"], inst["M"], inst["N"], inst["P"], inst["Q"]) == (layer.C, layer.K, layer.N, layer.P,
                                                                               layer.Q)
    index = load(out / "layers.yaml")
    assert [e["macs"] for e in index["layers"]] == [l.macs for l in layers]
    return problems


def test_timeloop_eyeriss_alexnet(tmp_path, eyeriss_alexnet):
    acc, layers = eyeriss_alexnet
    problems = timeloop_checks(acc, layers, tmp_path / "tl")
    assert problems[0].name == "00_conv1.yaml"
    conv2 = load(problems[1])["problem"]["instance"]  # AlexNet conv2 is grouped (two towers)
    assert (conv2["G"], conv2["C"], conv2["M"]) == (2, 48, 128)
    assert "&id" not in problems[1].read_text()  # plain YAML: no anchors/aliases


@pytest.mark.parametrize("name", ["tpu-like", "shidiannao-like"])
def test_timeloop_depthwise_grouped_and_linear(tmp_path, name):
    problems = timeloop_checks(get_accelerator(name), MIXED, tmp_path / name)
    dw = load(problems[1])["problem"]["instance"]
    assert (dw["G"], dw["C"], dw["M"]) == (16, 1, 1)
    assert problems[1].name == "01_dw_3x3.yaml"  # file names are sanitised


# What the parsers of NVlabs/timeloop v3.0.3 (the last tagged release, Oct 2023) read, from its
# sources: src/model/buffer.cpp (storage attributes), src/model/arithmetic.cpp (compute),
# src/model/engine.cpp (architecture versions 0.2-0.4), include/model/topology.hpp (class names are
# matched by substring), src/workload/shape-models/problem-shape.cpp and workload.cpp (problem),
# src/mapping/constraints.cpp (constraints), src/applications/mapper/mapper.cpp,
# mapper-thread.cpp, search/random-pruned.cpp and search/search-factory.cpp (mapper).  Keys for
# Accelergy only (technology, global_cycle_seconds, type of a DRAM) are ignored by Timeloop.
TL_STORAGE_KEYS = {"attributes", "bandwidth", "block-size", "block_size", "class", "datawidth", "depth", "entries",
                   "instances", "meshX", "meshY", "n_banks", "n_ports", "n_words", "name", "read_bandwidth",
                   "shared_bandwidth", "sizeKB", "technology", "width", "word-bits", "word_width", "write_bandwidth",
                   "multiple-buffering", "num-banks", "num-ports", "min-utilization"}
TL_COMPUTE_KEYS = {"attributes", "class", "datawidth", "energy", "area", "instances", "meshX", "meshY", "name",
                   "word-bits"}
TL_ACCELERGY_ONLY = {"technology", "global_cycle_seconds", "type"}
TL_BUFFER_CLASSES, TL_COMPUTE_CLASSES = ("DRAM", "SRAM", "regfile", "smartbuffer", "storage"), ("mac", "compute")
TL_SHAPE_KEYS = {"name", "dimensions", "coefficients", "data-spaces", "flatten"}
TL_DATASPACE_KEYS = {"name", "projection", "read-write"}
TL_CONSTRAINT_KEYS = {"target", "type", "factors", "permutation", "split", "bypass", "keep", "default_max_factor",
                      "default_min_factor", "no_link_transfer", "no_multicast_no_reduction", "no_temporal_reuse"}
TL_MAPPER_KEYS = {"algorithm", "optimization-metric", "optimization-metrics", "live-status", "num-threads", "timeout",
                  "victory-condition", "search-size", "search_size", "sync-interval", "log-stats", "log-suboptimal",
                  "log-all", "log-interval", "max-permutations-per-if-visit", "diagnostics", "out_prefix"}
TL_METRICS = {"delay", "energy", "last-level-accesses", "edp"}
TL_ALGORITHMS = {"exhaustive", "random", "linear-pruned", "random-pruned", "hybrid"}


@pytest.mark.parametrize("objective", ["edp", "energy", "latency", "dram"])
def test_timeloop_export_uses_only_keys_timeloop_v3_reads(tmp_path, objective):
    out = tmp_path / "tl"
    export_timeloop(get_accelerator("eyeriss"), MIXED, out, objective=objective)
    arch = load(out / "arch.yaml")["architecture"]
    assert str(arch["version"]) in ("0.2", "0.3", "0.4")
    storage, compute = [], []
    node, levels = arch, 0
    while "subtree" in node:
        assert len(node["subtree"]) == 1  # "Timeloop currently supports one subtree per level" (topology.cpp)
        node = node["subtree"][0]
        levels += 1
        assert set(node.get("attributes", {})) <= TL_ACCELERGY_ONLY
        for comp in node.get("local", []):
            cls = comp["class"]
            if any(c in cls for c in TL_BUFFER_CLASSES):
                storage.append(comp["name"])
                assert set(comp["attributes"]) <= TL_STORAGE_KEYS | TL_ACCELERGY_ONLY, comp["name"]
            else:
                assert any(c in cls for c in TL_COMPUTE_CLASSES), cls
                compute.append(comp["name"])
                assert set(comp["attributes"]) <= TL_COMPUTE_KEYS, comp["name"]
    assert levels == 3 and len(storage) == 3 and len(compute) == 1
    for target in load(out / "constraints.yaml")["architecture_constraints"]["targets"]:
        assert set(target) <= TL_CONSTRAINT_KEYS and target["target"] in storage
        assert target["type"] in ("temporal", "spatial", "bypass")
    mapper = load(out / "mapper.yaml")["mapper"]
    assert set(mapper) <= TL_MAPPER_KEYS
    assert set(mapper["optimization-metrics"]) <= TL_METRICS and mapper["algorithm"] in TL_ALGORITHMS
    for path in (out / "problems").glob("*.yaml"):
        prob = load(path)["problem"]
        assert set(prob) == {"shape", "instance"}
        assert set(prob["shape"]) <= TL_SHAPE_KEYS
        assert all(set(ds) <= TL_DATASPACE_KEYS for ds in prob["shape"]["data-spaces"])
    assert "v3.0" in (out / "README.txt").read_text()


# ---- ZigZag -----------------------------------------------------------------------------

def zigzag_validate(out):
    """Run ZigZag's own validators (zigzag-dse 3.9.1) on the exported YAML, as its parser stages do."""
    zz = pytest.importorskip("zigzag", reason='the zigzag extra is not installed (pip install "coexplore[zigzag]")')
    from zigzag.parser.accelerator_validator import AcceleratorValidator
    from zigzag.parser.mapping_validator import MappingValidator
    from zigzag.parser.workload_validator import WorkloadValidator
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage

    assert AcceleratorValidator(load(out / "accelerator.yaml")).validate()
    assert WorkloadValidator(load(out / "workload.yaml")).validate()
    assert MappingValidator(load(out / "mapping.yaml")).validate()
    return AcceleratorParserStage.parse_accelerator(str(out / "accelerator.yaml")), zz


def zigzag_checks(acc, layers, out, tech=DEFAULT_TECH):
    paths = export_zigzag(acc, layers, out, tech=tech)
    assert [p.name for p in paths] == ["accelerator.yaml", "workload.yaml", "mapping.yaml", "README.txt"]
    readme = paths[-1].read_text()
    assert readme.startswith("Target: ZigZag 3.9.1") and "zigzag-dse 3.9.1" in readme
    wb = acc.word_bits

    hw = load(out / "accelerator.yaml")
    assert set(hw) == {"name", "memories", "operational_array"}
    arr = hw["operational_array"]
    assert arr["dimensions"] == ["D1", "D2"] and arr["sizes"] == [acc.pe_x, acc.pe_y]
    assert arr["unit_energy"] == pytest.approx(float(tech.e_mac(wb)))
    mems = hw["memories"]
    assert list(mems) == ["rf", "glb", "dram"]  # lowest level first
    for name, m in mems.items():
        assert sorted(m["operands"]) == ["I1", "I2", "O"]
        widths = {p["bandwidth_max"] for p in m["ports"]}
        assert len(widths) == 1 and all(p["bandwidth_min"] == wb for p in m["ports"])  # one cost per word
    assert mems["rf"]["size"] == acc.rf_bytes * 8 and mems["rf"]["served_dimensions"] == []
    assert mems["glb"]["size"] == acc.glb_bytes * 8 and mems["glb"]["served_dimensions"] == ["D1", "D2"]
    assert mems["glb"]["ports"][0]["bandwidth_max"] == round(acc.glb_bw * 8)
    per_word = lambda m: m["r_cost"] / (m["ports"][0]["bandwidth_max"] / wb)
    assert per_word(mems["rf"]) == pytest.approx(float(tech.e_rf(acc.rf_bytes, wb)), rel=1e-6)
    assert per_word(mems["glb"]) == pytest.approx(float(tech.e_glb(acc.glb_bytes, wb)), rel=1e-6)
    assert per_word(mems["dram"]) == pytest.approx(float(tech.e_dram(wb)), rel=1e-6)

    wl = load(out / "workload.yaml")
    assert isinstance(wl, list) and len(wl) == len(layers)
    ids = [l["id"] for l in wl]
    assert ids == list(range(len(layers)))
    names = [l["name"] for l in wl]
    assert len(set(names)) == len(names)
    for entry, layer in zip(wl, layers):
        sizes = dict(zip(entry["loop_dims"], entry["loop_sizes"]))
        assert math.prod(entry["loop_sizes"]) == layer.macs
        assert entry["operand_precision"] == {"W": wb, "I": wb, "O": tech.psum_bits(wb), "O_final": wb}
        assert set(entry["operand_source"].values()) <= set(ids)
        ix, iy = entry["pr_loop_sizes"]
        assert ix == layer.stride * (sizes["OX"] - 1) + sizes["FX"]
        assert iy == layer.stride * (sizes["OY"] - 1) + sizes["FY"]
        if layer.groups > 1:
            assert (sizes["G"], sizes["K"], sizes["C"]) == (layer.groups, layer.K // layer.groups,
                                                            layer.C // layer.groups)
        else:
            assert "G" not in sizes and (sizes["K"], sizes["C"]) == (layer.K, layer.C)

    mapping = load(out / "mapping.yaml")
    assert mapping[0]["name"] == "default"
    assert {m["name"] for m in mapping} <= set(names) | {"default"}
    by_name = {l["name"]: l for l in wl}
    for m in mapping:
        assert m["memory_operand_links"] == {"O": "O", "W": "I2", "I": "I1"}
        for dim, entries in m["spatial_mapping"].items():
            cap = acc.pe_x if dim == "D1" else acc.pe_y
            factors = [ZZ_SPATIAL.match(e).groups() for e in entries]
            assert math.prod(int(f) for _, f in factors) <= cap
            if m["name"] != "default":
                assert all(d in by_name[m["name"]]["loop_dims"] for d, _ in factors)
    zigzag_validate(out)
    return wl, mapping


def test_zigzag_eyeriss_alexnet(tmp_path, eyeriss_alexnet):
    acc, layers = eyeriss_alexnet
    wl, mapping = zigzag_checks(acc, layers, tmp_path / "zz")
    assert wl[1]["equation"] == "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]"
    assert wl[0]["operand_source"] == {"I": 0, "W": 0} and wl[3]["operand_source"] == {"I": 2, "W": 3}
    conv1 = next(m for m in mapping if m["name"] == "conv1")  # row-stationary: rows <- filter rows
    assert "FY, 11" in conv1["spatial_mapping"]["D2"]


@pytest.mark.parametrize("name", ["tpu-like", "shidiannao-like", "dance-rs"])
def test_zigzag_depthwise_grouped_and_linear(tmp_path, name):
    wl, _ = zigzag_checks(get_accelerator(name), MIXED, tmp_path / name, tech=ZIGZAG_TECH)
    dw = dict(zip(wl[1]["loop_dims"], wl[1]["loop_sizes"]))
    assert (dw["G"], dw["K"], dw["C"]) == (16, 1, 1)
    fc = dict(zip(wl[4]["loop_dims"], wl[4]["loop_sizes"]))  # a batched linear layer: the batch is the rows
    assert (fc["B"], fc["K"], fc["C"], fc["OY"], fc["OX"], fc["FY"], fc["FX"]) == (1, 10, 32 * 14 * 14, 4, 1, 1, 1)


def test_zigzag_export_runs_in_zigzag_and_equals_the_backend(tmp_path):
    """The exported files load and run in ZigZag 3.9.1's own API, and give, layer by layer, the
    latency and energy the ZigZag backend reports for the same design."""
    pytest.importorskip("zigzag", reason='the zigzag extra is not installed (pip install "coexplore[zigzag]")')
    from zigzag.api import get_hardware_performance_zigzag

    from accelerators import ZigZagBackend

    layers = [conv(4, 4, 1, 2, name="pw"), depthwise(4, 3, 4, name="dw"), linear(16, 8, N=2, name="fc")]
    for df in ("ws", "os"):
        acc = Accelerator(pe_x=4, pe_y=4, rf_bytes=32, glb_bytes=8 * 1024, dataflow=df, name=f"tiny-{df}")
        out = tmp_path / df
        export_zigzag(acc, layers, out, tech="zigzag")
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        try:  # the API configures the root logger; keep the test run's logging as it was
            energy, latency, cmes = get_hardware_performance_zigzag(
                str(out / "workload.yaml"), str(out / "accelerator.yaml"), str(out / "mapping.yaml"), opt="EDP",
                dump_folder=str(tmp_path / f"dump-{df}"), loma_show_progress_bar=False)
        finally:
            root.setLevel(level)
            root.handlers[:] = handlers
        per_layer = [(c.energy_total, c.latency_total2) for c, _ in cmes[0][1]]
        backend = ZigZagBackend(tech="zigzag", workers=1, cache=False, progress=False)
        mine = [(r.record["energy_pj"], r.record["latency_cycles"]) for r in backend.pairs([(l, acc) for l in layers])]
        assert [x for pair in per_layer for x in pair] == pytest.approx([x for pair in mine for x in pair], rel=1e-9)
        costs = backend.evaluate(layers, [acc])
        assert costs.energy_total_j[0] == pytest.approx(energy * 1e-12, rel=1e-9)
        assert costs.cycles[0].sum() == pytest.approx(latency, rel=1e-9)


def test_export_all_and_bad_input(tmp_path):
    res = export_all(get_accelerator("dance-ws"), MIXED[:2], tmp_path)
    assert (tmp_path / "timeloop" / "README.txt") in res["timeloop"]
    assert (tmp_path / "zigzag" / "README.txt") in res["zigzag"]
    with pytest.raises(ConfigError, match="empty"):
        export_timeloop(get_accelerator("eyeriss"), [], tmp_path / "x")
    with pytest.raises(ConfigError):
        export_zigzag(get_accelerator("eyeriss"), ["conv1"], tmp_path / "y")
    with pytest.raises(ConfigError, match="objective"):
        export_timeloop(get_accelerator("eyeriss"), MIXED, tmp_path / "z", objective="speed")
    with pytest.raises(ConfigError, match="objective"):
        export_zigzag(get_accelerator("eyeriss"), MIXED, tmp_path / "w", objective="speed")


def test_spatial_placement_spreads_and_flags_what_does_not_fit():
    from accelerators.zigzag_backend import place_spatial

    placed, exact = place_spatial({"K": 6, "C": 1}, "ws", pe_x=2, pe_y=3)  # 6 = 2 x 3 over both dimensions
    assert exact and placed == {"D1": ["K, 2"], "D2": ["K, 3"]}
    placed, exact = place_spatial({"K": 7}, "ws", pe_x=2, pe_y=3)  # 7 PEs cannot be a 2 x 3 rectangle
    assert not exact and placed == {"D1": ["K, 2"], "D2": ["K, 3"]}
    placed, exact = place_spatial({"C": 4, "K": 4, "G": 2}, "ws", pe_x=4, pe_y=8)
    assert exact and placed == {"D1": ["K, 4"], "D2": ["C, 4", "G, 2"]}


# ---- dataflows: hints come from the registry ----------------------------------------------

@pytest.mark.parametrize("dataflow", list_dataflows())
def test_every_registered_dataflow_exports(tmp_path, dataflow):
    acc = Accelerator(pe_x=8, pe_y=12, rf_bytes=64, glb_bytes=64 * 1024, dataflow=dataflow)
    timeloop_checks(acc, MIXED, tmp_path / "tl")
    zigzag_checks(acc, MIXED, tmp_path / "zz")
    hints = get_dataflow(dataflow).timeloop
    cons = load(tmp_path / "tl" / "constraints.yaml")["architecture_constraints"]["targets"]
    assert cons[0]["permutation"] == hints.spatial_permutation and cons[1]["factors"] == hints.rf_factors


@pytest.fixture
def user_dataflows():
    """A WS variant with its own export hints, and one without any."""
    ws = get_dataflow("ws")
    register_dataflow(dataclasses.replace(
        ws, name="ws-t", long_name="transposed weight-stationary",
        zigzag=ZigZagHints(placement=(("K", "D2"), ("C", "D1"), ("G", "D2")), default=("C", "K")),
        timeloop=TimeloopHints("R=1 S=1 P=1 Q=1 N=1", "CM", 1, "C=1 M=1", "SR")))
    register_dataflow(dataclasses.replace(ws, name="ws-nohints", long_name="no hints", zigzag=None, timeloop=None))
    yield
    DATAFLOWS.unregister("ws-t")
    DATAFLOWS.unregister("ws-nohints")


def test_user_dataflow_hints_are_used(tmp_path, user_dataflows):
    acc = Accelerator(pe_x=16, pe_y=4, rf_bytes=16, glb_bytes=64 * 1024, dataflow="ws-t", name="t")
    export_all(acc, MIXED, tmp_path)
    cons = load(tmp_path / "timeloop" / "constraints.yaml")["architecture_constraints"]["targets"]
    assert cons[0]["permutation"] == "CM"
    mapping = load(tmp_path / "zigzag" / "mapping.yaml")
    assert mapping[0]["spatial_mapping"] == {"D1": ["C, 16"], "D2": ["K, 4"]}
    assert "transposed weight-stationary" in (tmp_path / "zigzag" / "README.txt").read_text()


def test_dataflow_without_hints_is_refused(tmp_path, user_dataflows):
    acc = Accelerator(pe_x=16, pe_y=4, rf_bytes=16, glb_bytes=64 * 1024, dataflow="ws-nohints")
    for export, tool in ((export_timeloop, "timeloop"), (export_zigzag, "zigzag"), (export_all, "timeloop")):
        with pytest.raises(ConfigError, match=f"dataflow 'ws-nohints' has no {tool} export hints") as exc:
            export(acc, MIXED, tmp_path / export.__name__)
        assert "\n" not in str(exc.value)
        assert not (tmp_path / export.__name__).exists()  # refused before anything is written


# ---- operand precision ------------------------------------------------------------------

def _with_bits(layers):
    out = [dataclasses.replace(l, weight_bits=4, act_bits=8) for l in layers]
    out[0] = dataclasses.replace(out[0], weight_bits=8, act_bits=8, out_bits=24)
    return out


def test_exports_carry_operand_precision(tmp_path):
    acc = get_accelerator("eyeriss").with_(precision="bit-fused")
    layers = _with_bits(MIXED)
    export_zigzag(acc, layers, tmp_path / "zz")
    wl = load(tmp_path / "zz" / "workload.yaml")
    assert wl[0]["operand_precision"] == {"W": 8, "I": 8, "O": 24, "O_final": 24}
    assert wl[1]["operand_precision"] == {"W": 4, "I": 8, "O": 16, "O_final": 16}
    zz_readme = (tmp_path / "zz" / "README.txt").read_text()
    assert "Precision" in zz_readme and "w4a8" in zz_readme and "'bit-fused'" in zz_readme
    from zigzag.parser.workload_validator import WorkloadValidator
    assert WorkloadValidator(wl).validate()

    export_timeloop(acc, layers, tmp_path / "tl")
    index = load(tmp_path / "tl" / "layers.yaml")
    assert index["accelerator"]["precision"] == "bit-fused"
    assert index["layers"][0]["precision"] == {"weights": 8, "inputs": 8, "outputs": 24, "partial_sums": 24}
    assert index["layers"][1]["precision"] == {"weights": 4, "inputs": 8, "outputs": 16, "partial_sums": 16}
    assert index["layers"][1]["layer"]["weight_bits"] == 4
    tl_readme = (tmp_path / "tl" / "README.txt").read_text()
    assert "one word-bits per buffer" in tl_readme and "no model of a bit-serial or bit-fused MAC" in tl_readme


def test_exports_without_precision_are_unchanged(tmp_path):
    acc = get_accelerator("eyeriss")
    export_zigzag(acc, MIXED, tmp_path / "zz")
    export_timeloop(acc, MIXED, tmp_path / "tl")
    assert "Precision" not in (tmp_path / "zz" / "README.txt").read_text()
    assert "Precision" not in (tmp_path / "tl" / "README.txt").read_text()
    assert all("precision" not in e for e in load(tmp_path / "tl" / "layers.yaml")["layers"])
    assert load(tmp_path / "zz" / "workload.yaml")[0]["operand_precision"] == {"W": 16, "I": 16, "O": 16,
                                                                              "O_final": 16}
