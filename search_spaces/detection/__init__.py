"""Lightweight one-stage detectors: a YOLOX-style search space, its supernet, data, loss and task.

* :mod:`.space` -- :class:`DetectionSpace` (backbone ops per stage, neck choice, width / depth
  multipliers), exactly additive for pricing; built-ins ``yolox-tiny-search`` and ``det-mnist``;
* :mod:`.ops`, :mod:`.necks`, :mod:`.heads` -- the candidate ops, necks and YOLOX's head;
* :mod:`.supernet` -- :class:`DetectionSupernet` and standalone :class:`Detector` networks;
* :mod:`.data` -- COCO-format datasets from a path, and the embedded MNIST-on-canvas set;
* :mod:`.loss` -- YOLOX's loss with SimOTA label assignment;
* :mod:`.task` -- the ``detection`` task (COCO mAP through pycocotools).

See ``docs/detection.md``.
"""

from .ops import DETECTION_OPS, build_det_op, det_op_layers, get_det_op, list_det_ops
from .necks import NECKS, list_necks
from .space import (DETECTION_SPACES, DetBlock, DetHead, DetNeck, DetStage, DetStem, DetectionSpace,
                    get_detection_space, list_detection_spaces, resolve_detection_space)
from .supernet import DetectionSupernet, Detector, build_detector, measurement_units

__all__ = [
    "DETECTION_OPS", "build_det_op", "det_op_layers", "get_det_op", "list_det_ops", "NECKS", "list_necks",
    "DETECTION_SPACES", "DetBlock", "DetHead", "DetNeck", "DetStage", "DetStem", "DetectionSpace",
    "get_detection_space", "list_detection_spaces", "resolve_detection_space",
    "DetectionSupernet", "Detector", "build_detector", "measurement_units",
]
