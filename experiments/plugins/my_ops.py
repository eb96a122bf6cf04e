"""An example plugin: one op of your own, registered for YAML search spaces.

    coexplore --plugin experiments/plugins/my_ops.py search -c experiments/configs/plugin-example.yaml --out runs/mine

Any op is a function ``(C_in, C_out, stride) -> nn.Module``; ``@register_op`` makes its name
usable wherever a space lists candidates.  The cost model prices it by tracing the module
(its convolutions and linear layers).
"""

import torch.nn as nn

from search_spaces import register_op


@register_op("sep5x5_bn")
def sep5x5_bn(C_in: int, C_out: int, stride: int) -> nn.Module:
    """A 5x5 depthwise-separable convolution with BatchNorm and ReLU6."""
    return nn.Sequential(nn.Conv2d(C_in, C_in, 5, stride, 2, groups=C_in, bias=False), nn.BatchNorm2d(C_in),
                         nn.ReLU6(), nn.Conv2d(C_in, C_out, 1, bias=False), nn.BatchNorm2d(C_out), nn.ReLU6())
