"""Calibration data from a text-to-image diffusion model with mixup-class prompts (the GenQ line).

GenQ (Li et al., "GenQ: Quantization in Low Data Regimes with Generative Synthetic Data", ECCV 2024)
and related work generate quantisation data with a text-to-image diffusion model instead of a
generator trained against the teacher; *mixup-class prompts* fuse several class names in one
prompt ("a photo of a cat and a dog") to produce samples between classes, the diffusion analogue
of Qimera's superposed embeddings.

Method ``diffusion-mixup``: a pool of ``diffusion_pool`` images is generated once
(:meth:`DiffusionMixup.prepare`) by a ``diffusers`` text-to-image pipeline loaded from a **local
path** (``MethodConfig.diffusion_path``; nothing is downloaded); a fraction ``mix_ratio`` of the
prompts names ``mix_classes`` classes (their target is the uniform mixture of those classes), the
rest name one class.  Images are resized to the teacher's input, converted to its channels and
normalised with its statistics, and the same student loop trains on batches drawn from the pool.

**No pretrained weights ship with coexplore**: a user must provide a diffusers pipeline folder
(``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``),
e.g. a Stable Diffusion checkpoint saved with ``save_pretrained``.  The tests build a tiny,
randomly initialised pipeline, save it and load it back, which checks the plumbing only: its
images are noise, and no accuracy claim is made for this method.  ``diffusers`` (and
``transformers``) are the optional extra ``coexplore[diffusers]``.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Tuple

import torch
import torch.nn.functional as F

from ..common import ConfigError
from .base import DataFreeMethod, register_method

logger = logging.getLogger(__name__)


def mixup_prompts(classes, n: int, mix_ratio: float, mix_classes: int,
                  generator: torch.Generator) -> Tuple[List[str], torch.Tensor]:
    """``n`` prompts and their target distributions ``[n, K]``.

    A fraction ``mix_ratio`` of the prompts fuses ``mix_classes`` distinct class names
    ("a photo of a cat and a dog"), with the uniform mixture of those classes as target; the
    others name one class ("a photo of a cat").
    """
    k = len(classes)
    n_mix = int(round(mix_ratio * n))
    prompts, targets = [], torch.zeros(n, k)
    for i in range(n):
        if i < n_mix:
            picks = torch.randperm(k, generator=generator)[:mix_classes].tolist()
        else:
            picks = [int(torch.randint(0, k, (1,), generator=generator))]
        names = [str(classes[c]).replace("_", " ") for c in picks]
        prompts.append("a photo of a " + " and a ".join(names))
        targets[i, picks] = 1.0 / len(picks)
    return prompts, targets


def load_pipeline(path: str):
    """A diffusers text-to-image pipeline from a local folder (never from a hub)."""
    try:
        from diffusers import DiffusionPipeline
    except ImportError:
        raise ConfigError("method diffusion-mixup needs diffusers and transformers: "
                          "pip install 'coexplore[diffusers]'") from None
    from pathlib import Path
    if not path or not Path(path).is_dir():
        raise ConfigError(f"diffusion_path must be a local diffusers pipeline folder (with model_index.json); "
                          f"got {path!r}. No pretrained weights ship with coexplore: save one with "
                          f"save_pretrained and pass its folder")
    try:
        return DiffusionPipeline.from_pretrained(path, local_files_only=True, safety_checker=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"diffusion_path {path}: cannot load a diffusers pipeline: "
                          f"{' '.join(str(exc).split())[:200]}") from None


@register_method("diffusion-mixup")
class DiffusionMixup(DataFreeMethod):
    """Mixup-class prompts to a local diffusion pipeline (see the module docstring)."""

    needs_bn = False
    trains_generator = False

    def __init__(self, teacher, cfg, generator: torch.Generator) -> None:
        super().__init__(teacher, cfg, generator)
        self.__dict__["classes"] = tuple(teacher.spec.classes)
        self.__dict__["norm"] = (torch.tensor(teacher.spec.mean).view(1, -1, 1, 1),
                                 torch.tensor(teacher.spec.std).view(1, -1, 1, 1))
        n = cfg.diffusion_pool
        self.register_buffer("pool", torch.zeros(n, *self.image_shape))
        self.register_buffer("pool_targets", torch.zeros(n, self.num_classes))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def to_teacher_input(self, images: torch.Tensor) -> torch.Tensor:
        """``[n, 3, h, w]`` images in [0, 1] -> the teacher's normalised ``[n, C, H, W]``."""
        c, h, w = self.image_shape
        x = F.interpolate(images.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        if c == 1:
            x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        elif c != 3:
            raise ConfigError(f"diffusion-mixup makes RGB images; the teacher takes {c} channels")
        mean, std = self.norm
        return (x.clamp(0, 1) - mean) / std

    @torch.no_grad()
    def prepare(self, generator: torch.Generator, progress: bool = False, batch_size: int = 8) -> Dict[str, float]:
        if bool(self.ready):
            return {}
        cfg = self.cfg
        pipe = load_pipeline(cfg.diffusion_path or "")
        pipe.set_progress_bar_config(disable=True)
        n = cfg.diffusion_pool
        prompts, targets = mixup_prompts(self.classes, n, cfg.mix_ratio, cfg.mix_classes, generator)
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
        for start in range(0, n, batch_size):
            chunk = prompts[start:start + batch_size]
            g = torch.Generator().manual_seed(seed + start)
            out = pipe(chunk, num_inference_steps=cfg.diffusion_steps, guidance_scale=cfg.diffusion_guidance,
                       height=cfg.diffusion_resolution, width=cfg.diffusion_resolution, generator=g,
                       output_type="pt")
            self.pool[start:start + len(chunk)] = self.to_teacher_input(out.images)
        self.pool_targets.copy_(targets)
        self.ready.fill_(True)
        return {"diffusion_images": float(n)}

    def draw(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
        idx = torch.randint(0, self.pool.shape[0], (n,), generator=generator)
        t = self.pool_targets[idx]
        return t.argmax(dim=1), t, {"index": idx}

    def generate(self, labels, targets, extra: Mapping[str, Any], generator) -> torch.Tensor:
        return self.pool[extra["index"]]
