"""Full-precision teachers: architectures, a resumable training loop and a weights-only file format.

Data-free quantisation starts from a trained full-precision network, the *teacher*.  No pip
wheel ships CIFAR-class weights, so coexplore trains its own:

* ``resnet20`` -- the CIFAR ResNet-20 of He et al. (CVPR 2016, Sec. 4.2): a 3x3 stem with 16
  channels, three stages of three basic blocks (16, 32, 64 channels, stride 2 at the start of
  stages 2 and 3), global average pooling and a linear classifier.  Where the shape changes
  the shortcut is a 1x1 convolution + BN (He et al.'s option B, as in the pytorchcv model that
  GDFQ, Qimera and AIT quantise);
* ``bn-cnn`` -- a small BatchNorm CNN for the embedded MNIST (three 3x3 conv + BN + ReLU
  layers, 32/64/64 channels, two max-pools, global average pooling, a linear classifier):
  trained in seconds, it is what the tests and the demo of this feature use;
* ``space`` -- the derived network of a co-exploration run, built with
  :func:`search_spaces.build_network` from the run's search space and architecture.

A teacher file (``.pt``) holds only tensors, numbers, strings, lists and dicts, and loads with
``torch.load(weights_only=True)``: ``{"format", "kind": "coexplore-teacher", "spec": {...},
"state_dict": {...}, "metrics": {...}}``, where ``spec`` is a :class:`TeacherSpec` (architecture,
class names, input shape, the normalisation of its inputs, the dataset it was trained on).

Training (:func:`train_teacher`) is SGD with Nesterov momentum and a cosine schedule, for a fixed
number of epochs: the final weights are the teacher (no selection, least of all on the test
split, which is scored once at the end).  A checkpoint written after every epoch makes it
resumable; epoch ``e``'s shuffles and augmentations come from the loader's own ``(seed, e)``
stream, so a resumed run repeats the interrupted one.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..common import ConfigError, PathLike, Registry, atomic_write_bytes

logger = logging.getLogger(__name__)

TEACHER_FORMAT = 1
TEACHER_KIND = "coexplore-teacher"

#: ``build(spec, generator) -> nn.Module`` for each teacher architecture.
TEACHER_ARCHS: Registry[Callable[["TeacherSpec", Optional[torch.Generator]], nn.Module]] = Registry("teacher architecture")


@dataclass(frozen=True)
class TeacherSpec:
    """What a teacher is: enough to rebuild its network and to check a student's data against it."""

    arch: str  # a TEACHER_ARCHS name: resnet20 | bn-cnn | space
    num_classes: int  # outputs of the classifier
    input_shape: Tuple[int, int, int]  # (C, H, W) of one input image, pixels
    classes: Tuple[str, ...]  # class names; label i is classes[i]
    mean: Tuple[float, ...]  # per-channel normalisation mean of the inputs, [0, 1] pixel scale
    std: Tuple[float, ...]  # per-channel normalisation std, same scale
    dataset: str = ""  # what it was trained on (a get_data name), "" if unknown
    space: Optional[Dict[str, Any]] = None  # arch "space": SearchSpace.to_dict()
    architecture: Optional[Dict[str, str]] = None  # arch "space": {label: op}

    def __post_init__(self) -> None:
        for f in ("input_shape", "classes", "mean", "std"):
            v = getattr(self, f)
            if isinstance(v, list):
                object.__setattr__(self, f, tuple(v))
        if self.arch not in TEACHER_ARCHS:
            raise ConfigError(f"teacher arch must be one of {TEACHER_ARCHS.names()}, got {self.arch!r}")
        if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            raise ConfigError(f"teacher num_classes must be an integer >= 2, got {self.num_classes!r}")
        if len(self.input_shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in self.input_shape):
            raise ConfigError(f"teacher input_shape must be (C, H, W) of positive integers, got {self.input_shape!r}")
        if len(self.classes) != self.num_classes:
            raise ConfigError(f"teacher classes: {len(self.classes)} names for num_classes={self.num_classes}")
        if len(self.mean) != self.input_shape[0] or len(self.std) != self.input_shape[0]:
            raise ConfigError(f"teacher mean/std need one value per input channel ({self.input_shape[0]})")
        if self.arch == "space" and (self.space is None or self.architecture is None):
            raise ConfigError("teacher arch 'space' needs its search space and architecture")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        for f in ("input_shape", "classes", "mean", "std"):
            d[f] = list(d[f])
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "teacher spec") -> "TeacherSpec":
        allowed = {f for f in TeacherSpec.__dataclass_fields__}
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed fields: {sorted(allowed)}")
        try:
            return TeacherSpec(**{k: d[k] for k in d})
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def build(self, generator: Optional[torch.Generator] = None) -> nn.Module:
        """A freshly initialised network of this architecture (``[B, C, H, W] -> [B, num_classes]``).

        Every weight is drawn from ``generator`` (a fixed stream when ``None``); module construction,
        which draws from torch's global generator, runs with it forked and restored.
        """
        from ..seeds import isolated_torch_rng
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        with isolated_torch_rng(0):
            return TEACHER_ARCHS.get(self.arch)(self, gen)


# --------------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------------


def init_kaiming(module: nn.Module, generator: Optional[torch.Generator]) -> nn.Module:
    """He-normal (fan-out) convs, unit BN, small normal linear weights, drawn from ``generator``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                w = torch.empty(m.weight.shape, dtype=m.weight.dtype)
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=generator)
                else:
                    nn.init.normal_(w, 0.0, 0.01, generator=generator)
                m.weight.copy_(w)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BN, ReLU, a (projected where needed) shortcut.

    Shapes: ``[B, C_in, H, W] -> [B, C_out, H / stride, W / stride]``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2); ``n=3`` is ResNet-20.

    Shapes: ``[B, C, H, W] -> [B, num_classes]``; ``features(x)`` is the ``[B, 64]`` pooled feature.
    """

    def __init__(self, n: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers: List[nn.Module] = []
        c = 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                layers.append(BasicBlock(c, width, stride if i == 0 else 1))
                c = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layers(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BNCNN(nn.Module):
    """A small BatchNorm CNN (3 conv + BN + ReLU, 32/64/64 channels, 2 max-pools, linear).

    Shapes: ``[B, C, H, W] -> [B, num_classes]``; ``features(x)`` is ``[B, 64]``.
    """

    def __init__(self, num_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@TEACHER_ARCHS.register("resnet20")
def _resnet20(spec: TeacherSpec, generator: Optional[torch.Generator]) -> nn.Module:
    return init_kaiming(CifarResNet(3, spec.num_classes, spec.input_shape[0]), generator)


@TEACHER_ARCHS.register("bn-cnn")
def _bn_cnn(spec: TeacherSpec, generator: Optional[torch.Generator]) -> nn.Module:
    return init_kaiming(BNCNN(spec.num_classes, spec.input_shape[0]), generator)


@TEACHER_ARCHS.register("space")
def _space_net(spec: TeacherSpec, generator: Optional[torch.Generator]) -> nn.Module:
    from search_spaces import SearchSpace, build_network
    space = SearchSpace.from_dict(spec.space or {}, where="teacher spec: space")
    return build_network(space, spec.architecture or {}, generator=generator)


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of ``model`` (its rows are the class embeddings Qimera starts from)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ConfigError("the teacher has no Linear classifier layer")
    return last


def bn_layers(model: nn.Module) -> List[nn.BatchNorm2d]:
    """The ``BatchNorm2d`` layers of ``model`` that keep running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


@dataclass
class Teacher:
    """A loaded teacher: its spec, its network (eval mode) and the metrics recorded at training."""

    spec: TeacherSpec
    model: nn.Module
    metrics: Dict[str, Any] = field(default_factory=dict)

    def save(self, path: PathLike) -> Path:
        """Write the teacher file atomically (weights-only safe)."""
        path = Path(path)
        state = {"format": TEACHER_FORMAT, "kind": TEACHER_KIND, "spec": self.spec.to_dict(),
                 "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                 "metrics": dict(self.metrics)}
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(path, buf.getvalue())
        return path


def _safe_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(f"{path}: refused: the {what} holds objects other than tensors, numbers, strings, lists "
                          f"and dicts: {first}") from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(f"{path}: not a readable {what} (truncated or corrupted: {first})") from None


def load_teacher(path: PathLike) -> Teacher:
    """Read a teacher file (``torch.load(weights_only=True)``) and rebuild its network in eval mode.

    Raises:
        ConfigError: missing, unreadable or unsafe file, not a coexplore teacher, or weights that
            do not fit the recorded architecture.
    """
    path = Path(path)
    st = _safe_load(path, "teacher")
    if not isinstance(st, dict) or st.get("kind") != TEACHER_KIND:
        raise ConfigError(f"{path}: not a coexplore teacher file (train one with `coexplore teacher train`)")
    if st.get("format") != TEACHER_FORMAT:
        raise ConfigError(f"{path}: teacher format {st.get('format')!r}; this coexplore reads {TEACHER_FORMAT}")
    spec = TeacherSpec.from_dict(st.get("spec") or {}, where=f"{path}: spec")
    model = spec.build()
    try:
        model.load_state_dict(st["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"{path}: the weights do not fit arch {spec.arch!r}: "
                          f"{' '.join(str(exc).split())[:200]}") from None
    model.eval()
    return Teacher(spec, model, dict(st.get("metrics") or {}))


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def spec_for_data(arch: str, data, space: Optional[Dict[str, Any]] = None,
                  architecture: Optional[Dict[str, str]] = None) -> TeacherSpec:
    """The :class:`TeacherSpec` of an ``arch`` teacher for a :class:`~search_spaces.data.DataBundle`."""
    return TeacherSpec(arch=arch, num_classes=data.num_classes, input_shape=tuple(data.input_shape),
                       classes=tuple(data.classes), mean=tuple(data.mean), std=tuple(data.std), dataset=data.name,
                       space=space, architecture=architecture)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device) -> Dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over ``loader`` (eval mode; the mode is restored)."""
    was = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += int(y.shape[0])
    finally:
        model.train(was)
    return {"accuracy": correct / max(n, 1), "loss": loss / max(n, 1), "samples": n}


def train_teacher(spec: TeacherSpec, data, out: PathLike, *, epochs: int, lr: float, weight_decay: float = 5e-4,
                  momentum: float = 0.9, seed: int = 0, device: Any = "cpu", checkpoint: Optional[PathLike] = None,
                  progress: bool = True, log: Optional[Callable[[Dict[str, Any]], None]] = None) -> Teacher:
    """Train a teacher for a fixed number of epochs and write its file to ``out``.

    Args:
        spec: the architecture and data description (see :func:`spec_for_data`).
        data: a :class:`~search_spaces.data.DataBundle` matching ``spec`` (train, val, test loaders).
        out: the teacher file to write (``.pt``).
        epochs: passes over the training split (>= 1).
        lr: initial SGD learning rate, cosine-annealed to 0 per step.
        weight_decay, momentum: SGD settings (Nesterov).
        seed: seeds the initialisation (the loader's own seed drives shuffles and augmentation).
        device: where to train.
        checkpoint: a resumable state file (default ``out`` + ``.ckpt``), rewritten after every epoch
            and removed at the end.
        progress: a tqdm bar per epoch.
        log: called with each epoch's record (epoch, lr, loss, accuracy, val_accuracy, seconds).

    Returns:
        The trained :class:`Teacher` (eval mode), with ``metrics``: ``test_accuracy`` (scored once,
        after training), ``val_accuracy``, ``epochs``, ``seconds``, ``history``.
    """
    from tqdm.auto import tqdm

    from ..seeds import RunSeeds

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a finite number > 0, got {lr!r}")
    if tuple(data.input_shape) != tuple(spec.input_shape) or data.num_classes != spec.num_classes:
        raise ConfigError(f"data {data.name!r} has input shape {tuple(data.input_shape)} and {data.num_classes} "
                          f"classes; the teacher spec expects {tuple(spec.input_shape)} and {spec.num_classes}")
    device = torch.device(device)
    out = Path(out)
    ckpt = Path(checkpoint) if checkpoint is not None else out.with_name(out.name + ".ckpt")
    model = spec.build(RunSeeds(seed).torch("teacher-init")).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    total = max(1, epochs * len(data.train))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total)))
    start, history, elapsed = 0, [], 0.0
    identity = {"spec": spec.to_dict(), "epochs": epochs, "lr": float(lr), "weight_decay": float(weight_decay),
                "momentum": float(momentum), "seed": int(seed), "data": data.fingerprint()}
    if ckpt.is_file():
        st = _safe_load(ckpt, "teacher checkpoint")
        if not isinstance(st, dict) or st.get("identity") != identity:
            raise ConfigError(f"{ckpt}: a teacher checkpoint of a different training (spec, schedule, seed or "
                              f"data changed); delete it to start again")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start, history, elapsed = int(st["epoch"]), list(st["history"]), float(st["seconds"])
        logger.info("resuming teacher training at epoch %d/%d from %s", start + 1, epochs, ckpt)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        model.train()
        data.train.set_epoch(epoch)
        loss_sum, correct, n = 0.0, 0, 0
        lr_now = opt.param_groups[0]["lr"]
        for x, y in tqdm(data.train, desc=f"teacher {epoch + 1}/{epochs}", leave=False, disable=not progress):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * y.shape[0]
            correct += int((logits.argmax(1) == y).sum())
            n += int(y.shape[0])
        if not math.isfinite(loss_sum):
            raise ConfigError(f"teacher training diverged at epoch {epoch + 1} (loss not finite); lower lr ({lr})")
        val = evaluate(model, data.val, device)
        elapsed += time.perf_counter() - t0
        rec = {"epoch": epoch, "lr": lr_now, "loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1),
               "val_accuracy": val["accuracy"], "seconds": elapsed}
        history.append(rec)
        logger.info("teacher epoch %d/%d: loss %.4f, train acc %.4f, val acc %.4f (%.0f s)", epoch + 1, epochs,
                    rec["loss"], rec["accuracy"], rec["val_accuracy"], elapsed)
        if log is not None:
            log(rec)
        buf = io.BytesIO()
        torch.save({"identity": identity, "epoch": epoch + 1, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history,
                    "seconds": elapsed}, buf)
        atomic_write_bytes(ckpt, buf.getvalue())
    test = evaluate(model, data.test, device)
    model.eval()
    teacher = Teacher(spec, model.cpu(), {
        "test_accuracy": test["accuracy"], "test_samples": test["samples"],
        "val_accuracy": history[-1]["val_accuracy"] if history else None, "epochs": epochs, "lr": float(lr),
        "weight_decay": float(weight_decay), "seed": int(seed), "seconds": elapsed, "history": history,
        "selection": "final epoch (fixed schedule)"})
    teacher.save(out)
    try:
        ckpt.unlink()
    except OSError:
        pass
    return teacher


__all__: Sequence[str] = ["TEACHER_ARCHS", "BNCNN", "CifarResNet", "Teacher", "TeacherSpec", "bn_layers",
                          "classifier_layer", "evaluate", "load_teacher", "spec_for_data", "train_teacher"]
