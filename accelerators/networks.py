"""Built-in workloads: well-known networks as lists of :class:`~accelerators.workload.Layer`.

Only the layers the cost model prices are listed -- convolutions (grouped or not),
depthwise convolutions and fully connected layers, in execution order.  Pooling, batch
norm, activations and residual additions are not priced.  Every layer carries ``N = batch``.

Layer names follow the qualified module names of the reference PyTorch definitions
(torchvision's ``alexnet``/``vgg16``/``resnet18``/``resnet50``/``mobilenet_v2``, see each
constructor), so that :func:`accelerators.extract.layers_from_module` run on the
reference model yields the same names as the built-in entry.

Every entry is registered in :data:`WORKLOADS` with one constructor signature,
``fn(batch: int = 1) -> list[Layer]``; :func:`get_workload` resolves a name or a YAML path
and :func:`list_workloads` shows what exists.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

from coexplore.common import ConfigError
from coexplore.common import Registry
from .workload import LAYER_KINDS, Layer, conv, conv_output_size, depthwise, linear, load_workload

WorkloadFn = Callable[..., List[Layer]]

WORKLOADS: Registry[WorkloadFn] = Registry("workload")

# One stage of an inverted-residual table: (expansion t, output channels c, repeats n, stride s).
StageSpec = Tuple[int, int, int, int]


# ---- AlexNet ---------------------------------------------------------------------------

@WORKLOADS.register("alexnet")
def alexnet(batch: int = 1) -> List[Layer]:
    """The original two-tower AlexNet at 227x227, as profiled by Eyeriss.

    Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional
    Neural Networks", NeurIPS 2012; shapes as in Chen et al., "Eyeriss: An Energy-Efficient
    Reconfigurable Accelerator for Deep Convolutional Neural Networks", JSSC 2017.
    CONV2, CONV4 and CONV5 are grouped (``groups=2``, one group per GPU in the original),
    which is why this network has 724M MACs rather than the 1.1G of torchvision's
    single-tower variant.

    ====== ============================= ======= ======
    layer  filters                       groups  output
    ====== ============================= ======= ======
    conv1  96 x 3 x 11 x 11, stride 4    1       55x55
    conv2  256 x 48 x 5 x 5              2       27x27
    conv3  384 x 256 x 3 x 3             1       13x13
    conv4  384 x 192 x 3 x 3             2       13x13
    conv5  256 x 192 x 3 x 3             2       13x13
    fc6    9216 -> 4096
    fc7    4096 -> 4096
    fc8    4096 -> 1000
    ====== ============================= ======= ======

    Args:
        batch: images per inference (``N`` of every layer).

    Returns:
        The eight priced layers in execution order.
    """
    return [
        conv(3, 96, 11, 55, stride=4, N=batch, name="conv1"),
        conv(96, 256, 5, 27, groups=2, N=batch, name="conv2"),
        conv(256, 384, 3, 13, N=batch, name="conv3"),
        conv(384, 384, 3, 13, groups=2, N=batch, name="conv4"),
        conv(384, 256, 3, 13, groups=2, N=batch, name="conv5"),
        linear(256 * 6 * 6, 4096, N=batch, name="fc6"),
        linear(4096, 4096, N=batch, name="fc7"),
        linear(4096, 1000, N=batch, name="fc8"),
    ]


# ---- VGG-16 ----------------------------------------------------------------------------

_VGG16_CFG: Tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                     512, 512, 512, "M", 512, 512, 512, "M")


@WORKLOADS.register("vgg16")
def vgg16(batch: int = 1) -> List[Layer]:
    """VGG-16 (configuration D) at 224x224, as torchvision's ``vgg16``.

    Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", ICLR 2015.  Thirteen 3x3 convolutions (padding 1) in five stages
    separated by 2x2 max pooling, then ``classifier.0`` 25088 -> 4096, ``classifier.3``
    4096 -> 4096 and ``classifier.6`` 4096 -> 1000.

    Args:
        batch: images per inference (``N`` of every layer).

    Returns:
        The sixteen priced layers in execution order.
    """
    layers: List[Layer] = []
    c_in, hw = 3, 224
    for spec, module_index in _vgg_indices():
        if spec == "M":
            hw = conv_output_size(hw, 2, 2, 0)
            continue
        layers.append(conv(c_in, int(spec), 3, hw, N=batch, name=f"features.{module_index}"))
        c_in = int(spec)
    layers.append(linear(c_in * 7 * 7, 4096, N=batch, name="classifier.0"))
    layers.append(linear(4096, 4096, N=batch, name="classifier.3"))
    layers.append(linear(4096, 1000, N=batch, name="classifier.6"))
    return layers


def _vgg_indices() -> List[Tuple[int | str, int]]:
    """Pair each VGG-16 config entry with its index in torchvision's ``features`` Sequential.

    A convolution is followed by its ReLU (two modules); a pooling layer is one module.
    """
    out: List[Tuple[int | str, int]] = []
    index = 0
    for spec in _VGG16_CFG:
        out.append((spec, index))
        index += 1 if spec == "M" else 2
    return out


# ---- ResNets ---------------------------------------------------------------------------

def _resnet(batch: int, bottleneck: bool, blocks: Sequence[int], num_classes: int = 1000,
            resolution: int = 224) -> List[Layer]:
    """torchvision's ResNet (v1.5: the stride of a bottleneck sits on its 3x3 conv).

    Within a block the shortcut's 1x1 ``downsample.0`` convolution is listed after the
    main path, because that is the order in which torchvision's ``forward`` runs it.
    """
    layers = [conv(3, 64, 7, conv_output_size(resolution, 7, 2, 3), stride=2, N=batch, name="conv1")]
    hw = conv_output_size(conv_output_size(resolution, 7, 2, 3), 3, 2, 1)  # conv1, then the 3x3/2 max pool
    expansion = 4 if bottleneck else 1
    c_in = 64
    for stage, (width, n_blocks) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for b in range(n_blocks):
            stride = 2 if (stage > 1 and b == 0) else 1
            out_hw = conv_output_size(hw, 3, stride, 1)
            c_out = width * expansion
            p = f"layer{stage}.{b}"
            if bottleneck:
                layers += [
                    conv(c_in, width, 1, hw, N=batch, name=f"{p}.conv1"),
                    conv(width, width, 3, out_hw, stride=stride, N=batch, name=f"{p}.conv2"),
                    conv(width, c_out, 1, out_hw, N=batch, name=f"{p}.conv3"),
                ]
            else:
                layers += [
                    conv(c_in, width, 3, out_hw, stride=stride, N=batch, name=f"{p}.conv1"),
                    conv(width, width, 3, out_hw, N=batch, name=f"{p}.conv2"),
                ]
            if stride != 1 or c_in != c_out:
                layers.append(conv(c_in, c_out, 1, out_hw, stride=stride, N=batch, name=f"{p}.downsample.0"))
            c_in, hw = c_out, out_hw
    layers.append(linear(c_in, num_classes, N=batch, name="fc"))
    return layers


@WORKLOADS.register("resnet18")
def resnet18(batch: int = 1) -> List[Layer]:
    """ResNet-18 at 224x224, as torchvision's ``resnet18``.

    He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
    Basic blocks ``[2, 2, 2, 2]``; the 1x1 stride-2 shortcut convolutions of stages 2-4
    are included.

    Args:
        batch: images per inference (``N`` of every layer).

    Returns:
        21 priced layers in execution order.
    """
    return _resnet(batch, bottleneck=False, blocks=(2, 2, 2, 2))


@WORKLOADS.register("resnet50")
def resnet50(batch: int = 1) -> List[Layer]:
    """ResNet-50 at 224x224, as torchvision's ``resnet50`` (ResNet v1.5).

    He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
    Bottleneck blocks ``[3, 4, 6, 3]`` with the first block of each stage carrying a 1x1
    shortcut convolution.  As in torchvision (and NVIDIA's "ResNet v1.5"), the stride of
    a downsampling block is on its 3x3 convolution, which gives 4.09G MACs instead of the
    3.86G of the paper's placement on the first 1x1.

    Args:
        batch: images per inference (``N`` of every layer).

    Returns:
        54 priced layers in execution order.
    """
    return _resnet(batch, bottleneck=True, blocks=(3, 4, 6, 3))


# ---- MobileNetV2 -----------------------------------------------------------------------

MOBILENETV2_STAGES: Tuple[StageSpec, ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""The inverted-residual table of MobileNetV2 (Sandler et al., Table 2): (t, c, n, s)."""

MOBILENETV2_CIFAR_STAGES: Tuple[StageSpec, ...] = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""The CIFAR variant of the table: the second stage's stride 2 becomes 1."""


def _mobilenetv2(batch: int, resolution: int, stem_stride: int, stages: Sequence[StageSpec],
                 num_classes: int) -> List[Layer]:
    """torchvision's ``MobileNetV2`` structure (width multiplier 1.0), names included.

    ``features.0.0`` is the 3x3 stem; block ``features.i`` holds ``conv.0.0`` (1x1
    expansion, absent when t = 1), the depthwise 3x3 and the 1x1 linear projection;
    ``features.18.0`` is the 1x1 head to 1280 channels and ``classifier.1`` the classifier.
    """
    hw = conv_output_size(resolution, 3, stem_stride, 1)
    layers = [conv(3, 32, 3, hw, stride=stem_stride, N=batch, name="features.0.0")]
    c_in, index = 32, 1
    for t, c, n, s in stages:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c_in * t
            out_hw = conv_output_size(hw, 3, stride, 1)
            p, j = f"features.{index}.conv", 0
            if t != 1:
                layers.append(conv(c_in, hidden, 1, hw, N=batch, name=f"{p}.0.0"))
                j = 1
            layers.append(depthwise(hidden, 3, out_hw, stride=stride, N=batch, name=f"{p}.{j}.0"))
            layers.append(conv(hidden, c, 1, out_hw, N=batch, name=f"{p}.{j + 1}"))
            c_in, hw, index = c, out_hw, index + 1
    layers.append(conv(c_in, 1280, 1, hw, N=batch, name=f"features.{index}.0"))
    layers.append(linear(1280, num_classes, N=batch, name="classifier.1"))
    return layers


@WORKLOADS.register("mobilenetv2")
def mobilenetv2(batch: int = 1) -> List[Layer]:
    """MobileNetV2 (width 1.0) at 224x224, as torchvision's ``mobilenet_v2``.

    Sandler, Howard, Zhu, Zhmoginov and Chen, "MobileNetV2: Inverted Residuals and Linear
    Bottlenecks", CVPR 2018.  Stem 3x3/2 conv to 32 channels (112x112), the seventeen
    inverted residual blocks of :data:`MOBILENETV2_STAGES`, a 1x1 conv to 1280 channels at
    7x7 and a 1280 -> 1000 classifier.

    Args:
        batch: images per inference (``N`` of every layer).

    Returns:
        53 priced layers in execution order.
    """
    return _mobilenetv2(batch, 224, 2, MOBILENETV2_STAGES, 1000)


@WORKLOADS.register("mobilenetv2-cifar")
def mobilenetv2_cifar(batch: int = 1) -> List[Layer]:
    """MobileNetV2 for CIFAR-10 at 32x32, the variant common in CIFAR code bases.

    Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
    with the first two stride-2 layers (the stem and the first block of the 24-channel
    stage) changed to stride 1, as in the widely used ``kuangliu/pytorch-cifar`` model.
    Unlike that model we keep MobileNetV2's block exactly (no 1x1 expansion when t = 1,
    identity shortcuts only), so the network is torchvision's ``mobilenet_v2`` with two
    strides changed and ``num_classes=10``.

    ================ === ===== === ====== =======
    layer            t   c     n   stride  output
    ================ === ===== === ====== =======
    stem conv 3x3    --  32    1   1       32x32
    bottleneck       1   16    1   1       32x32
    bottleneck       6   24    2   1       32x32
    bottleneck       6   32    3   2       16x16
    bottleneck       6   64    4   2       8x8
    bottleneck       6   96    3   1       8x8
    bottleneck       6   160   3   2       4x4
    bottleneck       6   320   1   1       4x4
    conv 1x1         --  1280  1   1       4x4
    avgpool, linear  --  10    1   --      1x1
    ================ === ===== === ====== =======

    Args:
        batch: images per inference (``N`` of every layer).

    Returns:
        53 priced layers in execution order.
    """
    return _mobilenetv2(batch, 32, 1, MOBILENETV2_CIFAR_STAGES, 10)


# ---- lookup ----------------------------------------------------------------------------

def get_workload(name_or_path: str, batch: int = 1) -> List[Layer]:
    """A built-in workload by name, or one loaded from a YAML file.

    Args:
        name_or_path: a name from :func:`list_workloads` (case-insensitive), or a path
            ending in ``.yaml``/``.yml`` in the format of
            :func:`accelerators.workload.save_workload`.
        batch: images per inference.  A built-in network is built with ``N = batch``; a
            file's layers are taken to describe one inference and have their stored ``N``
            multiplied by ``batch`` (so a file with token-folded ``N`` scales correctly).

    Returns:
        The layers in execution order.

    Raises:
        ConfigError: ``batch`` is not a positive integer, or the file is invalid.
        UnknownNameError: the name is not registered; the message lists the known names.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be a positive integer, got {batch!r}")
    s = str(name_or_path)
    if s.lower().endswith((".yaml", ".yml")):
        layers = load_workload(s)
        if batch == 1:
            return layers
        return [replace(l, N=l.N * batch) for l in layers]
    return WORKLOADS.get(s)(batch=batch)


def list_workloads() -> List[str]:
    """Names of the built-in workloads, sorted."""
    return WORKLOADS.names()


def summary(layers: Iterable[Layer]) -> Dict[str, int]:
    """Totals of a workload.

    Args:
        layers: the workload.

    Returns:
        ``{"layers": count, "macs": multiply-accumulates, "weights": weight elements
        (no biases or batch-norm parameters), "macs_conv": ..., "macs_depthwise": ...,
        "macs_linear": ...}``.
    """
    layers = list(layers)
    out = {"layers": len(layers), "macs": sum(l.macs for l in layers),
           "weights": sum(l.weight_elems for l in layers)}
    for kind in LAYER_KINDS:
        out[f"macs_{kind}"] = sum(l.macs for l in layers if l.kind == kind)
    return out
