"""Precision schemes as registered objects: how a PE's MAC turns operand bit widths into throughput, energy and area.

An accelerator's ``precision`` field names one of them (``list_precisions()``):

* ``fixed`` -- a bit-parallel ``word_bits x word_bits`` MAC, one MAC per PE per cycle (today's
  model).  A layer's weights and activations may be narrower than the word: they are *stored*
  and moved at their own bits, but the MAC runs at full width and speed (no speed-up, the
  energy of a full-width MAC).  Wider than the word is refused.
* ``bit-serial`` -- Stripes (Judd et al., MICRO 2016): activations are fed one bit per cycle,
  weights bit-parallel.  A PE equals one ``word_bits`` MAC per cycle at ``word_bits``-bit
  activations, so with ``a``-bit activations it does ``word_bits / a`` MACs per cycle (at the
  default 16-bit word: Stripes' ``16 / a``).  Weights and activations: 1..``word_bits`` bits.
* ``loom`` -- Loom (Sharify et al., DAC 2018): weights and activations both bit-serial, so
  ``word_bits^2 / (w a)`` MACs per cycle (``256 / (w a)`` at 16 bits).  1..``word_bits`` bits.
  (Loom's fully connected layers scale with the weight bits only; the model applies the
  convolutional rule to every layer.)
* ``bit-fused`` -- BitFusion (Sharma et al., ISCA 2018): a fusion unit of 16 2-bit BitBricks.
  Bits round up to 2, 4, 8 or 16; an ``8 x 8`` fusion does one MAC per cycle and narrower
  operands fuse into ``floor(8/a) floor(8/w)`` MACs per cycle (2-bit floor: 16 at 2 x 2);
  16-bit operands take two passes each (temporal fusion: 16 x 16 = 1/4 MAC per cycle, 16 x 8
  = 1/2).  Weights and activations: 1..16 bits; the accelerator's word (the width of a layer
  without bits) must be 4, 8 or 16.  The products a unit fuses are added in its shift-add tree
  before they reach the accumulator ("sum-together"), so a fused unit reads and writes one partial
  sum per cycle, not per MAC.

Every function works on numpy arrays that broadcast (``[A, L, 1]`` in the cost model): ``wb``,
``ab`` are the weight and activation bits of each pair (the accelerator's word where the layer
has none), ``word`` the accelerator's ``word_bits``.  The constants (energy and area overheads
of precision scalability, each with its source) are in :mod:`accelerators.technology`.

A scheme changes the compute term only.  Memory capacity and traffic follow the operand bits
under every scheme (:mod:`accelerators.cost_model`): a 4-bit tensor takes half the RF, buffer
and DRAM bandwidth of an 8-bit one even on a ``fixed`` accelerator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, List, Tuple

import numpy as np

from coexplore.common import ConfigError, Registry
from . import technology as T

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class PrecisionScheme:
    """One precision scheme: its throughput, MAC energy and MAC area as functions of the bits.

    ``throughput(wb, ab, word)`` is MACs per PE per cycle (1 for a fixed MAC); ``mac_energy(wb,
    ab, word, tech)`` pJ per MAC; ``mac_area(word, tech)`` mm^2 per PE; ``max_bits(word)`` the
    widest (weight, activation) bits the scheme runs (all from 1 up to it); ``word_bits`` the
    accelerator word widths it can be built with; ``rounding`` what the bits are rounded to,
    for messages and ``explain``; ``sum_together`` that the unit adds the products it computes in
    one cycle before accumulating (Camus et al.'s "sum-together" class; BitFusion), so that the
    partial-sum accesses per MAC fall with its throughput.
    """

    name: str  # registry key, lower case, e.g. "bit-fused"
    long_name: str  # e.g. "BitFusion bit-level fusion (Sharma et al., ISCA 2018)"
    throughput: Callable[..., np.ndarray]  # (wb, ab, word) -> MACs per PE per cycle
    mac_energy: Callable[..., np.ndarray]  # (wb, ab, word, tech) -> pJ per MAC
    mac_area: Callable[..., np.ndarray]  # (word, tech) -> mm^2 per PE's MAC unit
    max_bits: Callable[[int], Tuple[int, int]]  # word -> widest (weight, activation) bits
    word_bits: Tuple[int, ...]  # accelerator word widths this scheme supports
    rounding: str = ""  # how bits are rounded, e.g. "up to 2, 4, 8 or 16"
    sum_together: bool = False  # True: the fused products are added in the unit, one partial-sum update per cycle

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"precision scheme: name must be lower-case letters, digits, '-' or '_' starting "
                              f"with a letter, got {self.name!r}")
        for f in ("throughput", "mac_energy", "mac_area", "max_bits"):
            if not callable(getattr(self, f)):
                raise ConfigError(f"precision scheme {self.name!r}: {f} must be a function")

    def allowed_text(self, operand: str, word: int) -> str:
        """The allowed bits of ``operand`` (``weight_bits`` or ``act_bits``) for error messages."""
        mw, ma = self.max_bits(int(word))
        hi = mw if operand == "weight_bits" else ma
        extra = f", rounded {self.rounding}" if self.rounding else ""
        return f"1..{hi} bits (precision {self.name} at word_bits={int(word)}{extra})"


#: Every registered precision scheme by name.
PRECISIONS: Registry = Registry("precision scheme", ordered=True)  # fixed first


def register_precision(scheme: PrecisionScheme) -> PrecisionScheme:
    """Register ``scheme`` under its name (overwriting warns) and return it."""
    if not isinstance(scheme, PrecisionScheme):
        raise ConfigError(f"register_precision: expected a PrecisionScheme, got {type(scheme).__name__}")
    PRECISIONS.register(scheme.name, scheme)
    return scheme


def get_precision(name: str) -> PrecisionScheme:
    """The registered precision scheme called ``name``; unknown names list the registered ones."""
    return PRECISIONS.get(name)


def list_precisions() -> List[str]:
    """Names of the registered precision schemes, in registration order."""
    return PRECISIONS.names()


# ---------------------------------------------------------------------------------------
# the built-in schemes
# ---------------------------------------------------------------------------------------

def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def fused_bits(b) -> np.ndarray:
    """BitFusion's operand width: bits rounded up to 2, 4, 8 or 16 (2-bit floor)."""
    b = _f(b)
    return np.where(b <= 2, 2.0, np.where(b <= 4, 4.0, np.where(b <= 8, 8.0, 16.0)))


def _fused_lane(b) -> np.ndarray:
    """MACs per cycle one operand of width ``b`` contributes: floor(8 / b) for b <= 8, 1/2 at 16 bits."""
    r = fused_bits(b)
    return np.where(r <= T.FUSED_NATIVE_BITS, np.floor(T.FUSED_NATIVE_BITS / r), T.FUSED_NATIVE_BITS / r)


def _fused_throughput(wb, ab, word):
    return _fused_lane(wb) * _fused_lane(ab)


def _fused_energy(wb, ab, word, tech):
    # all 16 bricks switch every cycle whatever the fusion: energy per cycle is constant
    return tech.e_mac(T.FUSED_NATIVE_BITS) * T.FUSED_ENERGY_FACTOR / _fused_throughput(wb, ab, word)


FIXED = register_precision(PrecisionScheme(
    "fixed", "fixed bit-parallel word_bits MAC",
    throughput=lambda wb, ab, word: np.ones(np.broadcast_shapes(np.shape(wb), np.shape(ab), np.shape(word))),
    mac_energy=lambda wb, ab, word, tech: tech.e_mac(word) * np.ones(np.broadcast_shapes(np.shape(wb), np.shape(ab))),
    mac_area=lambda word, tech: tech.a_mac(word),
    max_bits=lambda word: (int(word), int(word)), word_bits=(4, 8, 16, 32)))

BIT_SERIAL = register_precision(PrecisionScheme(
    "bit-serial", "Stripes bit-serial activations (Judd et al., MICRO 2016)",
    throughput=lambda wb, ab, word: _f(word) / _f(ab) * np.ones(np.shape(wb)),
    mac_energy=lambda wb, ab, word, tech: (tech.e_mac(word) * T.SERIAL_ENERGY_FACTOR * _f(ab) / _f(word)
                                           * np.ones(np.shape(wb))),
    mac_area=lambda word, tech: tech.a_mac(word) * T.SERIAL_AREA_FACTOR,
    max_bits=lambda word: (int(word), int(word)), word_bits=(4, 8, 16, 32)))

LOOM = register_precision(PrecisionScheme(
    "loom", "Loom bit-serial weights and activations (Sharify et al., DAC 2018)",
    throughput=lambda wb, ab, word: _f(word) ** 2 / (_f(wb) * _f(ab)),
    mac_energy=lambda wb, ab, word, tech: tech.e_mac(word) * T.LOOM_ENERGY_FACTOR * _f(wb) * _f(ab) / _f(word) ** 2,
    mac_area=lambda word, tech: tech.a_mac(word) * T.LOOM_AREA_FACTOR,
    max_bits=lambda word: (int(word), int(word)), word_bits=(4, 8, 16, 32)))

BIT_FUSED = register_precision(PrecisionScheme(
    "bit-fused", "BitFusion bit-level fusion of 2-bit bricks (Sharma et al., ISCA 2018)",
    throughput=_fused_throughput, mac_energy=_fused_energy,
    mac_area=lambda word, tech: tech.a_mac(T.FUSED_NATIVE_BITS) * T.FUSED_AREA_FACTOR * np.ones(np.shape(word)),
    max_bits=lambda word: (16, 16), word_bits=(4, 8, 16), rounding="up to 2, 4, 8 or 16", sum_together=True))

#: The schemes the built-in hardware spaces search, spelled out so that a user-registered scheme
#: does not change a built-in space's size, encoding or fingerprint.
BUILTIN_PRECISIONS = ("fixed", "bit-serial", "loom", "bit-fused")
