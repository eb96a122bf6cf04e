"""Test-wide settings: small torch ops run faster on one thread, and tests share 2 cores."""

import torch

torch.set_num_threads(1)
