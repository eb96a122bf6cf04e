"""coexplore's network side: search spaces, candidate ops, the supernet and its training.

Implements the ProxylessNAS macro-architecture and path sampling (Cai et al., ICLR 2019,
arXiv 1812.00332) that DANCE (Choi et al., DAC 2021, arXiv 2009.06237) and HDX (Hong et
al., DAC 2022, arXiv 2301.09312) search on.  Networks are described to the cost model as
lists of :class:`accelerators.workload.Layer`.  Of ``accelerators`` this package imports only
that record and the module tracer that produces it (``accelerators.workload``,
``accelerators.extract``), never the cost model; of ``coexplore`` only the dependency-free
``coexplore.common`` (errors, registries, file I/O).  ``tests/test_layering.py`` checks the rule.
"""

from .ops import OPS, OpDef, build_op, get_op, is_skip_op, list_ops, op_layers, register_op
from .pricing import CandidateTable, candidate_layer_table, expected_cost
from .space import (SEARCH_SPACES, Block, Head, SearchSpace, Stage, Stem, get_search_space,
                    list_search_spaces)
from .supernet import PATH_MODES, MixedOp, Supernet, TemperatureSchedule, build_network
from .train import evaluate_network, resolve_device, train_network, warmup_supernet

from .data import DataBundle, get_data, list_datasets

__all__ = [
    "OPS", "OpDef", "build_op", "get_op", "is_skip_op", "list_ops", "op_layers", "register_op",
    "CandidateTable", "candidate_layer_table", "expected_cost",
    "SEARCH_SPACES", "Block", "Head", "SearchSpace", "Stage", "Stem", "get_search_space", "list_search_spaces",
    "PATH_MODES", "MixedOp", "Supernet", "TemperatureSchedule", "build_network",
    "evaluate_network", "resolve_device", "train_network", "warmup_supernet",
    "DataBundle", "get_data", "list_datasets",
]
