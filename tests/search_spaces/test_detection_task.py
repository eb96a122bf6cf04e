"""The detection task: SimOTA assignment, YOLOX's loss, NMS, COCO mAP via pycocotools, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces.detection import build_detector, get_detection_space
from search_spaces.detection.data import DetectionLoader, get_detection_data
from search_spaces.detection.heads import split_output
from search_spaces.detection.loss import YOLOXLoss, box_iou, iou_loss, xyxy_to_cxcywh
from search_spaces.detection.task import Detection, coco_map, nms, postprocess, train_detector
from search_spaces.tasks import TASKS, get_task


@pytest.fixture(scope="module")
def space():
    return get_detection_space("det-mnist")


@pytest.fixture(scope="module")
def anchors(space):
    net = build_detector(space, space.reference_sample(), generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        return split_output(net(torch.zeros(1, 1, 96, 96))).anchors


def _predictions(anchors, K=10):
    """Boxes of 8x8 px at every cell centre, neutral scores."""
    A = anchors.shape[0]
    centers = anchors[:, :2] + anchors[:, 2:] / 2
    boxes = torch.cat([centers, torch.full((A, 2), 8.0)], 1)
    return boxes, torch.zeros(A), torch.zeros(A, K)


def test_registered_task():
    assert "detection" in TASKS.names()
    t = get_task(get_detection_space("det-mnist"))
    assert isinstance(t, Detection) and t.metric == "map" and t.chance(80) == 0.0


def test_simota_picks_the_best_prediction_near_the_box(anchors):
    boxes, obj, cls = _predictions(anchors)
    gt = torch.tensor([[30.0, 40.0, 54.0, 62.0]])
    centers = anchors[:, :2] + anchors[:, 2:] / 2
    gc = (gt[0, :2] + gt[0, 2:]) / 2
    inside = ((centers > gt[0, :2]) & (centers < gt[0, 2:])).all(1)
    best = int(torch.nonzero(inside)[0])
    boxes[best] = xyxy_to_cxcywh(gt)[0]  # one prediction is exact
    cls[best, 3] = 3.0
    a = YOLOXLoss().assign(boxes, obj, cls, anchors, gt, torch.tensor([3]))
    fg = torch.nonzero(a.fg)[:, 0]
    assert best in fg.tolist() and len(fg) >= 1 and (a.gt_index == 0).all()
    # every foreground cell is a centre-sampling candidate: inside the box or within 2.5 strides of its centre
    near = ((centers[fg] - gc).abs() < 2.5 * anchors[fg, 2:]).all(1) | inside[fg]
    assert near.all()
    assert a.iou[fg.tolist().index(best)] == pytest.approx(1.0)


def test_simota_dynamic_k_and_unique_matches(anchors):
    boxes, obj, cls = _predictions(anchors)
    gts = torch.tensor([[4.0, 4.0, 36.0, 36.0], [60.0, 58.0, 92.0, 90.0]])
    centers = anchors[:, :2] + anchors[:, 2:] / 2
    for g in gts:  # many good predictions: every stride-8 cell inside the box predicts the box
        inside = ((centers > g[:2]) & (centers < g[2:])).all(1) & (anchors[:, 2] == 8)
        boxes[inside] = xyxy_to_cxcywh(g[None])[0]
    a = YOLOXLoss().assign(boxes, obj, cls, anchors, gts, torch.tensor([1, 2]))
    counts = torch.bincount(a.gt_index, minlength=2)
    assert (counts >= 2).all()  # k > 1: the top-10 IoUs of each box add up to far more than one
    assert int(a.fg.sum()) == len(a.gt_index)  # one box per foreground cell


def test_loss_terms_and_padding(anchors):
    out = torch.zeros(2, anchors.shape[0], 8 + 10)
    out[..., -3:] = anchors
    out[..., 2:4] = 8.0
    out[..., :2] = anchors[:, :2] + 4
    t = torch.full((2, 3, 5), -1.0)
    t[0, 0] = torch.tensor([2.0, 10, 10, 30, 30])
    parts = YOLOXLoss().parts(out, t)
    assert int(parts["num_fg"]) >= 1 and parts["loss"] > 0 and parts["iou"] > 0
    empty = YOLOXLoss().parts(out, torch.full((2, 3, 5), -1.0))
    assert int(empty["num_fg"]) == 0 and empty["iou"] == 0 and empty["obj"] > 0


def test_iou_helpers():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [20, 20, 30, 30]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 3, 0.0]]))
    assert iou_loss(xyxy_to_cxcywh(a), xyxy_to_cxcywh(a)).item() == pytest.approx(0.0)


def test_nms_and_classwise_postprocess():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]])
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    # same boxes, two classes: class-wise NMS keeps both overlapping boxes
    A, K = 2, 3
    out = torch.zeros(1, A, 8 + K)
    out[0, :, :4] = torch.tensor([[5.0, 5, 10, 10], [5.5, 5.5, 10, 10]])
    out[0, :, 4] = 5.0
    out[0, 0, 5 + 0] = 5.0
    out[0, 1, 5 + 2] = 4.0
    out[0, :, 5:-3] -= 10 * (out[0, :, 5:-3] == 0)
    bx, sc, cl = postprocess(out)[0]
    assert sorted(cl.tolist()) == [0, 2] and (sc[:-1] >= sc[1:]).all()


def test_coco_map_through_pycocotools():
    gt = [np.array([[1, 10, 10, 40, 40], [4, 50, 50, 80, 90], [-1, 0, 0, 0, 0]], dtype=np.float32),
          np.array([[2, 5, 5, 25, 45]], dtype=np.float32)]

    def dets(shift=0.0, cls_offset=0):
        out = []
        for g in gt:
            g = g[g[:, 0] >= 0]
            out.append((torch.tensor(g[:, 1:] + shift), torch.ones(len(g)), torch.tensor(g[:, 0] + cls_offset)))
        return out

    assert coco_map(gt, dets(), 5, (96, 96))["map"] == pytest.approx(1.0)
    assert coco_map(gt, dets(cls_offset=1), 6, (96, 96))["map"] == pytest.approx(0.0)
    shifted = coco_map(gt, dets(shift=4.0), 5, (96, 96))
    assert 0.0 < shifted["map"] < shifted["map50"] <= 1.0
    assert coco_map(gt, [(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0))] * 2, 5, (96, 96))["map"] == 0.0


def test_a_detector_learns_the_embedded_set(space):
    # The whole path: loader -> YOLOX loss with SimOTA -> SGD -> post-processing -> pycocotools.
    b = get_detection_data("mnist-det", seed=0, batch_size=16, augment=False, limit=64)
    train = DetectionLoader(b.train.split, 16, b.mean, b.std, shuffle=True)
    same = DetectionLoader(b.train.split, 64, b.mean, b.std)
    net = build_detector(space, space.reference_sample(), generator=torch.Generator().manual_seed(0))
    task = Detection()
    before = task.evaluate(net, same)
    hist = train_detector(net, train, 25, 0.05, "cpu", seed=0)
    after = task.evaluate(net, same)
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    assert before["map50"] < 0.02 and after["map50"] > 0.3 and after["samples"] == 64
