"""Data-free quantisation: deploy a found network at low bit width without its training data.

See ``docs/datafree.md``.  A generator learns synthetic inputs from a full-precision teacher, and
the quantised student (:mod:`search_spaces.quant`) is distilled on them.  Methods are small
registered modules with one constructor signature (:data:`METHODS`):

* ``gdfq`` -- GDFQ (Xu et al., ECCV 2020), the common base;
* ``zeroq`` -- ZeroQ-style distilled images (Cai et al., CVPR 2020);
* ``qimera`` -- Qimera's superposed embeddings (Choi et al., NeurIPS 2021);
* ``clusterq`` -- ClusterQ's clustered class statistics (Gao et al., 2022);
* ``lrq`` -- LRQ's long-range generator, AMA and DKD (Luo et al., 2022);
* ``real-qat`` -- quantisation-aware training on the real data (the upper bound; not data-free);

and AIT (Choi et al., CVPR 2022) is a student-side option of every method (``ait=True``).
"""

from . import clusterq, gdfq, lrq, qimera, real, zeroq  # noqa: F401 - registers the methods
from .ait import GradientInundation, ait_loss
from .base import (METHODS, DataFreeMethod, GeneratorStep, MethodConfig, SyntheticData, list_methods,
                   register_method)
from .result import QuantResult, read_quant_result
from .run import NAMED_BITS, QuantizeConfig, parse_bits, quantize
from .teacher import TEACHER_ARCHS, Teacher, TeacherSpec, load_teacher, spec_for_data, train_teacher

__all__ = [
    "METHODS", "DataFreeMethod", "GeneratorStep", "GradientInundation", "MethodConfig", "NAMED_BITS",
    "QuantResult", "QuantizeConfig", "SyntheticData", "TEACHER_ARCHS", "Teacher", "TeacherSpec", "ait_loss",
    "list_methods", "load_teacher", "parse_bits", "quantize", "read_quant_result", "register_method",
    "spec_for_data", "train_teacher",
]
