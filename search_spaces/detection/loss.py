"""YOLOX's training loss with SimOTA label assignment.

Ge et al., "YOLOX: Exceeding YOLO Series in 2021" (arXiv 2107.08430), Sec. 2.1 and their
reference code:

* **label assignment (SimOTA)**, per image, without gradient: the candidate anchor points
  of the ground-truth boxes are those whose cell centre lies inside some box or within
  ``center_radius`` strides of its centre (centre sampling); for every (box, candidate)
  pair the cost is ``BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one_hot(class)) + 3 * -log IoU``
  plus a large penalty unless the centre is inside the box *and* within the radius; each
  box takes its ``k`` cheapest candidates, with ``k = max(1, floor(sum of its top-10
  IoUs))`` (dynamic k), and a candidate claimed by several boxes goes to the cheapest;
* **losses**, normalised by the number of foreground anchors: IoU loss ``1 - IoU^2`` on
  the foreground boxes (weight 5), binary cross-entropy on the objectness of every anchor
  (target 1 on the foreground) and on the classes of the foreground (target: one-hot
  scaled by the IoU of the match).

Inputs are the packed detector output of :mod:`~search_spaces.detection.heads` and the
padded targets of :mod:`~search_spaces.detection.data`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .heads import split_output


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` (cx, cy, w, h) to (x1, y1, x2, y2)."""
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``[N, 4]`` and ``[M, 4]`` xyxy boxes: ``[N, M]``."""
    tl = torch.maximum(a[:, None, :2], b[None, :, :2])
    br = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (br - tl).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-16)


def iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """YOLOX's ``1 - IoU^2`` of matched ``[n, 4]`` (cx, cy, w, h) boxes: ``[n]``."""
    p, t = cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target)
    tl = torch.maximum(p[:, :2], t[:, :2])
    br = torch.minimum(p[:, 2:], t[:, 2:])
    inter = (br - tl).clamp(min=0).prod(-1)
    iou = inter / (pred[:, 2:].prod(-1) + target[:, 2:].prod(-1) - inter + 1e-16)
    return 1 - iou ** 2


class Assignment(NamedTuple):
    """SimOTA's result for one image."""

    fg: torch.Tensor  # [A] bool: foreground anchors
    gt_index: torch.Tensor  # [n_fg] long: the ground-truth box of each foreground anchor
    iou: torch.Tensor  # [n_fg] IoU of each foreground prediction with its box


class YOLOXLoss:
    """``loss(outputs, targets)`` of YOLOX with SimOTA (see the module docstring).

    Args:
        center_radius: the centre-sampling radius, strides.
        iou_weight: the weight of the IoU loss.
        topk: IoUs summed for the dynamic ``k``.
    """

    def __init__(self, center_radius: float = 2.5, iou_weight: float = 5.0, topk: int = 10) -> None:
        self.center_radius = float(center_radius)
        self.iou_weight = float(iou_weight)
        self.topk = int(topk)

    @torch.no_grad()
    def assign(self, boxes: torch.Tensor, obj: torch.Tensor, cls: torch.Tensor, anchors: torch.Tensor,
               gt_boxes: torch.Tensor, gt_cls: torch.Tensor) -> Assignment:
        """SimOTA for one image.

        Args:
            boxes: ``[A, 4]`` predicted (cx, cy, w, h), pixels.
            obj: ``[A]`` objectness logits.
            cls: ``[A, K]`` class logits.
            anchors: ``[A, 3]`` (x, y, stride) of each cell, pixels.
            gt_boxes: ``[G, 4]`` ground truth (x1, y1, x2, y2), pixels (``G >= 1``).
            gt_cls: ``[G]`` long class indices.
        """
        A = boxes.shape[0]
        stride = anchors[:, 2]
        centers = anchors[:, :2] + 0.5 * stride[:, None]  # [A, 2]
        in_box = ((centers[None] > gt_boxes[:, None, :2]) & (centers[None] < gt_boxes[:, None, 2:])).all(-1)  # [G, A]
        gt_c = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        r = self.center_radius * stride[None, :, None]
        in_center = ((centers[None] > gt_c[:, None] - r) & (centers[None] < gt_c[:, None] + r)).all(-1)
        cand = (in_box | in_center).any(0)  # [A]
        empty = Assignment(torch.zeros(A, dtype=torch.bool, device=boxes.device),
                           torch.zeros(0, dtype=torch.long, device=boxes.device), boxes.new_zeros(0))
        if not bool(cand.any()):
            return empty
        both = (in_box & in_center)[:, cand]  # [G, Ac]
        ious = box_iou(gt_boxes, cxcywh_to_xyxy(boxes[cand].float()))  # [G, Ac]
        G, Ac, K = gt_boxes.shape[0], int(cand.sum()), cls.shape[1]
        p = (cls[cand].float().sigmoid() * obj[cand].float().sigmoid()[:, None]).sqrt()  # [Ac, K]
        onehot = F.one_hot(gt_cls, K).float()  # [G, K]
        cls_cost = F.binary_cross_entropy(p[None].expand(G, Ac, K), onehot[:, None].expand(G, Ac, K),
                                          reduction="none").sum(-1)
        cost = cls_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * (~both).float()
        # dynamic k: each box takes as many anchors as its top IoUs add up to
        k = min(self.topk, Ac)
        dyn = torch.clamp(torch.topk(ious, k, dim=1).values.sum(1).int(), min=1)
        match = torch.zeros_like(cost, dtype=torch.bool)
        for g in range(G):
            idx = torch.topk(cost[g], int(dyn[g]), largest=False).indices
            match[g, idx] = True
        many = match.sum(0) > 1
        if bool(many.any()):
            best = cost[:, many].argmin(0)
            match[:, many] = False
            match[best, many.nonzero(as_tuple=True)[0]] = True
        fg_c = match.any(0)  # [Ac]
        fg = torch.zeros(A, dtype=torch.bool, device=boxes.device)
        fg[cand.nonzero(as_tuple=True)[0][fg_c]] = True
        gt_index = match[:, fg_c].float().argmax(0)
        iou = (match.float() * ious).sum(0)[fg_c]
        return Assignment(fg, gt_index, iou)

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.parts(outputs, targets)["loss"]

    def parts(self, outputs: torch.Tensor, targets: torch.Tensor):
        """The loss and its terms.

        Args:
            outputs: ``[B, A, 8 + K]`` detector output.
            targets: ``[B, M, 5]`` (class, x1, y1, x2, y2), class -1 pads.

        Returns:
            ``{"loss", "iou", "obj", "cls", "num_fg"}`` (scalar tensors; ``loss`` differentiable).
        """
        o = split_output(outputs)
        B, A, K = o.cls.shape
        obj_t = torch.zeros(B, A, device=outputs.device, dtype=outputs.dtype)
        fg_boxes, fg_targets, fg_cls, fg_cls_t = [], [], [], []
        for b in range(B):
            valid = targets[b, :, 0] >= 0
            if not bool(valid.any()):
                continue
            gt = targets[b, valid]
            gt_cls = gt[:, 0].long()
            a = self.assign(o.boxes[b].detach(), o.obj[b].detach(), o.cls[b].detach(), o.anchors, gt[:, 1:], gt_cls)
            if not bool(a.fg.any()):
                continue
            obj_t[b, a.fg] = 1.0
            fg_boxes.append(o.boxes[b, a.fg])
            fg_targets.append(xyxy_to_cxcywh(gt[a.gt_index, 1:]))
            fg_cls.append(o.cls[b, a.fg])
            fg_cls_t.append(F.one_hot(gt_cls[a.gt_index], K).to(outputs.dtype) * a.iou[:, None].to(outputs.dtype))
        n_fg = sum(len(t) for t in fg_targets)
        norm = max(n_fg, 1)
        loss_obj = F.binary_cross_entropy_with_logits(o.obj, obj_t, reduction="sum") / norm
        if n_fg:
            loss_iou = iou_loss(torch.cat(fg_boxes), torch.cat(fg_targets)).sum() / norm
            loss_cls = F.binary_cross_entropy_with_logits(torch.cat(fg_cls), torch.cat(fg_cls_t),
                                                          reduction="sum") / norm
        else:
            loss_iou = loss_cls = outputs.sum() * 0.0
        loss = self.iou_weight * loss_iou + loss_obj + loss_cls
        return {"loss": loss, "iou": loss_iou.detach(), "obj": loss_obj.detach(), "cls": loss_cls.detach(),
                "num_fg": torch.tensor(n_fg)}

