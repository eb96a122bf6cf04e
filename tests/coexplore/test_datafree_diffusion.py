"""Mixup-class prompts to a local diffusion pipeline (coexplore.datafree.diffusion): the plumbing only.

The pipeline is tiny and randomly initialised (built here, saved to tmp_path and loaded back from
the path); its images are noise, so nothing here measures accuracy.
"""

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from coexplore.common import ConfigError  # noqa: E402
from coexplore.datafree import QuantizeConfig, quantize, spec_for_data, train_teacher  # noqa: E402
from coexplore.datafree.diffusion import load_pipeline, mixup_prompts  # noqa: E402
from search_spaces import get_data  # noqa: E402


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_pipeline(folder: Path) -> Path:
    """A randomly initialised Stable Diffusion pipeline small enough for a CPU test, saved to ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}  # byte-level BPE with no merges: one token per character
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    with torch.random.fork_rng():  # the libraries initialise from the global generator: fork and restore it
        torch.manual_seed(0)
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=32, projection_dim=16, bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]))
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), latent_channels=4,
                            norm_num_groups=4, sample_size=16)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=DDIMScheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def test_mixup_prompts_fuse_class_names():
    prompts, targets = mixup_prompts(("cat", "dog", "ship"), 10, 0.5, 2, torch.Generator().manual_seed(0))
    assert len(prompts) == 10 and targets.shape == (10, 3)
    assert all(" and a " in p for p in prompts[:5]) and not any(" and a " in p for p in prompts[5:])
    assert torch.allclose(targets.sum(1), torch.ones(10))
    assert bool((targets[:5].max(1).values == 0.5).all())


def test_missing_pipeline_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="No pretrained weights ship with coexplore"):
        load_pipeline(str(tmp_path / "none"))


def test_diffusion_mixup_runs_the_student_loop(tmp_path):
    path = tiny_pipeline(tmp_path / "pipe")
    assert (path / "model_index.json").is_file()
    data = get_data("mnist-embedded", batch_size=32, eval_batch_size=500, seed=0, limit=100)
    teacher = tmp_path / "t.pt"
    train_teacher(spec_for_data("bn-cnn", data), data, teacher, epochs=1, lr=0.1, seed=0, progress=False)
    cfg = QuantizeConfig(teacher=str(teacher), method="diffusion-mixup", wbits=4, abits=4, iterations=2,
                         generator_warmup=0, batch_size=4, progress=False, log_every=1, calib_batches=1,
                         val_samples=4, method_cfg={"diffusion_path": str(path), "diffusion_pool": 4,
                                                    "diffusion_steps": 2, "diffusion_resolution": 16,
                                                    "mix_ratio": 0.5})
    r = quantize(cfg, tmp_path / "run", data=data)
    assert r.method == "diffusion-mixup" and r.metrics["accuracy"] is not None
    pool = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["method"]["pool"]
    assert pool.shape == (4, 1, 28, 28) and bool(torch.isfinite(pool).all()) and float(pool.std()) > 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["data_free"] is True
