"""The ``quantize`` and ``teacher`` commands (wired into ``coexplore`` by :func:`add_parsers`).

``coexplore quantize --teacher T.pt --method qimera --bits w4a4 [--ait] --out DIR`` quantises a
teacher without its data; ``--run RUN_DIR`` quantises the derived network of a co-exploration
run folder instead (its ``config.yaml`` and ``result.json`` give the space and the
architecture; the network is trained from scratch as the teacher unless the folder holds a
``teacher.pt``).  ``coexplore teacher train --arch resnet20 --data cifar10 --data-path P --out T.pt``
trains a teacher.  Errors are :class:`~coexplore.common.ConfigError` (one line, exit 2 in
``coexplore``'s ``main``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..common import ConfigError


def add_parsers(subparsers: "argparse._SubParsersAction", command=None, global_options=None) -> None:
    """Add ``quantize`` and ``teacher`` to ``coexplore``'s sub-command parsers.

    Args:
        subparsers: ``coexplore``'s sub-command action.
        command: ``command(name, **kw)`` making a sub-command parser that takes the global
            options (default: ``subparsers.add_parser``).
        global_options: ``global_options(parser)`` adds them to a nested parser.
    """
    command = command or subparsers.add_parser
    global_options = global_options or (lambda parser: None)
    from . import load_methods
    from .base import list_methods
    load_methods()
    from .run import NAMED_BITS, QuantizeConfig
    from .teacher import TEACHER_ARCHS

    d = QuantizeConfig(teacher="-")
    q = command(
        "quantize", help="quantise a teacher (or a run's network) to low bit width without its training data",
        description="Data-free quantisation: a generator learns synthetic inputs from the full-precision teacher "
                    "and the quantised student is distilled on them (GDFQ, ZeroQ, Qimera, ClusterQ, LRQ; --ait adds "
                    "AIT). The run folder holds config.yaml, metrics.csv, checkpoints, student.pt, result.json and "
                    "plots/samples.png; rerunning the same command resumes it.")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--teacher", help="teacher file (.pt) from `coexplore teacher train`")
    src.add_argument("--run", metavar="RUN_DIR", help="a finished co-exploration run folder: quantise its network")
    q.add_argument("--method", default=d.method, help=f"one of {', '.join(list_methods())} (default: {d.method})")
    q.add_argument("--bits", default="w4a4", help=f"w<bits>a<bits>, bits 2..8 or 16/32 (float); e.g. "
                                                 f"{', '.join(NAMED_BITS)} (default: w4a4)")
    q.add_argument("--ait", action="store_true", help="AIT on the student: KL-only loss and gradient inundation")
    q.add_argument("--out", "-o", required=True, help="run folder")
    q.add_argument("--iterations", type=int, default=d.iterations)
    q.add_argument("--generator-warmup", type=int, default=d.generator_warmup)
    q.add_argument("--batch-size", type=int, default=d.batch_size)
    q.add_argument("--student-lr", type=float, default=d.student_lr)
    q.add_argument("--generator-channels", type=int, default=128, help="generator width (GDFQ: 128)")
    q.add_argument("--act-mode", default=d.act_mode, help="minmax (default), lsq or pact")
    q.add_argument("--select", default=d.select, help="last (fixed schedule, default) or synthetic-val")
    q.add_argument("--seed", type=int, default=d.seed)
    q.add_argument("--eval-data", default=None, help="dataset of the final test score (default: the teacher's)")
    q.add_argument("--eval-path", default=None, help="its path (cifar10: archive or folder)")
    q.add_argument("--eval-limit", type=int, default=None, help="cap on test images")
    q.add_argument("--teacher-epochs", type=int, default=10, help="with --run: epochs of the teacher's training")
    q.add_argument("--teacher-lr", type=float, default=0.05, help="with --run: its learning rate")
    q.add_argument("--device", default="cpu", help="with --run: where the teacher trains (the quantisation "
                                                  "loop runs on the CPU)")
    q.set_defaults(func=cmd_quantize)

    t = command("teacher", help="train a full-precision teacher for data-free quantisation")
    ts = t.add_subparsers(dest="teacher_command", metavar="ACTION", parser_class=type(t))
    tr = ts.add_parser("train", help="train a teacher and write its weights-only file",
                       description="Train a teacher (fixed schedule: the final epoch is the teacher) and write a "
                                   "weights-only file recording its architecture, classes and input shape.")
    global_options(tr)
    tr.add_argument("--arch", default="bn-cnn", help=f"one of {', '.join(TEACHER_ARCHS.names())} except space "
                                                      f"(default: bn-cnn)")
    tr.add_argument("--data", default="mnist-embedded", help="mnist-embedded (default), cifar10, image-folder")
    tr.add_argument("--data-path", default=None, help="source of cifar10 / image-folder")
    tr.add_argument("--epochs", type=int, default=8)
    tr.add_argument("--lr", type=float, default=0.1)
    tr.add_argument("--weight-decay", type=float, default=5e-4)
    tr.add_argument("--batch-size", type=int, default=128)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", "-o", required=True, help="teacher file (.pt)")
    tr.add_argument("--device", default="cpu")
    tr.set_defaults(func=cmd_teacher_train)
    t.set_defaults(func=lambda a: (t.print_help(), 2)[1])


def _device(name: str) -> str:
    from search_spaces.train import resolve_device
    return str(resolve_device(name))


def cmd_teacher_train(args: argparse.Namespace) -> int:
    from search_spaces import get_data

    from .teacher import TEACHER_ARCHS, spec_for_data, train_teacher

    if args.arch not in TEACHER_ARCHS or args.arch.lower() == "space":
        allowed = [n for n in TEACHER_ARCHS.names() if n != "space"]
        raise ConfigError(f"--arch must be one of {allowed} (a run's network: coexplore quantize --run), "
                          f"got {args.arch!r}")
    out = Path(args.out)
    if out.suffix != ".pt":
        raise ConfigError(f"--out {out}: the teacher file must end in .pt")
    data = get_data(args.data, path=args.data_path, seed=args.seed, batch_size=args.batch_size, eval_batch_size=500)
    spec = spec_for_data(args.arch.lower(), data)
    t = train_teacher(spec, data, out, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                      seed=args.seed, device=_device(args.device), progress=not getattr(args, "quiet", False))
    m = {k: v for k, v in t.metrics.items() if k != "history"}
    if args.format == "json":
        print(json.dumps({"teacher": str(out), "spec": spec.to_dict(), "metrics": m}, indent=2))
    else:
        print(f"{out}: {spec.arch} on {data.name}, test accuracy {100 * m['test_accuracy']:.2f}% after "
              f"{args.epochs} epochs ({m['seconds']:.0f} s)")
    return 0


def _run_teacher(args: argparse.Namespace, out: Path) -> Path:
    """The teacher of a co-exploration run folder: its ``teacher.pt``, else trained into ``out``."""
    from coexplore.config import load_config
    from coexplore.runfolder import CONFIG_FILE, read_result
    from search_spaces import get_data

    from .teacher import spec_for_data, train_teacher

    run = Path(args.run)
    if (run / "teacher.pt").is_file():
        return run / "teacher.pt"
    result = read_result(run)
    if result.status == "diverged" or not result.architecture:
        raise ConfigError(f"--run {run}: the run has no derived network (status {result.status!r})")
    cfg = load_config(run / CONFIG_FILE)
    space = cfg.resolve_search_space()
    d = cfg.data
    data = get_data(d.name, path=d.path, val_fraction=d.val_fraction, seed=cfg.seed, batch_size=d.batch_size,
                    augment=d.augment, limit=d.limit)
    spec = spec_for_data("space", data, space=space.to_dict(), architecture=dict(result.architecture))
    path = out / "teacher.pt"
    if not path.is_file():
        train_teacher(spec, data, path, epochs=args.teacher_epochs, lr=args.teacher_lr, seed=cfg.seed,
                      device=_device(args.device), progress=not getattr(args, "quiet", False))
    return path


def cmd_quantize(args: argparse.Namespace) -> int:
    from .base import METHODS
    from .run import QuantizeConfig, parse_bits, quantize

    wbits, abits = parse_bits(args.bits)
    if args.method.lower() not in METHODS:
        raise ConfigError(f"--method must be one of {METHODS.names()}, got {args.method!r}")
    out = Path(args.out)
    teacher = args.teacher if args.teacher else str(_run_teacher(args, out))
    eval_data = args.eval_data
    if args.run and eval_data is None:
        from coexplore.config import load_config
        from coexplore.runfolder import CONFIG_FILE
        c = load_config(Path(args.run) / CONFIG_FILE)
        eval_data, eval_path = c.data.name, (args.eval_path or c.data.path)
    else:
        eval_path = args.eval_path
    cfg = QuantizeConfig(teacher=teacher, method=args.method.lower(), wbits=wbits, abits=abits, ait=args.ait,
                         act_mode=args.act_mode, iterations=args.iterations, generator_warmup=args.generator_warmup,
                         batch_size=args.batch_size, student_lr=args.student_lr, select=args.select, seed=args.seed,
                         eval_data=eval_data, eval_path=eval_path, eval_limit=args.eval_limit,
                         progress=not getattr(args, "quiet", False), method_cfg={"generator_channels": args.generator_channels})
    r = quantize(cfg, out)
    if args.format == "json":
        print(json.dumps(r.to_dict(), indent=2))
    else:
        acc = r.metrics.get("accuracy")
        t_acc = r.metrics.get("teacher_accuracy")
        scored = (f"test accuracy {100 * acc:.2f}% (teacher {100 * t_acc:.2f}%, {r.test_samples} images)"
                  if acc is not None else r.message)
        print(f"{out}: {r.method}{' +AIT' if r.ait else ''} {r.bits}: {scored}; selection {r.selection}; "
              f"{r.seconds:.0f} s")
    return 0
