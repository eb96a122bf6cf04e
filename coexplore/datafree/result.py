"""The typed, versioned ``result.json`` of a data-free quantisation run (torch-free).

Read and written only here, so table scripts can read run folders without importing torch.
A quantisation run folder holds ``config.yaml`` (the resolved :class:`~coexplore.datafree.run.QuantizeConfig`),
``metrics.csv`` (one row per logged iteration), ``checkpoints/last.pt`` (the resumable state,
``torch.load(weights_only=True)``), ``student.pt`` (the quantised student's state dict and bits),
``plots/samples.png`` (generated samples per class) and ``result.json``, written last.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..common import ConfigError, PathLike, check_keys, read_json, write_json

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoints/last.pt"
STUDENT_FILE = "student.pt"
SAMPLES_FILE = "plots/samples.png"
RESULT_KIND = "coexplore-datafree-result"
#: Version of this result schema.
RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class QuantResult:
    """What a finished data-free quantisation run reports (accuracies are fractions in [0, 1])."""

    method: str  # a registered data-free method
    ait: bool  # AIT's KL-only loss and gradient inundation on the student
    wbits: int  # weight bits of the body (first/last layers may differ: see layer_bits)
    abits: int  # activation bits
    seed: int  # the run's seed
    teacher: str  # path of the teacher file
    teacher_arch: str  # its architecture
    dataset: str  # what the teacher was trained on / what the student is scored on
    data_free: bool  # False only for the real-data upper bound (real-qat)
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)  # teacher_accuracy, accuracy, ...
    accuracy_source: str = ""  # "real-test": the held-out test split, scored once at the end; "" if not scored
    test_samples: int = 0  # images behind the accuracies
    selection: str = "last"  # how the final student was chosen: last (fixed schedule) | synthetic-val@<iteration>
    iterations: int = 0  # student iterations
    generator_warmup: int = 0  # generator-only iterations before the student's
    batch_size: int = 0  # images per iteration
    layer_bits: Dict[str, List[int]] = field(default_factory=dict)  # {layer: [wbits, abits]}
    seconds: Optional[float] = None  # wall time of the run (all sessions of a resumed run)
    message: str = ""  # notes (e.g. why no accuracy was measured)
    kind: str = RESULT_KIND
    schema_version: int = RESULT_SCHEMA_VERSION

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str, v: Any) -> None:
            if not ok:
                raise ConfigError(f"field {name} must be {what}, got {v!r}")

        for f in ("method", "teacher", "teacher_arch", "dataset", "accuracy_source", "selection", "message"):
            need(isinstance(getattr(self, f), str), f, "a string", getattr(self, f))
        for f in ("ait", "data_free"):
            need(isinstance(getattr(self, f), bool), f, "true or false", getattr(self, f))
        for f in ("wbits", "abits", "seed", "test_samples", "iterations", "generator_warmup", "batch_size",
                  "schema_version"):
            v = getattr(self, f)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f, "an integer >= 0", v)
        need(self.kind == RESULT_KIND, "kind", repr(RESULT_KIND), self.kind)
        need(isinstance(self.metrics, Mapping), "metrics", "an object", self.metrics)
        for k, v in self.metrics.items():
            ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
            need(ok, f"metrics.{k}", "a finite number or null", v)
        need(self.seconds is None or isinstance(self.seconds, (int, float)), "seconds", "a number or null",
             self.seconds)

    @property
    def bits(self) -> str:
        return f"w{self.wbits}a{self.abits}"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: Mapping[str, Any], where: str = "result") -> "QuantResult":
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("kind") != RESULT_KIND:
            raise ConfigError(f"{where}: not a data-free quantisation result (kind {data.get('kind')!r})")
        if data.get("schema_version") != RESULT_SCHEMA_VERSION:
            raise ConfigError(f"{where}: schema_version {data.get('schema_version')!r} is not supported "
                              f"(this coexplore reads {RESULT_SCHEMA_VERSION})")
        check_keys(data, (f.name for f in fields(QuantResult)), where)
        try:
            return QuantResult(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def write_quant_result(run_dir: PathLike, result: QuantResult) -> Path:
    path = Path(run_dir) / RESULT_FILE
    write_json(path, result.to_dict())
    return path


def read_quant_result(run_dir: PathLike) -> QuantResult:
    """The :class:`QuantResult` of a run folder (or of its ``result.json``)."""
    p = Path(run_dir)
    path = p if p.name == RESULT_FILE and not p.is_dir() else p / RESULT_FILE
    if not path.is_file():
        raise ConfigError(f"{p}: no {RESULT_FILE} (is it a finished quantisation run folder?)")
    return QuantResult.from_dict(read_json(path), where=str(path))
