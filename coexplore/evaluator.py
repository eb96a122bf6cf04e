"""The DANCE evaluator: a differentiable neural surrogate of the hardware cost.

DANCE (Choi et al., DAC 2021, arXiv 2009.06237, Sec. 4) replaces the hardware search
and the cost model with two pre-trained networks, which are frozen during the search:

* the **hardware-generation network** maps an architecture encoding to the best
  accelerator, with one categorical head per hardware parameter (PE x, PE y, RF size,
  dataflow, ...);
* the **cost-estimation network** maps the architecture encoding, the generated
  accelerator (one-hot per parameter, or its straight-through Gumbel-softmax relaxation)
  and features forwarded from the generator to latency, energy and area.

Both are residual MLPs.  Because every cost is ``fixed(hw) + enc . cand(hw)`` for the
analytical model (see :mod:`coexplore.pricing`), the estimator also has a multiplicative
branch ``(W enc + b) * phi(hw)`` that can represent that bilinear form exactly; the
residual trunk over ``[enc, hw, features]`` models the rest.  Input and output
normalisation live inside the module (as buffers), and a checkpoint records the
fingerprints of the search and hardware spaces and the cost-model version, so a
mismatched evaluator fails loudly (BoTorch-style self-contained surrogate).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from accelerators import ConfigError, HardwareSpace
from .common import atomic_write_bytes

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class ResidualBlock(nn.Module):
    """``x + W2 relu(W1 x)``: the residual MLP block of DANCE's evaluator."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.relu(self.fc1(x)))


def _mlp(d_in: int, width: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), *[ResidualBlock(width) for _ in range(blocks)], nn.ReLU())


class HardwareGenerator(nn.Module):
    """Architecture encoding ``[B, D]`` -> per-parameter logits and forwarded features.

    The heads of all parameters are one linear layer; its ``[B, H]`` output is the
    concatenation of the per-parameter logits (``H = sum(cardinalities)``).

    Args:
        enc_dim: D, the search space's encoding size.
        cardinalities: categories per hardware parameter.
        width, blocks: residual MLP size.
    """

    def __init__(self, enc_dim: int, cardinalities: Sequence[int], width: int = 128, blocks: int = 2) -> None:
        super().__init__()
        self.cardinalities = list(cardinalities)
        self.trunk = _mlp(enc_dim, width, blocks)
        self.heads = nn.Linear(width, sum(self.cardinalities))

    def forward(self, enc: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns (``[B, H]`` concatenated logits, ``[B, width]`` features)."""
        h = self.trunk(enc)
        return self.heads(h), h


class CostEstimator(nn.Module):
    """(encoding ``[B, D]``, hardware one-hot ``[B, H]``, features ``[B, W]``) -> ``[B, 3]``.

    The three outputs are the normalised log latency, log energy and log area.  Latency
    and energy get a multiplicative branch, ``softplus(sum_r (A enc)_r * C(hw)_r)``, able to
    represent the analytical model's ``fixed(hw) + enc . cand(hw)`` exactly; area, a
    function of the hardware alone, comes from the hardware embedding; a residual trunk over
    ``[enc, hw, features]`` corrects all three.
    """

    def __init__(self, enc_dim: int, hw_dim: int, feat_dim: int, width: int = 256, blocks: int = 1,
                 rank: int = 128) -> None:
        super().__init__()
        self.rank = rank
        self.arch_proj = nn.Linear(enc_dim, rank)
        self.hw_embed = nn.Sequential(nn.Linear(hw_dim, width), nn.ReLU())
        self.hw_proj = nn.Linear(width, 2 * rank + 1)  # latency coefs, energy coefs, log area
        self.trunk = _mlp(enc_dim + hw_dim + feat_dim, width, blocks)
        self.out = nn.Linear(width, 3)
        nn.init.zeros_(self.out.weight)  # start as the pure multiplicative model
        nn.init.zeros_(self.out.bias)

    def forward(self, enc: torch.Tensor, hw: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        h = self.hw_proj(self.hw_embed(hw))  # [B, 2r + 1]
        a = self.arch_proj(enc).repeat(1, 2)  # [B, 2r]
        prod = (h[:, :-1] * a).view(-1, 2, self.rank).sum(-1)  # [B, 2]
        base = torch.cat([torch.log(F.softplus(prod) + 1e-6), h[:, -1:]], dim=-1)
        return base + self.out(self.trunk(torch.cat([enc, hw, feat], dim=-1)))


class Evaluator(nn.Module):
    """The frozen, differentiable hardware-cost surrogate used by the search.

    Args:
        enc_dim: the search space's encoding size.
        hw_space: the hardware space whose parameters the generator predicts.
        width, blocks: network sizes.
        meta: provenance (fingerprints, cost-model version, objective); stored in checkpoints.
    """

    def __init__(self, enc_dim: int, hw_space: HardwareSpace, width: int = 128, blocks: int = 2,
                 meta: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.hw_space = hw_space
        self.enc_dim = enc_dim
        self.cardinalities = hw_space.cardinalities
        self.hw_dim = sum(self.cardinalities)
        self.config = {"enc_dim": enc_dim, "width": width, "blocks": blocks}
        self.meta = dict(meta or {})
        self.generator = HardwareGenerator(enc_dim, self.cardinalities, width, blocks)
        self.estimator = CostEstimator(enc_dim, self.hw_dim, width, width, blocks=1)
        self.report: Dict[str, Any] = {}
        # normalisation of targets: y_norm = (log y - mu) / sigma
        self.register_buffer("log_mu", torch.zeros(3))
        self.register_buffer("log_sigma", torch.ones(3))

        # index maps between the concatenated [B, H] layout and a padded [B, P, n_max] one,
        # so that all heads are softmaxed / arg-maxed in single ops (this is the search's
        # hot path: every op costs ~10 us on a CPU)
        n_max = max(self.cardinalities)
        pad_index = torch.zeros(len(self.cardinalities), n_max, dtype=torch.long)
        pad_mask = torch.zeros(len(self.cardinalities), n_max, dtype=torch.bool)
        flat_index = []
        off = 0
        for i, n in enumerate(self.cardinalities):
            pad_index[i, :n] = torch.arange(off, off + n)
            pad_mask[i, :n] = True
            flat_index += [i * n_max + j for j in range(n)]
            off += n
        self.register_buffer("pad_index", pad_index, persistent=False)
        self.register_buffer("pad_mask", pad_mask, persistent=False)
        self.register_buffer("flat_index", torch.tensor(flat_index, dtype=torch.long), persistent=False)

    # ---- pieces ---------------------------------------------------------------------------
    def split_logits(self, logits: torch.Tensor) -> List[torch.Tensor]:
        """``[B, H]`` concatenated logits -> list of per-parameter ``[B, n_p]``."""
        return list(torch.split(logits, self.cardinalities, dim=-1))

    def relax(self, logits: torch.Tensor, mode: str = "argmax", tau: float = 1.0,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Concatenated per-parameter one-hots ``[B, H]`` with straight-through gradients.

        Args:
            logits: ``[B, H]`` concatenated per-parameter logits.
            mode: ``argmax`` (deterministic straight-through: forward is the argmax one-hot,
                backward the softmax), ``gumbel`` (straight-through Gumbel-softmax: forward
                is a one-hot sample) or ``soft`` (the plain softmax, fully smooth).
            tau: softmax temperature.
            generator: torch RNG for ``gumbel``.
        """
        if mode not in ("argmax", "gumbel", "soft"):
            raise ConfigError(f"hardware relaxation {mode!r} unknown; allowed: argmax, gumbel, soft")
        if mode == "gumbel":
            u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
            gumbel = -torch.log((-torch.log(u.clamp_min(1e-10))).clamp_min(1e-10))
            logits = logits + gumbel
        padded = logits[:, self.pad_index].masked_fill(~self.pad_mask, float("-inf"))  # [B, P, n_max]
        soft = torch.softmax(padded / tau, dim=-1)
        if mode != "soft":
            hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
            soft = hard - soft.detach() + soft
        return soft.flatten(1)[:, self.flat_index]

    def estimate(self, enc: torch.Tensor, hw: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """``[B, 3]`` log latency (s), log energy (J), log area (mm^2), de-normalised."""
        return torch.addcmul(self.log_mu, self.estimator(enc, hw, feat), self.log_sigma)

    def forward(self, enc: torch.Tensor, mode: str = "argmax", tau: float = 1.0,
                generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """Predicted hardware and costs of architecture encodings.

        Args:
            enc: ``[B, D]`` or ``[D]`` architecture encodings (soft or one-hot).
            mode, tau, generator: see :meth:`relax`.

        Returns:
            ``latency_s``, ``energy_j``, ``area_mm2`` (``[B]`` or scalars), ``log`` (their
            logs, ``[B, 3]``), ``hw`` (the relaxed one-hot ``[B, H]``) and ``hw_logits``
            (``[B, H]``).
        """
        squeeze = enc.dim() == 1
        if squeeze:
            enc = enc.unsqueeze(0)
        logits, feat = self.generator(enc)
        hw = self.relax(logits, mode, tau, generator)
        logs = self.estimate(enc, hw, feat)
        vals = logs.exp()
        out = {"latency_s": vals[:, 0], "energy_j": vals[:, 1], "area_mm2": vals[:, 2],
               "log": logs, "hw": hw, "hw_logits": logits}
        if squeeze:
            out = {k: v[0] for k, v in out.items()}
        return out

    def predict_accelerator(self, enc: torch.Tensor):
        """The generator's accelerator (argmax per parameter) for one encoding ``[D]``."""
        with torch.no_grad():
            logits, _ = self.generator(enc.reshape(1, -1))
        return self.hw_space.decode([int(l.argmax(-1)[0]) for l in self.split_logits(logits)])

    # ---- checkpoints ---------------------------------------------------------------------
    def save(self, path: Union[str, Path], report: Optional[Dict[str, Any]] = None) -> None:
        """Weights and provenance in one file, written atomically; loadable with ``weights_only=True``."""
        import io
        payload = {"format": CHECKPOINT_FORMAT, "state_dict": self.state_dict(),
                   "config": json.dumps(self.config), "hw_space": json.dumps(self.hw_space.to_dict()),
                   "meta": json.dumps(self.meta), "report": json.dumps(report or {})}
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write_bytes(path, buf.getvalue())

    @staticmethod
    def load(path: Union[str, Path], expect: Optional[Dict[str, str]] = None,
             map_location: Union[str, torch.device] = "cpu") -> "Evaluator":
        """Load a checkpoint without executing code from it (``torch.load(weights_only=True)``).

        Args:
            expect: provenance the caller needs, e.g. ``CostTable.key()``: keys among
                ``search_space``, ``hardware_space``, ``cost_model``; any mismatch raises.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such evaluator checkpoint")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise ConfigError(f"{path}: not a loadable evaluator checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path}: not an evaluator checkpoint of format {CHECKPOINT_FORMAT}")
        meta = json.loads(payload["meta"])
        cfg = json.loads(payload["config"])
        hw = HardwareSpace.from_dict(json.loads(payload["hw_space"]))
        with torch.random.fork_rng(devices=[]):  # the weights are loaded below: draw nothing from the caller's stream
            ev = Evaluator(cfg["enc_dim"], hw, cfg["width"], cfg["blocks"], meta=meta)
        ev.load_state_dict(payload["state_dict"])
        ev.report = json.loads(payload.get("report", "{}"))
        ev.eval()
        ev.check_provenance(expect or {}, where=str(path))
        return ev

    def check_provenance(self, expect: Dict[str, str], where: str = "evaluator") -> None:
        """Raise unless the evaluator was trained for ``expect`` (e.g. ``CostTable.key()``:
        the ``search_space``, ``hardware_space`` and ``cost_source`` fingerprints and the
        ``batch``).  A key the evaluator does not record counts as a mismatch."""
        for k, v in expect.items():
            if k not in self.meta:
                raise ConfigError(f"{where}: evaluator does not record its {k} (it predates this coexplore); "
                                  f"rebuild it with `coexplore evaluator build`")
            if str(self.meta[k]) != str(v):
                raise ConfigError(f"{where}: evaluator was trained for {k} {self.meta[k]!r} but this run has {v!r}; "
                                  f"rebuild it with `coexplore evaluator build`")
