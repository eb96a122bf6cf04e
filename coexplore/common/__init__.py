"""The project's dependency-free foundation: errors, registries, file I/O, the metric vocabulary
and the cache location.

Every package may import it -- ``accelerators``, ``search_spaces`` and the rest of
``coexplore`` -- and it imports nothing else of the project (only the standard library,
numpy and PyYAML), so it creates no dependency between the two side packages.  The import
rule is checked by ``tests/test_layering.py``.
"""

from .cache import CACHE_ENV, default_cache_dir
from .errors import ConfigError, UnknownNameError
from .io import (PathLike, atomic_write_bytes, atomic_write_text, check_keys, loads_yaml, read_json, read_yaml,
                 to_jsonable, write_json, write_yaml)
from .metrics import (CONSTRAINABLE, HARDWARE_METRICS, METRICS, TASK_METRICS, Metric, get_metric, hardware_metrics,
                      metric_value)
from .registry import Registry

__all__ = [
    "CACHE_ENV", "default_cache_dir", "ConfigError", "UnknownNameError", "PathLike", "atomic_write_bytes",
    "atomic_write_text", "check_keys", "loads_yaml", "read_json", "read_yaml", "to_jsonable", "write_json",
    "write_yaml", "CONSTRAINABLE", "HARDWARE_METRICS", "METRICS", "TASK_METRICS", "Metric", "get_metric",
    "hardware_metrics", "metric_value", "Registry",
]
