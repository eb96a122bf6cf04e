"""coexplore's accelerator side: what an accelerator is, and what a layer costs on it.

It imports nothing of the project but the dependency-free ``coexplore.common`` (errors,
registries, file I/O, the metric vocabulary); ``ConfigError`` and friends are re-exported here
for convenience.
"""

from .dataflows import (DATAFLOWS, ArrayLevel, Dataflow, TimeloopHints, Unrolling, ZigZagHints, get_dataflow,
                        list_dataflows, register_dataflow)
from .precision import (PRECISIONS, PrecisionScheme, get_precision, list_precisions, register_precision)
from .hardware import (ACCELERATORS, FIELD_RANGES, Accelerator, get_accelerator, list_accelerators,
                       load_accelerator, save_accelerator)
from .cost_model import MAPPING_OBJECTIVES, AnalyticalModel, Costs, Explanation, evaluate, explain
from coexplore.common import ConfigError
from coexplore.common import Registry, UnknownNameError
from .space import HARDWARE_SPACES, HardwareSpace, get_hardware_space, list_hardware_spaces
from .networks import WORKLOADS, get_workload, list_workloads
from .cost_source import COST_SOURCES, CostSource, get_cost_source, list_cost_sources
from . import measured as _measured  # noqa: F401 - registers measured-cpu, measured-cpu-onnxruntime, measured-cuda
from .technology import COST_MODEL_VERSION, TECH_PRESETS, Technology, get_technology, list_technologies
from . import zigzag_backend  # registers the "zigzag" cost source (ZigZag itself is imported only when used)
from .zigzag_backend import ZigZagBackend
from .workload import (LAYER_KINDS, Layer, conv, conv_output_size, depthwise, linear, load_workload, matmul,
                       save_workload)

__all__ = [
    "MAPPING_OBJECTIVES", "AnalyticalModel", "Costs", "Explanation", "evaluate", "explain", "WORKLOADS", "get_workload",
    "list_workloads", "COST_MODEL_VERSION", "TECH_PRESETS", "Technology", "get_technology", "list_technologies",
    "ZigZagBackend", "COST_SOURCES", "CostSource", "get_cost_source", "list_cost_sources",
    "DATAFLOWS", "ArrayLevel", "Dataflow", "TimeloopHints", "Unrolling", "ZigZagHints", "get_dataflow",
    "list_dataflows", "register_dataflow", "ACCELERATORS", "FIELD_RANGES", "Accelerator", "get_accelerator",
    "list_accelerators", "load_accelerator", "save_accelerator", "ConfigError", "Registry", "UnknownNameError",
    "HARDWARE_SPACES", "HardwareSpace", "get_hardware_space", "list_hardware_spaces", "LAYER_KINDS", "Layer", "conv",
    "conv_output_size", "depthwise", "linear", "load_workload", "matmul", "save_workload",
    "PRECISIONS", "PrecisionScheme", "get_precision", "list_precisions", "register_precision",
]
