"""The ``detection`` task: YOLOX's loss, COCO mAP, training of a standalone detector.

Registered in :data:`search_spaces.tasks.TASKS` as ``"detection"``; a
:class:`~search_spaces.detection.space.DetectionSpace` names it (its ``task`` attribute), so
the search loop trains the supernet with :meth:`Detection.loss` and scores architectures
with :meth:`Detection.evaluate`'s ``map``.

* **metric** ``map``: COCO's AP averaged over IoU 0.50:0.05:0.95 (``stats[0]`` of
  ``pycocotools.cocoeval.COCOeval``, Lin et al., ECCV 2014), a fraction in [0, 1]; ``map50``
  (AP at IoU 0.5) is reported beside it.  Boxes are scored in the network's input
  coordinates; IoU is scale-invariant, so AP over all object sizes equals AP on the
  original images (the small / medium / large split would not, and is not reported).
* **post-processing** (YOLOX's): score = ``sigmoid(obj) * max_c sigmoid(cls_c)``, boxes with a
  score of at least ``conf`` (0.001 for evaluation), class-wise greedy NMS at IoU 0.65, at
  most 100 detections per image.
* ``chance`` is 0: guessing boxes scores an mAP of (almost) nothing.

pycocotools is the optional extra ``detection`` (``pip install 'coexplore[detection]'``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from coexplore.common import ConfigError

from .heads import split_output
from .loss import YOLOXLoss, box_iou, cxcywh_to_xyxy

logger = logging.getLogger(__name__)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept ``[N, 4]`` xyxy boxes, by decreasing score."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    iou = box_iou(boxes, boxes)
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1:] &= iou[i, i + 1:] <= iou_threshold
    return order[keep]


def postprocess(outputs: torch.Tensor, conf: float = 0.001, iou_threshold: float = 0.65, max_det: int = 100,
                pre_nms: int = 1000) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Detections per image: ``(boxes [n, 4] xyxy pixels, scores [n], classes [n])``, by decreasing score.

    Args:
        outputs: ``[B, A, 8 + K]`` detector output.
        conf: minimum score.
        iou_threshold: class-wise NMS threshold.
        max_det: detections kept per image.
        pre_nms: the best-scored boxes that enter NMS.
    """
    o = split_output(outputs.detach().float().cpu())
    probs = o.cls.sigmoid() * o.obj.sigmoid()[..., None]
    score, cls = probs.max(-1)  # [B, A]
    boxes = cxcywh_to_xyxy(o.boxes)
    out = []
    for b in range(outputs.shape[0]):
        keep = score[b] >= conf
        s, c, bx = score[b][keep], cls[b][keep], boxes[b][keep]
        if len(s) > pre_nms:
            top = s.topk(pre_nms).indices
            s, c, bx = s[top], c[top], bx[top]
        if len(s):
            # class-wise NMS in one pass: boxes of different classes never overlap after the shift
            shift = c.float()[:, None] * (bx.max() + 1.0)
            k = nms(bx + shift, s, iou_threshold)[:max_det]
            s, c, bx = s[k], c[k], bx[k]
        out.append((bx, s, c))
    return out


def coco_map(ground_truth: Sequence[np.ndarray], detections: Sequence[Tuple[Any, Any, Any]], num_classes: int,
             image_size: Tuple[int, int]) -> Dict[str, float]:
    """COCO box AP with pycocotools.

    Args:
        ground_truth: per image, ``[n, 5]`` (class, x1, y1, x2, y2) (rows of class -1 ignored).
        detections: per image, ``(boxes [m, 4] xyxy, scores [m], classes [m])``.
        num_classes: classes ``K``.
        image_size: ``(H, W)`` of every image, pixels.

    Returns:
        ``{"map": AP@[.5:.95], "map50": AP@.5}`` (0 where there is nothing to score).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ConfigError("detection mAP needs pycocotools: pip install 'coexplore[detection]' "
                          "(or pip install pycocotools)") from None
    H, W = image_size
    images, anns, dets = [], [], []
    for i, (gt, det) in enumerate(zip(ground_truth, detections)):
        images.append({"id": i, "width": int(W), "height": int(H)})
        for row in np.asarray(gt, dtype=np.float64):
            if row[0] < 0:
                continue
            x1, y1, x2, y2 = row[1:]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(row[0]),
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        bx, sc, cl = (np.asarray(t.cpu() if hasattr(t, "cpu") else t, dtype=np.float64) for t in det)
        for (x1, y1, x2, y2), s, c in zip(bx.reshape(-1, 4), sc.reshape(-1), cl.reshape(-1)):
            dets.append({"image_id": i, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)})
    if not anns or not dets:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": k, "name": str(k)} for k in range(num_classes)]}
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": max(0.0, float(ev.stats[0])), "map50": max(0.0, float(ev.stats[1]))}


class Detection:
    """The detection task (see the module docstring)."""

    name = "detection"
    metric = "map"

    def __init__(self) -> None:
        self.criterion = YOLOXLoss()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """YOLOX's loss of ``[B, A, 8 + K]`` outputs against ``[B, M, 5]`` padded targets."""
        return self.criterion(outputs, targets)

    def chance(self, num_classes: int) -> float:
        return 0.0

    def design_stats(self, space, sample: Mapping[str, str]) -> Dict[str, float]:
        """``{"parameters", "gflops"}`` of one architecture, for its result: parameters of the built
        detector (BN and biases included; built on the ``meta`` device), GFLOPs = 2 x MACs / 1e9
        of its priced layers (the convention of YOLOX's model zoo)."""
        from .supernet import build_detector

        with torch.device("meta"):
            net = build_detector(space, sample)
        return {"parameters": float(sum(p.numel() for p in net.parameters())),
                "gflops": 2.0 * sum(l.macs for l in space.layers(sample)) / 1e9}

    def evaluate(self, model: nn.Module, loader, device=None) -> Dict[str, Any]:
        """``{"map", "map50", "loss", "samples"}`` of ``model`` on ``loader`` (eval mode, no grad; the
        model's mode is restored).  A supernet runs its path mode: evaluate one architecture inside
        ``with supernet.fixed(sample):``."""
        from ..train import resolve_device

        dev = resolve_device(device)
        was = model.training
        model.to(dev).eval()
        gts, dets = [], []
        loss_sum, n, size = 0.0, 0, None
        try:
            with torch.no_grad():
                for x, y in loader:
                    out = model(x.to(dev))
                    loss_sum += float(self.criterion(out, y.to(dev))) * len(x)
                    n += len(x)
                    size = tuple(x.shape[-2:])
                    dets += postprocess(out)
                    gts += list(y.numpy())
        finally:
            model.train(was)
        if n == 0:
            return {"map": float("nan"), "map50": float("nan"), "loss": float("nan"), "samples": 0}
        num_classes = int(out.shape[-1]) - 8
        res = coco_map(gts, dets, num_classes, size)
        return {**res, "loss": loss_sum / n, "samples": n}

    # ---- hooks of the search loop (coexplore.search, coexplore.finalize) ----------------------
    def load_data(self, space, data, seed: int = 0, cache_dir=None):
        """The :class:`~search_spaces.detection.data.DetectionBundle` a run config's ``data`` names.

        Args:
            space: the detection space (its resolution and input channels).
            data: the config's data section (``name``, ``path``, ``limit``, ``val_fraction``,
                ``batch_size``, ``augment``).
            seed: the run's seed.
            cache_dir: the decode cache.
        """
        from .data import DETECTION_DATASETS, get_detection_data

        name = data.name
        if name not in DETECTION_DATASETS:
            raise ConfigError(f"config: data.name {name!r} is not a detection dataset; a detection space trains on "
                              f"one of {list(DETECTION_DATASETS)}")
        return get_detection_data(name, path=data.path, resolution=space.resolution,
                                  input_channels=space.input_channels, val_fraction=data.val_fraction, seed=seed,
                                  batch_size=data.batch_size, augment=data.augment, limit=data.limit,
                                  cache_dir=cache_dir)

    def retrain(self, space, sample: Mapping[str, str], data, epochs: int, lr: float, device: Any, seed: int,
                progress: bool = False) -> Dict[str, Any]:
        """Train one architecture from scratch on the training split and score it on the test split.

        Returns the ``retrain`` record of :func:`coexplore.finalize.retrain` (``test_accuracy`` is
        the test mAP; ``test_map``, ``test_map50``, ``final_train_loss`` beside it); the caller
        checks that the losses are finite (the search loop turns a non-finite one into a
        diverged run)."""
        from .supernet import build_detector

        seeds = np.random.SeedSequence([int(seed), 0x7e7a1]).generate_state(2, np.uint64)
        g = torch.Generator().manual_seed(int(seeds[0] >> np.uint64(1)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seeds[1] >> np.uint64(1)))
            model = build_detector(space, sample, generator=g)
        t0 = time.perf_counter()
        hist = train_detector(model, data.train, epochs, lr, device, criterion=self.criterion,
                              seed=int(seeds[1] >> np.uint64(1)), progress=progress)
        res = self.evaluate(model, data.test, device)
        return {"epochs": int(epochs), "lr": float(lr), "test_accuracy": float(res["map"]),
                "test_map": float(res["map"]), "test_map50": float(res["map50"]), "test_loss": float(res["loss"]),
                "test_samples": int(res["samples"]), "final_train_accuracy": None,
                "final_train_loss": float(hist[-1]["loss"]) if hist else float("nan"),
                "parameters": int(sum(p.numel() for p in model.parameters())), "seconds": time.perf_counter() - t0}


def _param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """YOLOX's grouping: weight decay on conv / linear weights only (not on BN or biases)."""
    decay, no_decay = [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (decay if name == "weight" and isinstance(m, (nn.Conv2d, nn.Linear)) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_detector(model: nn.Module, loader, epochs: int, lr: float, device: Any = None, *,
                   criterion: Optional[YOLOXLoss] = None, momentum: float = 0.9, weight_decay: float = 5e-4,
                   warmup_epochs: float = 1.0, grad_clip: float = 10.0, seed: Optional[int] = None,
                   progress: bool = False, callback=None) -> List[Dict[str, float]]:
    """Train a standalone detector: SGD (Nesterov), linear warm-up then cosine to 0, YOLOX's loss.

    Args:
        model: maps ``[B, C, R, R]`` to ``[B, A, 8 + K]``; moved to ``device``.
        loader: ``(x, y)`` batches (:class:`~search_spaces.detection.data.DetectionLoader`).
        epochs: passes over ``loader``.
        lr: peak learning rate.
        device: None picks CUDA when available.
        criterion: the loss (default :class:`YOLOXLoss`).
        momentum, weight_decay: SGD settings (decay on conv / linear weights only).
        warmup_epochs: epochs of linear warm-up.
        grad_clip: max gradient norm.
        seed: seeds torch inside the call; the caller's generator state is restored.
        progress: log every epoch at INFO level.
        callback: called with each epoch's record.

    Returns:
        One record per epoch: ``epoch``, ``lr``, ``loss`` (mean over batches), ``seconds``.
    """
    from ..train import resolve_device, seeded, train_step

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be an integer >= 0, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a finite number > 0, got {lr!r}")
    dev = resolve_device(device)
    model.to(dev)
    criterion = criterion or YOLOXLoss()
    opt = torch.optim.SGD(_param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=True)
    steps = max(1, epochs * len(loader))
    warm = max(1, int(warmup_epochs * len(loader)))

    def factor(t: int) -> float:
        if t < warm:
            return (t + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(t - warm, steps - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    params = [p for p in model.parameters() if p.requires_grad]
    history = []
    with seeded(seed, dev):
        for epoch in range(epochs):
            t0 = time.perf_counter()
            model.train()
            total, batches = 0.0, 0
            lr_now = opt.param_groups[0]["lr"]
            for x, y in loader:
                loss, _ = train_step(model, x.to(dev), y.to(dev), opt, sched, grad_clip, params, criterion)
                total += float(loss)
                batches += 1
            rec = {"epoch": epoch, "lr": lr_now, "loss": total / max(1, batches), "seconds": time.perf_counter() - t0}
            if progress:
                logger.info("train epoch %d/%d: loss %.4f (%.1f s)", epoch + 1, epochs, rec["loss"], rec["seconds"])
            history.append(rec)
            if callback is not None:
                callback(rec)
    return history
