"""Export a found accelerator and its workload to Timeloop and ZigZag input files.

coexplore prices designs with its own analytical model (``accelerators.cost_model``);
users who trust Timeloop (Parashar et al., ISPASS 2019) with Accelergy (Wu et al., ICCAD
2019) -- DANCE's reference cost model -- or ZigZag (Mei et al., IEEE TC 2021) can re-check a
design in those tools with the files written here.

Targeted formats (chosen after reading the tools' own examples and parsers):

* **Timeloop v0.3 input format**: ``architecture: {version: 0.3, subtree/local}``, as in
  the ``eyeriss_like`` design of Accelergy-Project/timeloop-accelergy-exercises and as
  parsed by NVlabs/timeloop ``src/model/buffer.cpp`` (``depth``, ``width``,
  ``block-size``, ``word-bits``, ``read_bandwidth``/``write_bandwidth`` in words per cycle,
  ``meshX``/``meshY``).  v0.3 rather than v0.4 because v0.4 needs the custom YAML tags
  ``!Container``/``!Component``, which plain YAML loaders (and ``yaml.safe_load``) reject;
  timeloopfe still reads v0.3 specifications.  Problems use Timeloop's ``CNN-Layer`` shape;
  grouped and depthwise layers use a grouped shape with an extra ``G`` dimension (the
  layout of pytorch2timeloop's ``grouped_convolution.yaml``, with ``G`` declared in
  ``dimensions``), so that one problem file still describes one whole layer.  Constraints
  use the v0.3 ``architecture_constraints: targets:`` list.
* **ZigZag 3.x YAML inputs**, as validated by the snake_case parser modules of
  KULeuven-MICAS/zigzag (e.g. commit 14da844): ``zigzag/parser/accelerator_validator.py``
  (``memories`` with ``size`` in bits, ``r_bw``/``w_bw`` in bits per cycle,
  ``r_port``/``w_port``/``rw_port``, ``ports`` as ``fh``/``tl``/``fl``/``th``
  allocations, ``served_dimensions``; ``operational_array`` with ``input_precision``,
  ``unit_energy``, ``unit_area``, ``dimensions``, ``sizes``), ``workload_validator.py``
  (a list of layers with ``equation``, ``dimension_relations``, ``loop_dims``/
  ``loop_sizes``, ``operand_precision``, ``operand_source``, ``pr_loop_dims``/
  ``pr_loop_sizes``/``padding``) and ``mapping_validator.py`` (entries matched by layer
  name, operator type or ``default``, with ``spatial_mapping`` and
  ``memory_operand_links``).  Earlier 3.x releases call the MAC fields
  ``multiplier_energy``/``multiplier_area`` and only accept operator names in mappings;
  later ones replace the ``fh``/``tl`` ports by named ports with ``bandwidth_min``/
  ``bandwidth_max``.  Grouped layers use ZigZag's own grouped equation (from its ONNX
  ``ConvParser``).

Everything that had to be approximated is written into the README.txt of each export.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from accelerators import Accelerator, Dataflow, Layer, explain, get_dataflow
from .common import ConfigError, PathLike, atomic_write_text, write_yaml
from accelerators.technology import COST_MODEL_VERSION, DEFAULT_TECH, Technology

logger = logging.getLogger(__name__)

TIMELOOP_FORMAT = "Timeloop v0.3 input format (architecture version 0.3, subtree/local; Accelergy primitive classes)"
ZIGZAG_FORMAT = ("ZigZag 3.x YAML inputs (schema of zigzag/parser/accelerator_validator.py, workload_validator.py "
                 "and mapping_validator.py: r_bw/w_bw memories with fh/tl/fl/th ports, unit_energy/unit_area)")

_DRAM_WIDTH_BITS = 64  # an LPDDR4-like 64-bit channel, as in the Timeloop/Accelergy examples
_TIMELOOP_METRICS = {"energy": ["energy"], "latency": ["delay", "energy"], "edp": ["edp"],
                     "dram": ["last-level-accesses", "energy"]}
_ZIGZAG_OPT = {"energy": "energy", "latency": "latency", "edp": "EDP", "dram": "energy"}


# ---------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------

def _check(acc: Accelerator, layers: Sequence[Layer]) -> None:
    if not isinstance(acc, Accelerator):
        raise ConfigError(f"export: expected an Accelerator, got {type(acc).__name__}")
    if len(layers) == 0:
        raise ConfigError("export: the layer list is empty")
    for i, l in enumerate(layers):
        if not isinstance(l, Layer):
            raise ConfigError(f"export: layers[{i}] is a {type(l).__name__}, not a Layer")


def _hints(dataflow: str, tool: str) -> Any:
    """The dataflow's export hints for ``tool`` (``"timeloop"`` or ``"zigzag"``); a dataflow without them is refused."""
    df: Dataflow = get_dataflow(dataflow)
    hints = getattr(df, tool)
    if hints is None:
        cls = {"timeloop": "TimeloopHints", "zigzag": "ZigZagHints"}[tool]
        raise ConfigError(f"export: dataflow {df.name!r} has no {tool} export hints (its Dataflow.{tool} is None); "
                          f"register it with a {cls} to export it")
    return hints


def _layer_names(layers: Sequence[Layer]) -> List[str]:
    """A unique, non-empty name per layer (duplicates get a suffix)."""
    names: List[str] = []
    used: Dict[str, int] = {}
    for i, l in enumerate(layers):
        base = l.name or f"layer{i}"
        n = used.get(base, 0)
        used[base] = n + 1
        names.append(base if n == 0 else f"{base}_{n}")
    return names


def _file_stem(i: int, name: str, width: int) -> str:
    return f"{i:0{width}d}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")


def _round(x: float, digits: int = 6) -> float:
    """Round a float for readable YAML without losing meaningful precision."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def _glb_geometry(acc: Accelerator) -> Tuple[int, int, int, bool]:
    """GLB ``(depth, width_bits, block_size_words, exact)``: the widest row of up to 64 bits.

    ``exact`` is False when the capacity is not a whole number of words (the depth is then
    rounded down).
    """
    bits = acc.glb_bytes * 8
    wb = acc.word_bits
    for width in (64, 32, 16, 8, 4):
        if width % wb == 0 and bits % width == 0:
            return bits // width, width, width // wb, True
    return bits // wb, wb, 1, False


def per_word_energies_pj(acc: Accelerator, tech: Technology = DEFAULT_TECH) -> Dict[str, float]:
    """coexplore's per-access energies for this accelerator, pJ per word (per MAC for ``mac``)."""
    wb = acc.word_bits
    return {"mac": float(tech.e_mac(wb)), "rf": float(tech.e_rf(acc.rf_bytes, wb)), "noc": float(tech.e_noc(wb)),
            "glb": float(tech.e_glb(acc.glb_bytes, wb)), "dram": float(tech.e_dram(wb))}


def _energy_table(acc: Accelerator, tech: Technology) -> str:
    e = per_word_energies_pj(acc, tech)
    return "\n".join(f"  {k:5s} {v:10.4f} pJ per {'MAC' if k == 'mac' else f'{acc.word_bits}-bit word'}"
                     for k, v in e.items())


def _acc_summary(acc: Accelerator) -> str:
    return (f"{acc.name or 'accelerator'}: {acc.pe_y} x {acc.pe_x} PEs ({get_dataflow(acc.dataflow).long_name}), "
            f"RF {acc.rf_bytes} B per PE, GLB {acc.glb_bytes} B, {acc.word_bits}-bit words, "
            f"{acc.clock_hz / 1e6:g} MHz, DRAM {acc.dram_bw:g} B/cycle, GLB<->array {acc.glb_bw:g} B/cycle")


# ---------------------------------------------------------------------------------------
# Timeloop
# ---------------------------------------------------------------------------------------

def _cnn_shape(grouped: bool) -> Dict[str, Any]:
    """Timeloop's CNN-Layer problem shape, optionally with a group dimension ``G``."""
    g = lambda: [["G"]]  # a fresh list per use, so the YAML has no anchors/aliases
    coeffs = [{"name": "Wstride", "default": 1}, {"name": "Hstride", "default": 1},
              {"name": "Wdilation", "default": 1}, {"name": "Hdilation", "default": 1}]
    weights = [[["C"]], [["M"]], [["R"]], [["S"]]]
    inputs = [[["N"]], [["C"]], [["R", "Wdilation"], ["P", "Wstride"]], [["S", "Hdilation"], ["Q", "Hstride"]]]
    outputs = [[["N"]], [["M"]], [["Q"]], [["P"]]]
    dims = ["C", "M", "R", "S", "N", "P", "Q"]
    if grouped:
        dims = ["G"] + dims
        weights = [g()] + weights
        inputs = [inputs[0], g()] + inputs[1:]
        outputs = [outputs[0], g()] + outputs[1:]
    return {"name": "Grouped-CNN-Layer" if grouped else "CNN-Layer", "dimensions": dims, "coefficients": coeffs,
            "data-spaces": [{"name": "Weights", "projection": weights},
                            {"name": "Inputs", "projection": inputs},
                            {"name": "Outputs", "projection": outputs, "read-write": True}]}


def timeloop_problem(layer: Layer) -> Dict[str, Any]:
    """The Timeloop problem of one layer.

    Ungrouped layers use ``CNN-Layer`` with ``M = K``; grouped and depthwise layers use
    ``Grouped-CNN-Layer`` with ``G = groups``, ``C = C/G`` and ``M = K/G`` per group, so the
    instance dimensions multiply to the layer's MAC count in both cases.  A linear layer is
    a 1x1 convolution on a 1x1 map.
    """
    grouped = layer.groups > 1
    inst: Dict[str, int] = {}
    if grouped:
        inst["G"] = layer.groups
    inst.update({"C": layer.C // layer.groups, "M": layer.K // layer.groups, "R": layer.R, "S": layer.S,
                 "N": layer.N, "P": layer.P, "Q": layer.Q, "Wstride": layer.stride, "Hstride": layer.stride,
                 "Wdilation": 1, "Hdilation": 1})
    return {"problem": {"shape": _cnn_shape(grouped), "instance": inst}}


def timeloop_architecture(acc: Accelerator, technology: str = "65nm") -> Dict[str, Any]:
    """The v0.3 architecture: DRAM -> global buffer -> ``pe_y x pe_x`` PEs (register file + MAC)."""
    wb = acc.word_bits
    depth, width, block, _ = _glb_geometry(acc)
    pe_attrs = {"meshX": acc.pe_x, "meshY": acc.pe_y}
    return {"architecture": {
        "version": 0.3,
        "subtree": [{
            "name": "system",
            "attributes": {"technology": technology, "global_cycle_seconds": _round(1.0 / acc.clock_hz, 9)},
            "local": [{
                "name": "DRAM", "class": "DRAM",
                "attributes": {"type": "LPDDR4", "width": _DRAM_WIDTH_BITS, "block-size": _DRAM_WIDTH_BITS // wb,
                               "word-bits": wb, "datawidth": wb,
                               "read_bandwidth": _round(acc.dram_bw * 8 / wb),
                               "write_bandwidth": _round(acc.dram_bw * 8 / wb)},
            }],
            "subtree": [{
                "name": re.sub(r"[^A-Za-z0-9_]+", "_", acc.name) or "accelerator",
                "attributes": {"technology": technology},
                "local": [{
                    "name": "global_buffer", "class": "SRAM",
                    "attributes": {"depth": depth, "width": width, "block-size": block, "word-bits": wb,
                                   "datawidth": wb, "n_banks": 1,
                                   "read_bandwidth": _round(acc.glb_bw * 8 / wb),
                                   "write_bandwidth": _round(acc.glb_bw * 8 / wb)},
                }],
                "subtree": [{
                    "name": f"PE[0..{acc.num_pes - 1}]",
                    "local": [
                        {"name": "register_file", "class": "regfile",
                         "attributes": {"depth": acc.rf_words, "width": wb, "block-size": 1, "word-bits": wb,
                                        "datawidth": wb, **pe_attrs}},
                        {"name": "mac", "class": "intmac", "attributes": {"datawidth": wb, **pe_attrs}},
                    ],
                }],
            }],
        }],
    }}


def timeloop_constraints(acc: Accelerator) -> Dict[str, Any]:
    """The dataflow's hints (:class:`~accelerators.dataflows.TimeloopHints`) as v0.3 architecture constraints.

    The spatial constraint sits on the global buffer (the fanout to the PE array); in a
    spatial permutation the first ``split`` dimensions go along X (``pe_x`` columns), the
    rest along Y (``pe_y`` rows).  Only dimensions shared by the grouped and ungrouped
    shapes are named, so one file serves every layer.  The built-ins:

    * ws: columns <- M (output channels), rows <- C (input channels); each PE keeps the
      taps of one (c, m) filter in its register file.
    * os: columns <- Q, rows <- P (output pixels), left-over PEs <- M; each PE accumulates
      one output pixel (of one or more channels) in its register file.
    * rs: columns <- P (output rows), rows <- R (filter rows) then C, left-over <- M; each
      PE runs a 1-D convolution of one filter row over one input row (Eyeriss).

    Raises:
        ConfigError: the dataflow has no Timeloop hints.
    """
    return {"architecture_constraints": {"targets": _hints(acc.dataflow, "timeloop").constraints()}}


def timeloop_mapper(objective: str = "edp") -> Dict[str, Any]:
    """A v0.3 mapper configuration that optimises the same objective as the search."""
    if objective not in _TIMELOOP_METRICS:
        raise ConfigError(f"export: objective {objective!r} is unknown; allowed values: {sorted(_TIMELOOP_METRICS)}")
    return {"mapper": {"optimization-metrics": _TIMELOOP_METRICS[objective], "live-status": False,
                       "num-threads": 8, "timeout": 15000, "victory-condition": 500,
                       "algorithm": "random-pruned", "max-permutations-per-if-visit": 16}}


def export_timeloop(acc: Accelerator, layers: Sequence[Layer], out_dir: PathLike, objective: str = "edp",
                    technology: str = "65nm", tech: Technology = DEFAULT_TECH) -> List[Path]:
    """Write Timeloop v0.3 inputs for an accelerator and a workload.

    Files: ``arch.yaml``, ``constraints.yaml`` (dataflow hints), ``mapper.yaml``,
    ``problems/<index>_<layer>.yaml`` (one per layer), ``layers.yaml`` (index: problem
    file, layer record, MACs) and ``README.txt``.

    Args:
        acc: the accelerator.
        layers: the workload, one problem file per layer.
        out_dir: output folder (created if needed).
        objective: mapping objective, mapped to Timeloop's ``optimization-metrics``.
        technology: the technology attribute handed to Accelergy.
        tech: coexplore's technology constants (their per-access energies go into the
            README for comparison).

    Returns:
        The paths written, README last.
    """
    _check(acc, layers)
    out = Path(out_dir)
    written: List[Path] = []
    for fname, data in (("arch.yaml", timeloop_architecture(acc, technology)),
                        ("constraints.yaml", timeloop_constraints(acc)),
                        ("mapper.yaml", timeloop_mapper(objective))):
        write_yaml(out / fname, data)
        written.append(out / fname)
    names = _layer_names(layers)
    width = max(2, len(str(len(layers) - 1)))
    index = []
    for i, (layer, name) in enumerate(zip(layers, names)):
        path = out / "problems" / f"{_file_stem(i, name, width)}.yaml"
        write_yaml(path, timeloop_problem(layer))
        written.append(path)
        index.append({"problem": f"problems/{path.name}", "name": name, "macs": layer.macs,
                      "shape": "Grouped-CNN-Layer" if layer.groups > 1 else "CNN-Layer", "layer": layer.to_dict()})
    write_yaml(out / "layers.yaml", {"accelerator": acc.to_dict(), "layers": index})
    written.append(out / "layers.yaml")
    readme = out / "README.txt"
    atomic_write_text(readme, _timeloop_readme(acc, layers, written, tech))
    written.append(readme)
    logger.info("wrote Timeloop inputs for %d layers to %s", len(layers), out)
    return written


def _timeloop_readme(acc: Accelerator, layers: Sequence[Layer], written: Sequence[Path], tech: Technology) -> str:
    depth, width, block, exact = _glb_geometry(acc)
    first_problem = next(p for p in written if p.parent.name == "problems")
    notes = [
        f"Target: {TIMELOOP_FORMAT}.",
        "Written by coexplore (cost model version " + COST_MODEL_VERSION + ") for:",
        "  " + _acc_summary(acc),
        f"  {len(layers)} layers, {sum(l.macs for l in layers):,} MACs",
        "",
        "Files",
        "  arch.yaml         DRAM -> global_buffer (SRAM) -> PE[0..N-1] {register_file (regfile), mac (intmac)}",
        "  constraints.yaml  dataflow hints (spatial factors/permutation, RF temporal factors); delete to let",
        "                    the mapper search freely",
        "  mapper.yaml       mapper settings; optimisation metric matches the search objective",
        "  problems/*.yaml   one problem per layer",
        "  layers.yaml       index: problem file -> layer record and MAC count",
        "",
        "Run (Timeloop/Accelergy v0.3 command line), one layer at a time:",
        f"  timeloop-mapper arch.yaml constraints.yaml mapper.yaml problems/{first_problem.name}",
        "",
        "Mapping of the hardware",
        f"  GLB: depth {depth} x width {width} bits (block-size {block} words of {acc.word_bits} bits)"
        + ("" if exact else f"; capacity rounded down from {acc.glb_bytes} B to whole words"),
        f"  GLB read/write bandwidth: {acc.glb_bw:g} B/cycle = {acc.glb_bw * 8 / acc.word_bits:g} words/cycle",
        f"  DRAM: 64-bit LPDDR4 channel, bandwidth {acc.dram_bw:g} B/cycle = {acc.dram_bw * 8 / acc.word_bits:g} "
        "words/cycle",
        f"  PE array: meshX = pe_x = {acc.pe_x}, meshY = pe_y = {acc.pe_y}; RF depth {acc.rf_words} words"
        + ("" if (acc.rf_bytes * 8) % acc.word_bits == 0 else f" (rounded down from {acc.rf_bytes} B)"),
        "",
        "Mapping of the workload",
        "  Ungrouped layers use the CNN-Layer shape: C, M (= K output channels), R, S (filter), N (batch),",
        "  P, Q (output rows/cols), Wstride = Hstride = stride.  Grouped and depthwise layers use the",
        "  Grouped-CNN-Layer shape, which adds a group dimension G to every data space; C and M are then",
        "  per group (C/G, K/G).  A depthwise layer is G = channels, C = M = 1.  The product of the",
        "  instance dimensions is the layer's MAC count in both cases.  Linear layers are 1x1 convolutions",
        "  on a 1x1 map.  Inputs are the padded feature maps (coexplore's layers carry no padding): a",
        "  layer touches (P-1)*stride+R rows, which is what Timeloop computes from the projection.",
        "",
        "Approximations (results will differ from coexplore's analytical model for these reasons)",
        "  - Energies come from Accelergy's plug-ins for the named classes, not from coexplore's",
        "    technology constants.  coexplore's per-access energies for this design, for comparison:",
        _energy_table(acc, tech),
        "    and static power of " + f"{tech.p_static_mw_per_mm2:g} mW/mm^2, which Timeloop does not charge.",
        "  - coexplore's RF is one unified storage per PE for weights, inputs and partial sums; it is",
        "    exported as one regfile per PE (no per-operand split as in Eyeriss' three scratchpads).",
        "  - coexplore's DRAM bandwidth is shared by reads and writes; it is exported as equal read and",
        "    write bandwidths, which lets Timeloop overlap the two.",
        "  - The NoC is Timeloop's default (legacy) network; coexplore charges "
        f"{float(tech.e_noc(acc.word_bits)):g} pJ per word moved to or between PEs.",
        "  - The constraints are hints for the dataflow's spatial unrolling; coexplore's own mapping",
        "    (coexplore.explain) may use left-over PEs differently (e.g. block-diagonal groups in WS).",
        "  - The mapper searches a mapping per layer; coexplore picks the best of its own mapping space,",
        "    so the two mappings are not the same.",
    ]
    return "\n".join(notes) + "\n"


# ---------------------------------------------------------------------------------------
# ZigZag
# ---------------------------------------------------------------------------------------

def _zz_ports(n_operands: int, rw: bool) -> List[Dict[str, str]]:
    """ZigZag port allocations: inputs are filled from above and read from below; the output
    is also filled from below (partial sums) and read towards above."""
    if rw:
        one = {"fh": "rw_port_1", "tl": "rw_port_1"}
        out = {"fh": "rw_port_1", "tl": "rw_port_1", "fl": "rw_port_1", "th": "rw_port_1"}
    else:
        one = {"fh": "w_port_1", "tl": "r_port_1"}
        out = {"fh": "w_port_1", "tl": "r_port_1", "fl": "w_port_1", "th": "r_port_1"}
    return [dict(one) for _ in range(n_operands - 1)] + [out]


def zigzag_accelerator(acc: Accelerator, tech: Technology = DEFAULT_TECH) -> Dict[str, Any]:
    """ZigZag accelerator dict: RF per PE -> GLB -> DRAM, a ``pe_x x pe_y`` operational array.

    ``size`` is in bits, ``r_bw``/``w_bw`` in bits per cycle; ``r_cost``/``w_cost`` are pJ per
    access of the full port width, computed from coexplore's per-word energies, with
    ``min_r_granularity``/``min_w_granularity`` of one word so that a one-word access costs
    one word's energy.  The RF's write cost includes one NoC transfer, because every RF
    fill arrives over the array's network.
    """
    wb = acc.word_bits
    e = per_word_energies_pj(acc, tech)
    ops = ["I1", "I2", "O"]
    rf_bw = 3 * wb  # one word of each operand per cycle, as the analytical model assumes
    glb_bw = max(wb, int(round(acc.glb_bw * 8)))
    dram_bw = max(wb, int(round(acc.dram_bw * 8)))

    def mem(size_bits: int, bw: int, r_pj: float, w_pj: float, area: float, served: List[str], rw: bool):
        words = bw / wb
        return {"size": int(size_bits), "r_bw": bw, "w_bw": bw, "r_cost": _round(r_pj * words),
                "w_cost": _round(w_pj * words), "area": _round(area), "r_port": 0 if rw else 1,
                "w_port": 0 if rw else 1, "rw_port": 1 if rw else 0, "latency": 1,
                "min_r_granularity": wb, "min_w_granularity": wb, "operands": list(ops),
                "ports": _zz_ports(len(ops), rw), "served_dimensions": served}

    rf_area = acc.rf_bytes / 1024.0 * tech.a_rf_mm2_per_kb
    glb_area = acc.glb_bytes / 1024.0 * tech.a_sram_mm2_per_kb
    return {
        "name": re.sub(r"[^A-Za-z0-9_]+", "_", acc.name) or "coexplore_accelerator",
        "memories": {
            "rf": mem(acc.rf_bytes * 8, rf_bw, e["rf"], e["rf"] + e["noc"], rf_area, [], rw=False),
            "glb": mem(acc.glb_bytes * 8, glb_bw, e["glb"], e["glb"], glb_area, ["D1", "D2"], rw=False),
            "dram": mem(10_000_000_000, dram_bw, e["dram"], e["dram"], 0.0, ["D1", "D2"], rw=True),
        },
        "operational_array": {"input_precision": [wb, wb], "unit_energy": _round(e["mac"]),
                              "unit_area": _round(float(tech.a_mac(wb))), "dimensions": ["D1", "D2"],
                              "sizes": [acc.pe_x, acc.pe_y]},
    }


_CONV_EQ = "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]"
_GROUPED_EQ = "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]"


def zigzag_layer(layer: Layer, layer_id: int, name: str, source_id: int, word_bits: int) -> Dict[str, Any]:
    """One ZigZag workload layer.

    Args:
        layer: the layer.
        layer_id: its ``id``.
        name: its unique name (mapping entries may refer to it).
        source_id: ``id`` of the layer producing its input (its own id for the first).
        word_bits: operand precision in bits (weights, inputs, partial and final outputs).
    """
    st = layer.stride
    if layer.groups > 1:
        eq = _GROUPED_EQ
        dims = ["B", "G", "K", "C", "OY", "OX", "FY", "FX"]
        sizes = [layer.N, layer.groups, layer.K // layer.groups, layer.C // layer.groups, layer.P, layer.Q,
                 layer.R, layer.S]
    else:
        eq = _CONV_EQ
        dims = ["B", "K", "C", "OY", "OX", "FY", "FX"]
        sizes = [layer.N, layer.K, layer.C, layer.P, layer.Q, layer.R, layer.S]
    return {
        "id": layer_id, "name": name, "operator_type": "Conv", "equation": eq,
        "dimension_relations": [f"ix={st}*ox+1*fx", f"iy={st}*oy+1*fy"],
        "loop_dims": dims, "loop_sizes": [int(s) for s in sizes],
        "operand_precision": {"W": word_bits, "I": word_bits, "O": word_bits, "O_final": word_bits},
        "operand_source": {"I": source_id, "W": layer_id},
        "pr_loop_dims": ["IX", "IY"], "pr_loop_sizes": [layer.W, layer.H],
        "padding": [[0, 0], [0, 0]],
    }


def zigzag_workload(layers: Sequence[Layer], word_bits: int) -> List[Dict[str, Any]]:
    """The ZigZag workload list; each layer reads the previous layer's output (a chain)."""
    names = _layer_names(layers)
    return [zigzag_layer(l, i, n, i - 1 if i > 0 else 0, word_bits) for i, (l, n) in enumerate(zip(layers, names))]


_SPATIAL_DIMS = {"groups": "G", "out_channels": "K", "in_channels": "C", "filter_rows": "FY", "out_rows": "OY",
                 "out_cols": "OX"}


def _place(factors: Dict[str, int], dataflow: str, pe_x: int, pe_y: int) -> Tuple[Dict[str, List[str]], bool]:
    """Spread spatial unrolling factors over D1/D2 greedily, in the order and on the sides the
    dataflow's :class:`~accelerators.dataflows.ZigZagHints` prefer; False if not exactly representable."""
    cap = {"D1": pe_x, "D2": pe_y}
    placed: Dict[str, List[str]] = {"D1": [], "D2": []}
    exact = True
    for dim, pref in _hints(dataflow, "zigzag").placement:
        f = factors.get(dim, 1)
        if f <= 1:
            continue
        other = "D1" if pref == "D2" else "D2"
        if f <= cap[pref]:
            split = {pref: f}
        elif f <= cap[other]:
            split = {other: f}
        else:  # across both: largest divisor that fits the preferred side, if the rest fits the other
            a = max((d for d in range(1, cap[pref] + 1) if f % d == 0 and f // d <= cap[other]), default=0)
            if a:
                split = {pref: a, other: f // a}
            else:
                a = cap[pref]
                b = min(cap[other], -(-f // a))
                split = {pref: a, other: b}
                exact = exact and a * b == f
        for d, v in split.items():
            if v > 1:
                placed[d].append(f"{dim}, {v}")
                cap[d] //= v
    return placed, exact


def zigzag_mapping(acc: Accelerator, layers: Sequence[Layer],
                   objective: str = "edp") -> Tuple[List[Dict[str, Any]], int]:
    """ZigZag mapping entries: one per layer (matched by name) with the spatial unrolling that
    coexplore's mapping uses (``explain(...).spatial``), plus a dataflow-generic ``default``.

    Returns:
        ``(entries, n_inexact)``: the mapping list and how many layers' unrolling could not
        be expressed exactly on the two array dimensions.

    Raises:
        ConfigError: the dataflow has no ZigZag hints.
    """
    links = {"O": "O", "W": "I2", "I": "I1"}
    d1_dim, d2_dim = _hints(acc.dataflow, "zigzag").default
    entries: List[Dict[str, Any]] = [{"name": "default",
                                      "spatial_mapping": {"D1": [f"{d1_dim}, {acc.pe_x}"],
                                                          "D2": [f"{d2_dim}, {acc.pe_y}"]},
                                      "memory_operand_links": dict(links)}]
    inexact = 0
    cache: Dict[Layer, Dict[str, int]] = {}
    for layer, name in zip(layers, _layer_names(layers)):
        if layer not in cache:
            cache[layer] = explain(layer, acc, mapping_objective=objective).spatial
        factors = {_SPATIAL_DIMS[k]: int(v) for k, v in cache[layer].items()}
        if layer.groups == 1:
            factors.pop("G", None)
        placed, exact = _place(factors, acc.dataflow, acc.pe_x, acc.pe_y)
        inexact += not exact
        sm = {d: v for d, v in placed.items() if v}
        if not sm:  # nothing unrolled (a 1-PE-sized layer): keep the generic entry's shape
            sm = {"D1": [f"{d1_dim}, 1"]}
        entries.append({"name": name, "spatial_mapping": sm, "memory_operand_links": dict(links)})
    return entries, inexact


def export_zigzag(acc: Accelerator, layers: Sequence[Layer], out_dir: PathLike, objective: str = "edp",
                  tech: Technology = DEFAULT_TECH) -> List[Path]:
    """Write ZigZag 3.x inputs for an accelerator and a workload.

    Files: ``accelerator.yaml``, ``workload.yaml`` (all layers, chained by
    ``operand_source``), ``mapping.yaml`` (per-layer spatial unrolling from coexplore's
    mapping plus a ``default``) and ``README.txt``.

    Args:
        acc: the accelerator.
        layers: the workload.
        out_dir: output folder (created if needed).
        objective: the mapping objective used for the per-layer spatial unrolling.
        tech: technology constants for the memory and MAC energies and areas.

    Returns:
        The paths written, README last.
    """
    _check(acc, layers)
    out = Path(out_dir)
    mapping, inexact = zigzag_mapping(acc, layers, objective)
    files = {"accelerator.yaml": zigzag_accelerator(acc, tech),
             "workload.yaml": zigzag_workload(layers, acc.word_bits),
             "mapping.yaml": mapping}
    written: List[Path] = []
    for fname, data in files.items():
        write_yaml(out / fname, data)
        written.append(out / fname)
    readme = out / "README.txt"
    atomic_write_text(readme, _zigzag_readme(acc, layers, objective, inexact, tech))
    written.append(readme)
    logger.info("wrote ZigZag inputs for %d layers to %s", len(layers), out)
    return written


def _zigzag_readme(acc: Accelerator, layers: Sequence[Layer], objective: str, inexact: int,
                   tech: Technology) -> str:
    wb = acc.word_bits
    notes = [
        f"Target: {ZIGZAG_FORMAT}.",
        "Written by coexplore (cost model version " + COST_MODEL_VERSION + ") for:",
        "  " + _acc_summary(acc),
        f"  {len(layers)} layers, {sum(l.macs for l in layers):,} MACs",
        "",
        "Files",
        "  accelerator.yaml  memories rf (per PE) -> glb -> dram, operational array D1 x D2 = pe_x x pe_y",
        "  workload.yaml     one Conv layer per coexplore layer, chained by operand_source",
        "  mapping.yaml      per-layer spatial unrolling (coexplore's mapping) and a dataflow default",
        "",
        "Run (ZigZag 3.x Python API):",
        "  from zigzag.api import get_hardware_performance_zigzag",
        "  energy, latency, cmes = get_hardware_performance_zigzag(",
        f"      'workload.yaml', 'accelerator.yaml', 'mapping.yaml', opt='{_ZIGZAG_OPT.get(objective, 'EDP')}')",
        "  (latency is in cycles; coexplore's clock is " + f"{acc.clock_hz:g} Hz)",
        "",
        "Format variants: earlier 3.x releases name the MAC fields multiplier_energy/multiplier_area",
        "  (rename unit_energy/unit_area) and accept only operator names in mapping.yaml (keep the",
        "  'default' entry); later releases describe ports by name with bandwidth_min/bandwidth_max.",
        "",
        "Mapping of the hardware",
        f"  sizes in bits: rf {acc.rf_bytes * 8}, glb {acc.glb_bytes * 8}; bandwidths in bits/cycle: rf {3 * wb} "
        f"(one word of each operand), glb {max(wb, int(round(acc.glb_bw * 8)))}, "
        f"dram {max(wb, int(round(acc.dram_bw * 8)))}"
        + ("" if float(acc.dram_bw * 8).is_integer() else f" (rounded from {acc.dram_bw * 8:g})"),
        "  r_cost/w_cost: pJ per full-width access from coexplore's per-word energies x words per access;",
        "  min_r/w_granularity = one word, so a one-word access costs one word's energy:",
        _energy_table(acc, tech),
        "  The RF write cost includes one NoC transfer (every RF fill crosses the array network).",
        "  Areas in mm^2 from coexplore's technology constants (the 15% array overhead is not included).",
        "",
        "Mapping of the workload",
        "  Ungrouped layers: O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix] with B=N, K, C, OY=P, OX=Q,",
        "  FY=R, FX=S.  Grouped and depthwise layers use ZigZag's grouped equation",
        "  O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix] with G=groups, K=K/G, C=C/G",
        "  (depthwise: G=channels, K=C=1).  The loop sizes multiply to the layer's MAC count.",
        f"  Operand precision: W = I = O = O_final = {wb} bits (coexplore keeps partial sums at word width).",
        "  Padding: coexplore's layers carry no padding; inputs are the padded maps (pr_loop_sizes",
        "  IX=(Q-1)*stride+S, IY=(P-1)*stride+R, padding 0), the same input traffic coexplore counts.",
        "  operand_source chains each layer to the previous one; branches (residuals) are not represented.",
        "",
        "Approximations",
        "  - coexplore's RF is one unified storage per PE for all three operands; ZigZag sees one rf",
        "    memory holding I1, I2 and O.",
        "  - coexplore's DRAM bandwidth is shared by reads and writes; ZigZag gets one read/write port.",
        "  - Static power (" + f"{tech.p_static_mw_per_mm2:g} mW/mm^2 in coexplore) is not represented.",
        "  - mapping.yaml fixes the spatial unrolling to coexplore's; ZigZag searches the temporal",
        "    mapping itself (LOMA), so results differ where the temporal mappings differ.",
        (f"  - {inexact} layer(s) unroll a loop over more PEs than one array dimension holds; their\n"
         "    unrolling was spread over D1 and D2 and rounded up." if inexact
         else "  - Every layer's spatial unrolling was expressed exactly on D1/D2."),
    ]
    return "\n".join(notes) + "\n"


def export_all(acc: Accelerator, layers: Sequence[Layer], out_dir: PathLike,
               objective: str = "edp") -> Dict[str, List[Path]]:
    """Both exports, into ``out_dir/timeloop`` and ``out_dir/zigzag``; nothing is written when the
    dataflow lacks the hints of either tool."""
    _check(acc, layers)
    _hints(acc.dataflow, "timeloop")
    _hints(acc.dataflow, "zigzag")
    out = Path(out_dir)
    return {"timeloop": export_timeloop(acc, layers, out / "timeloop", objective=objective),
            "zigzag": export_zigzag(acc, layers, out / "zigzag", objective=objective)}
