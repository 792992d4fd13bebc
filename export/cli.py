"""``python -m export``: write a zoo model (or one's own checkpoint) as a verified .onnx."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

from realtime.commands.parser import Parser
from realtime.errors import UsageError, report_error

from .trainfit import AVERAGES, BOX_LOSS

__all__ = ["main"]

log = logging.getLogger("export")


def build_parser() -> argparse.ArgumentParser:
    p = Parser("python -m export", "Export a GAP-CNN classifier to one self-verifying .onnx "
               "file (outputs: logits, features, cam_weight, cam_bias).",
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="efficientnet_lite0",
                   help="zoo name: efficientnet_lite0/1/2 or a torchvision classifier (see --list)")
    p.add_argument("--output", type=Path, default=None,
                   help="where to write the .onnx (default: the runtime's model cache)")
    p.add_argument("--weights", default="DEFAULT",
                   help="DEFAULT (pretrained; torchvision models download once), none (random) "
                        "or a torchvision weights name such as IMAGENET1K_V2")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a state dict of your own (e.g. fine-tuned; any number of classes)")
    p.add_argument("--labels", type=Path, default=None,
                   help="text file with one class name per line, for --checkpoint")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    t = p.add_argument_group("train on your own classes (docs/TRAINING.md)")
    t.add_argument("--train", type=Path, default=None, metavar="DIR",
                   help="fine-tune --model on DIR (one sub-folder of images per class, the folder "
                        "names become the labels; a 'background' folder for frames with none of "
                        "the objects), then export; the checkpoint is kept as OUTPUT.pt")
    t.add_argument("--epochs", type=int, default=20, help="at most this many epochs (early stopping)")
    t.add_argument("--seed", type=int, default=0, help="seed of the split, augmentation and init")
    t.add_argument("--tune-blocks", default="auto", metavar="N|auto",
                   help="also train this many of the last blocks (slower); auto (default): 0, "
                        "or 5 when the held-out estimates disagree and it scores higher at "
                        "camera scale (docs/TRAINING.md)")
    t.add_argument("--focus", type=int, default=2, metavar="N",
                   help="views per object image, for the deeper training, of the part the head "
                        "alone found, pasted into background photos (0: none; docs/TRAINING.md)")
    t.add_argument("--average", default="deeper", choices=AVERAGES,
                   help="end a training with the mean of its weights over its epochs (from the "
                        "second) instead of its best epoch's: deeper (default) where blocks below "
                        "the head are trained, all, none (docs/TRAINING.md)")
    t.add_argument("--box-loss", type=float, default=BOX_LOSS, metavar="W",
                   help="weight of the loss on the share of a class's CAM outside the pasted "
                        "object in views pasted into background photos (0: off; docs/TRAINING.md)")
    t.add_argument("--views", type=int, default=4,
                   help="views per training image: the whole image plus augmented ones")
    t.add_argument("--train-size", type=int, default=0, metavar="PX",
                   help="train at PX x PX (a multiple of 32) instead of the model's native size; "
                        "the export's native size follows (slower; docs/TRAINING.md)")
    t.add_argument("--attention", action="store_true",
                   help="weight the head's feature map cell by cell before the pooling "
                        "(CellAttention; the CAM identity still holds; docs/TRAINING.md)")
    q = p.add_argument_group("INT8 / FP16 variants (docs/EDGE.md)")
    prec = q.add_mutually_exclusive_group()
    prec.add_argument("--int8", action="store_true",
                      help="static INT8 (QDQ, per-channel weights) for CPUs and edge boards; "
                           "needs --calib")
    prec.add_argument("--fp16", action="store_true",
                      help="float16 weights/activations, float32 inputs/outputs (GPUs)")
    q.add_argument("--calib", default=None, metavar="SOURCE",
                   help="folder of images or a video like those the model will see: INT8 "
                        "ranges are calibrated on frames sampled evenly from it (1 in 4 held "
                        "out to verify)")
    q.add_argument("--calib-frames", type=int, default=64,
                   help="how many frames to sample from --calib (at least 16)")
    q.add_argument("--float-first", type=int, default=None,
                   help="convolutions kept float from the input side (default: the stem and "
                        "first three blocks, 9 convs; measured in docs/EDGE.md)")
    q.add_argument("--int8-target", choices=("portable", "vnni"), default="portable",
                   help="portable: 7-bit weights, the same agreement on every CPU; vnni: 8-bit "
                        "weights for x86 CPUs with VNNI and ARM boards (saturates on AVX2-only "
                        "x86; docs/EDGE.md)")
    q.add_argument("--qat", action=argparse.BooleanOptionalAction, default=None,
                   help="quantization-aware fine-tuning distilled from FP32 on the calibration "
                        "frames before INT8 (no labels; a few minutes on a laptop CPU; 6-10 "
                        "points closer to FP32, docs/EDGE.md). Default: on for an "
                        "EfficientNet-Lite from the zoo or --checkpoint, off for a .onnx "
                        "--model; --no-qat: plain INT8 in seconds")
    q.add_argument("--qat-steps", type=int, default=300, help="fine-tuning steps of --qat")
    q.add_argument("--float-last", type=int, default=0,
                   help="convolutions kept float before the features output")
    q.add_argument("--min-agreement", type=float, default=0.8,
                   help="fail when top-1 agreement with FP32 is lower on the held-out frames "
                        "FP32 is sure of (top-1 probability >= 0.5); CAM correlation and box "
                        "IoU are checked on all of them")
    p.add_argument("--list", action="store_true", help="list the zoo names and exit")
    p.add_logging(quiet=True)
    return p


def _read_labels(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read labels file {path}: {exc.strerror}") from exc
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise UsageError(f"labels file {path} is empty")
    return labels


def _variant(args: argparse.Namespace, weights: str | None, labels: list[str] | None):
    """--int8 / --fp16: export FP32 to a temporary file (or take a .onnx), convert, verify."""
    from .onnx_export import default_output
    from .quantize import DEFAULT_FLOAT_FIRST, quantize_zoo_model

    precision = "int8" if args.int8 else "fp16"
    if args.int8 and args.calib is None:
        raise UsageError("--int8 needs --calib SOURCE (a folder of images or a video, at least "
                         "16 frames, like those the model will see)")
    if args.calib_frames < 16:
        raise UsageError(f"--calib-frames must be at least 16, got {args.calib_frames}")
    if args.float_first is not None and args.float_first < 0 or args.float_last < 0:
        raise UsageError("--float-first and --float-last must be >= 0")
    output = args.output
    if output is None:
        if str(args.model).lower().endswith(".onnx"):
            raise UsageError("--output is needed when --model is a .onnx file")
        output = default_output(f"{args.model}.{precision}")
    options = dict(calib_frames=args.calib_frames, float_last=args.float_last,
                   min_agreement=args.min_agreement,
                   **({"target": args.int8_target} if args.int8 else {}),
                   float_first=DEFAULT_FLOAT_FIRST if args.float_first is None
                   else args.float_first)
    if not str(args.model).lower().endswith(".onnx"):
        options.update(weights=weights, checkpoint=args.checkpoint, labels=labels,
                       opset=args.opset)
    if args.int8 and args.qat is not False:  # --qat, or the default (where it can run)
        from .qat import QatConfig

        if args.qat_steps < 1:
            raise UsageError("--qat is for --int8, with --qat-steps of at least 1")
        options["qat"] = QatConfig(steps=args.qat_steps, optional=args.qat is None)
    return quantize_zoo_model(args.model, output, precision, args.calib, **options)


def _train(args: argparse.Namespace):
    """--train DIR: fine-tune, keep the checkpoint, export; the two reports as one."""
    from .train import TrainConfig, train_and_export

    if args.output is None:
        raise UsageError("--train needs --output M.onnx (the checkpoint goes beside it as M.pt)")
    if args.int8 or args.fp16 or args.checkpoint or args.labels or args.calib:
        raise UsageError("--train exports FP32 from the folder's labels; make --int8/--fp16 "
                         "variants afterwards with --model M.onnx")
    if str(args.weights).upper() != "DEFAULT":
        raise UsageError("--train starts from the pretrained weights (--weights DEFAULT)")
    if args.views < 1:
        raise UsageError(f"--views must be at least 1, got {args.views}")
    if args.focus < 0:
        raise UsageError(f"--focus must be at least 0, got {args.focus}")
    tune = str(args.tune_blocks).lower()
    if tune != "auto" and not tune.isdigit():
        raise UsageError(f"--tune-blocks must be auto or a number at least 0, got {tune}")
    config = TrainConfig(epochs=args.epochs, seed=args.seed,
                         tune_blocks=None if tune == "auto" else int(tune),
                         views=args.views, focus=args.focus, imgsz=args.train_size,
                         average=args.average, box_loss=args.box_loss,
                         attention=1.0 if args.attention else 0.0, progress=not args.quiet)
    train_report, export_report = train_and_export(args.model, args.train, args.output, config,
                                                   opset=args.opset)
    return SimpleNamespace(summary=lambda: train_report.summary() + "\n" + export_report.summary())


def _refuse_overwrites(args: argparse.Namespace) -> None:
    """--output (and --train's checkpoint beside it) must not be a file export reads:
    --model .onnx, --checkpoint, --labels, a --calib or --train file. One line, exit 2,
    before anything is written."""
    from realtime.outputs.guard import files_under, refuse_overwrites

    if args.output is None:
        return
    inputs = [Path(a).expanduser() for a in (args.model, args.checkpoint, args.labels)
              if a is not None and Path(a).expanduser().is_file()]
    for folder in (args.calib, args.train):
        if folder is not None:
            inputs += files_under(folder)
    planned = [args.output]
    if args.train is not None:
        planned.append(args.output.with_suffix(".pt"))
    refuse_overwrites(inputs, {"--output": planned})


def main(argv: list[str] | None = None) -> int:
    """Run the export CLI; return the exit status: 0 written and verified, 2 a user error,
    1 a failed stage or a bug (see :mod:`realtime.errors`)."""
    args = build_parser().parse(argv, "export")
    if isinstance(args, int):  # --help, or a usage error said in one line
        return args
    level = logging.DEBUG if args.verbose >= 2 else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s")
    from models.zoo import list_models

    from .onnx_export import export_model

    if args.list:
        print("\n".join(list_models()))
        return 0
    weights = None if str(args.weights).lower() == "none" else args.weights
    try:
        if args.qat and not args.int8:
            raise UsageError("--qat is for --int8")
        if args.int8_target != "portable" and not args.int8:
            raise UsageError("--int8-target is for --int8")
        labels = _read_labels(args.labels) if args.labels else None
        if args.checkpoint is not None and labels is None and args.train is None:
            from .train import checkpoint_labels  # a trainer's checkpoint names its classes

            labels = checkpoint_labels(args.checkpoint)
        _refuse_overwrites(args)
        if args.train is not None:
            report = _train(args)
        elif args.int8 or args.fp16:
            report = _variant(args, weights, labels)
        else:
            if args.calib is not None:
                raise UsageError("--calib is for --int8 (or to verify --fp16 on your frames)")
            report = export_model(args.model, args.output, weights=weights,
                                  checkpoint=args.checkpoint, labels=labels, opset=args.opset)
    except KeyboardInterrupt:
        print("export: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user error 2, failed stage or bug 1; one line
        return report_error("export", exc, args.verbose)
    if not args.quiet:
        print(report.summary())
    return 0
