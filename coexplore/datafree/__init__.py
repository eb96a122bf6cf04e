"""Data-free quantisation: deploy a found network at low bit width without its training data.

See ``docs/datafree.md``.  A generator learns synthetic inputs from a full-precision teacher, and
the quantised student (:mod:`search_spaces.quant`) is distilled on them.  Methods are small
registered modules with one constructor signature (:data:`METHODS`):

* ``gdfq`` -- GDFQ (Xu et al., ECCV 2020), the common base;
* ``zeroq`` -- ZeroQ-style distilled images (Cai et al., CVPR 2020);
* ``qimera`` -- Qimera's superposed embeddings (Choi et al., NeurIPS 2021);
* ``clusterq`` -- ClusterQ's clustered class statistics (Gao et al., 2022);
* ``lrq`` -- LRQ's long-range generator, AMA and DKD (Luo et al., 2022);
* ``diffusion-mixup`` -- mixup-class prompts to a local text-to-image diffusion pipeline (GenQ line);
* ``real-qat`` -- quantisation-aware training on the real data (the upper bound; not data-free);

and AIT (Choi et al., CVPR 2022) is a student-side option of every method (``ait=True``).
"""

import importlib
from typing import Any

# Attributes are imported lazily (PEP 562), so that the torch-free parts (``result``, ``table``)
# can be read without importing torch.
_EXPORTS = {
    "GradientInundation": "ait", "ait_loss": "ait",
    "METHODS": "base", "DataFreeMethod": "base", "GeneratorStep": "base", "MethodConfig": "base",
    "SyntheticData": "base", "list_methods": "base", "register_method": "base",
    "QuantResult": "result", "read_quant_result": "result",
    "NAMED_BITS": "run", "QuantizeConfig": "run", "parse_bits": "run", "quantize": "run",
    "TEACHER_ARCHS": "teacher", "Teacher": "teacher", "TeacherSpec": "teacher", "load_teacher": "teacher",
    "spec_for_data": "teacher", "train_teacher": "teacher",
}
#: The modules that register the built-in methods.
METHOD_MODULES = ("gdfq", "zeroq", "qimera", "clusterq", "lrq", "real", "diffusion")


def load_methods() -> None:
    """Import every built-in method module (each registers itself in ``METHODS``)."""
    for m in METHOD_MODULES:
        importlib.import_module(f"{__name__}.{m}")


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    if _EXPORTS[name] in ("base", "run"):
        load_methods()
    return getattr(mod, name)


__all__ = sorted(_EXPORTS) + ["load_methods"]
