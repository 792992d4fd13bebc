"""``python -m export``: write a zoo model (or one's own checkpoint) as a verified .onnx."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("export")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m export", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                description="Export a GAP-CNN classifier to one self-verifying .onnx file "
                            "(outputs: logits, features, cam_weight, cam_bias).")
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
    p.add_argument("--list", action="store_true", help="list the zoo names and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return p


def _read_labels(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read labels file {path}: {exc.strerror}") from exc
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ValueError(f"labels file {path} is empty")
    return labels


def main(argv: list[str] | None = None) -> int:
    """Run the export CLI; return the exit status (2 for user errors)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from models.zoo import ZooError, list_models

    from .gap import NotGapError
    from .onnx_export import ExportError, export_model

    if args.list:
        print("\n".join(list_models()))
        return 0
    weights = None if str(args.weights).lower() == "none" else args.weights
    try:
        labels = _read_labels(args.labels) if args.labels else None
        report = export_model(args.model, args.output, weights=weights,
                              checkpoint=args.checkpoint, labels=labels, opset=args.opset)
    except (ZooError, NotGapError, ExportError, ValueError, OSError) as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("export: interrupted; nothing was written", file=sys.stderr)
        return 130
    if not args.quiet:
        print(report.summary())
    return 0
