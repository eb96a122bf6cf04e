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
  timeloopfe still reads v0.3 specifications.  The keys are the ones the parsers of
  NVlabs/timeloop v3.0.3 read (``src/model/buffer.cpp``, ``arithmetic.cpp``, ``engine.cpp``,
  ``src/workload/shape-models/problem-shape.cpp``, ``src/mapping/constraints.cpp``,
  ``src/applications/mapper/mapper.cpp``; ``tests/coexplore/test_export.py`` checks every
  exported key against them), hyphenated as in that release; Timeloop's later master
  (2025) still reads hyphenated keys, converting them to underscores with a deprecation
  warning.  Timeloop itself cannot be installed here, so no export has been run through it.
  Problems use Timeloop's ``CNN-Layer`` shape;
  grouped and depthwise layers use a grouped shape with an extra ``G`` dimension (the
  layout of pytorch2timeloop's ``grouped_convolution.yaml``, with ``G`` declared in
  ``dimensions``), so that one problem file still describes one whole layer.  Constraints
  use the v0.3 ``architecture_constraints: targets:`` list.
* **ZigZag 3.9.1 YAML inputs** (zigzag-dse 3.9.1 from PyPI, the release the ``zigzag`` extra
  pins): the accelerator, workload and mapping records of the ZigZag backend
  (:mod:`accelerators.zigzag_backend`, which builds the same records in memory), written as
  YAML.  Their schema is that of ``zigzag/parser/accelerator_validator.py`` (memories with
  named ``ports`` of ``type``, ``bandwidth_min``, ``bandwidth_max`` and ``allocation``;
  ``operational_array`` with ``unit_energy``, ``unit_area``, ``dimensions``, ``sizes``),
  ``workload_validator.py`` and ``mapping_validator.py`` at that release.  The test suite runs
  ZigZag's own ``get_hardware_performance_zigzag`` on an export and checks that its latency and
  energy equal the backend's.  Releases 3.8.x describe memory ports in another schema
  (``r_bw``/``w_bw`` with ``fh``/``tl`` port maps) and are not targeted.

Operand precision (the layers' ``weight_bits``, ``act_bits``, ``out_bits``; the accelerator's word
where a layer has none) travels with both exports: ZigZag's ``operand_precision`` (W, I, O,
O_final) in ``workload.yaml``; for Timeloop v3.0.x, whose buffers have one ``word-bits`` each and
whose problems carry no precision, a per-layer ``precision`` entry in ``layers.yaml`` and a README
section.  Neither tool models a bit-serial or bit-fused MAC; an accelerator's ``precision``
scheme is named in the README and not represented.  A fixed accelerator with layers without
bits writes the same files as before precision existed.

Everything that had to be approximated is written into the README.txt of each export.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from accelerators import Accelerator, Dataflow, Layer, get_dataflow
from accelerators.technology import COST_MODEL_VERSION, DEFAULT_TECH, Technology, get_technology, technology_name
from accelerators.zigzag_backend import (TRANSLATION_VERSION, ZIGZAG_VERSIONS, operand_precision, per_word_energies_pj,
                                         place_spatial, zigzag_accelerator, zigzag_layer, zigzag_spatial_mapping)
from accelerators.zigzag_backend import zigzag_mapping as backend_mapping
from .common import ConfigError, PathLike, atomic_write_text, write_yaml

logger = logging.getLogger(__name__)

TIMELOOP_FORMAT = ("Timeloop v3.0.x (NVlabs/timeloop tags v3.0 to v3.0.3) input format: architecture version 0.3, "
                   "subtree/local, Accelergy primitive classes, hyphenated keys")
ZIGZAG_FORMAT = ("ZigZag 3.9.1 YAML inputs (schema of zigzag/parser/accelerator_validator.py, workload_validator.py "
                 "and mapping_validator.py at zigzag-dse 3.9.1: named memory ports with type, bandwidth_min, "
                 "bandwidth_max and allocation; unit_energy/unit_area)")

_DRAM_WIDTH_BITS = 64  # an LPDDR4-like 64-bit channel, as in the Timeloop/Accelergy examples
_TIMELOOP_METRICS = {"energy": ["energy"], "latency": ["delay", "energy"], "edp": ["edp"],
                     "dram": ["last-level-accesses", "energy"]}
_ZIGZAG_OPT = {"energy": "energy", "latency": "latency", "edp": "EDP", "dram": "energy"}  # ZigZag has no DRAM objective


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


def _energy_table(acc: Accelerator, tech: Technology) -> str:
    e = per_word_energies_pj(acc, tech)
    return "\n".join(f"  {k:5s} {v:10.4f} pJ per {'MAC' if k == 'mac' else f'{acc.word_bits}-bit word'}"
                     for k, v in e.items())


def _layer_precision(layer: Layer, acc: Accelerator, tech: Technology) -> Dict[str, int]:
    """Bits of each operand of ``layer`` on ``acc``, as the analytical model and the ZigZag backend use them."""
    p = operand_precision(layer, acc.word_bits, tech.psum_bits(acc.word_bits))
    return {"weights": p["W"], "inputs": p["I"], "outputs": p["O_final"], "partial_sums": p["O"]}


def _precision_notes(acc: Accelerator, layers: Sequence[Layer], tool: str) -> List[str]:
    """README lines on operand bits and the precision scheme; none for a fixed design without layer bits."""
    with_bits = [l for l in layers if l.has_precision]
    if not with_bits and acc.precision == "fixed":
        return []
    combos = sorted({(l.weight_bits or acc.word_bits, l.act_bits or acc.word_bits) for l in layers})
    where = ("workload.yaml's operand_precision (W, I, O = partial sums, O_final)" if tool == "zigzag"
             else "layers.yaml (precision: weights, inputs, outputs, partial_sums)")
    lines = ["", "Precision",
             f"  {len(with_bits)} of {len(layers)} layers carry their own bit widths; each layer's bits are in {where}.",
             "  (weight, input) bits in this workload: " + ", ".join(f"w{w}a{a}" for w, a in combos) + "."]
    if tool == "timeloop":
        lines.append("  Timeloop v3.0.x has one word-bits per buffer and no per-data-space precision: arch.yaml")
        lines.append(f"  stays at {acc.word_bits}-bit words, so Timeloop moves and stores every operand at that width.")
    if acc.precision != "fixed":
        lines.append(f"  The accelerator's precision scheme is {acc.precision!r}; {'ZigZag' if tool == 'zigzag' else 'Timeloop'} "
                     "has no model of a bit-serial or bit-fused MAC,")
        lines.append("  so its MAC array is exported as a fixed word_bits array: no speed-up, no scalability overhead.")
    return lines


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
        if layer.has_precision:
            index[-1]["precision"] = _layer_precision(layer, acc, get_technology(tech))
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
    ] + _precision_notes(acc, layers, "timeloop")
    return "\n".join(notes) + "\n"


# ---------------------------------------------------------------------------------------
# ZigZag
# ---------------------------------------------------------------------------------------

def zigzag_workload(layers: Sequence[Layer], word_bits: int, psum_bits: Optional[int] = None) -> List[Dict[str, Any]]:
    """The ZigZag workload list; each layer reads the previous layer's output (a chain).

    Each record is the one the ZigZag backend prices (:func:`accelerators.zigzag_backend.zigzag_layer`).
    """
    names = _layer_names(layers)
    return [zigzag_layer(l, i, n, i - 1 if i > 0 else 0, word_bits, psum_bits)
            for i, (l, n) in enumerate(zip(layers, names))]


def zigzag_mapping(acc: Accelerator, layers: Sequence[Layer]) -> Tuple[List[Dict[str, Any]], int]:
    """ZigZag mapping entries: one per layer (matched by name) with the dataflow's spatial unrolling,
    the one the ZigZag backend fixes, plus a dataflow-generic ``default``.

    Returns:
        ``(entries, n_inexact)``: the mapping list and how many layers' unrolling could not
        be expressed exactly on the two array dimensions.

    Raises:
        ConfigError: the dataflow has no ZigZag hints.
    """
    entries: List[Dict[str, Any]] = []
    inexact = 0
    for layer, name in zip(layers, _layer_names(layers)):
        default, own = backend_mapping(layer, acc, name)
        if not entries:
            entries.append(default)
        inexact += not zigzag_spatial_mapping(layer, acc)[1]
        entries.append(own)
    return entries, inexact


def export_zigzag(acc: Accelerator, layers: Sequence[Layer], out_dir: PathLike, objective: str = "edp",
                  tech: Technology = DEFAULT_TECH) -> List[Path]:
    """Write ZigZag inputs (zigzag-dse 3.9.1) for an accelerator and a workload.

    The records are the ones the ZigZag backend (:mod:`accelerators.zigzag_backend`) builds
    in memory, so running ZigZag on these files reports, layer by layer, what the backend
    reports for the same design (``tests/coexplore/test_export.py`` checks it).

    Files: ``accelerator.yaml``, ``workload.yaml`` (all layers, chained by
    ``operand_source``), ``mapping.yaml`` (per-layer spatial unrolling of the dataflow plus a
    ``default``) and ``README.txt``.

    Args:
        acc: the accelerator.
        layers: the workload.
        out_dir: output folder (created if needed).
        objective: the mapping objective ZigZag should minimise (the README's command).
        tech: technology constants for the memory and MAC energies and areas.

    Returns:
        The paths written, README last.
    """
    _check(acc, layers)
    if objective not in _ZIGZAG_OPT:
        raise ConfigError(f"export: objective {objective!r} is unknown; allowed values: {sorted(_ZIGZAG_OPT)}")
    tech = get_technology(tech)
    out = Path(out_dir)
    mapping, inexact = zigzag_mapping(acc, layers)
    files = {"accelerator.yaml": zigzag_accelerator(acc, tech),
             "workload.yaml": zigzag_workload(layers, acc.word_bits, tech.psum_bits(acc.word_bits)),
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
    pb = tech.psum_bits(wb)
    notes = [
        f"Target: {ZIGZAG_FORMAT}.",
        f"Tested: these files load and run on zigzag-dse {', '.join(ZIGZAG_VERSIONS)} (coexplore's test suite runs them",
        "  and checks that ZigZag's latency and energy equal coexplore's ZigZag backend, layer by layer).",
        "  3.8.x releases are not targeted: they describe memory ports differently (r_bw/w_bw and",
        "  fh/tl/fl/th port maps instead of named ports with bandwidth_min/bandwidth_max/allocation).",
        "Written by coexplore (cost model version " + COST_MODEL_VERSION + ", ZigZag translation version "
        + TRANSLATION_VERSION + ") for:",
        "  " + _acc_summary(acc),
        f"  {len(layers)} layers, {sum(l.macs for l in layers):,} MACs; technology preset {technology_name(tech)}",
        "",
        "Files",
        "  accelerator.yaml  memories rf (per PE) -> glb -> dram, operational array D1 x D2 = pe_x x pe_y",
        "  workload.yaml     one Conv layer per coexplore layer, chained by operand_source",
        "  mapping.yaml      per-layer spatial unrolling (the dataflow's, as coexplore maps it) and a default",
        "",
        "Run (ZigZag 3.9.1 Python API):",
        "  from zigzag.api import get_hardware_performance_zigzag",
        "  energy, latency, cmes = get_hardware_performance_zigzag(",
        f"      'workload.yaml', 'accelerator.yaml', 'mapping.yaml', opt='{_ZIGZAG_OPT[objective]}')",
        "  (energy in pJ, latency in cycles; coexplore's clock is " + f"{acc.clock_hz:g} Hz)",
        "  Or: coexplore cost --cost-model zigzag (the same records, built in memory, cached per layer).",
        "",
        "Mapping of the hardware",
        f"  sizes in bits: rf {acc.rf_bytes * 8}, glb {acc.glb_bytes * 8}; port widths in bits/cycle: rf {pb} per "
        f"operand and direction, glb {max(wb, int(round(acc.glb_bw * 8)))} (one read/write port), "
        f"dram {max(wb, int(round(acc.dram_bw * 8)))} (one read/write port)"
        + ("" if float(acc.dram_bw * 8).is_integer() else f" (rounded from {acc.dram_bw * 8:g})"),
        "  r_cost/w_cost: pJ per full-width access = coexplore's per-word energy x words per access;",
        f"  every port's bandwidth_min is one word ({wb} bits), so a one-word access costs one word's energy:",
        _energy_table(acc, tech),
        "  Areas in mm^2 from coexplore's technology constants (the 15% array overhead is not included).",
        "",
        "Mapping of the workload",
        "  Ungrouped layers: O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix] with B=N, K, C, OY=P, OX=Q,",
        "  FY=R, FX=S.  Grouped and depthwise layers use ZigZag's grouped equation",
        "  O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix] with G=groups, K=K/G, C=C/G",
        "  (depthwise: G=channels, K=C=1).  The loop sizes multiply to the layer's MAC count.  A batched",
        "  linear layer is one matrix product: its batch is OY (as coexplore prices it).",
        (f"  Operand precision: W = I = O_final = {wb} bits, partial sums O = {pb} bits."
         if not any(l.has_precision for l in layers) else
         f"  Operand precision: each layer's own bits (see Precision below); {wb} bits where it has none,"
         f" partial sums O = out_bits or {pb} bits."),
        "  Padding: coexplore's layers carry no padding; inputs are the padded maps (pr_loop_sizes",
        "  IX=(Q-1)*stride+S, IY=(P-1)*stride+R, padding 0), the same input traffic coexplore counts.",
        "  operand_source chains each layer to the previous one; branches (residuals) are not represented.",
        "",
        "Approximations",
        "  - coexplore's RF is one unified storage per PE for all three operands; ZigZag sees one rf",
        "    memory holding I1, I2 and O.",
        "  - coexplore's DRAM bandwidth is shared by reads and writes; ZigZag gets one read/write port.",
        "  - ZigZag has no NoC energy and no static power: coexplore's "
        + f"{float(tech.e_noc(wb)):g} pJ per NoC word and {tech.p_static_mw_per_mm2:g} mW/mm^2 are not represented.",
        "  - mapping.yaml fixes the spatial unrolling to the dataflow's; ZigZag searches the temporal",
        "    mapping itself (LOMA), so results differ from coexplore's where the temporal mappings differ.",
        (f"  - {inexact} layer(s) unroll a loop over more PEs than one array dimension holds; their\n"
         "    unrolling was spread over D1 and D2 and rounded up." if inexact
         else "  - Every layer's spatial unrolling was expressed exactly on D1/D2."),
    ] + _precision_notes(acc, layers, "zigzag")
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
