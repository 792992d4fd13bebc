"""``python -m realtime.evaluate``: how well a model localizes, on box-labelled images.

    python -m realtime.evaluate --model M.onnx --source DIR --labels COCO.json [--json PATH]
                                [--store-threshold]

The labels are a COCO JSON file (what CVAT and Label Studio export): ``images`` with
``file_name`` (relative to DIR), ``annotations`` with ``bbox`` [x, y, w, h] in pixels,
``categories`` whose names must be labels of the model. An image without annotations is
a background frame (scored for classification when the model has a background class).
Every ``file_name`` must resolve inside DIR (symlinks followed); boxes must be finite with a
positive size (one partly outside its image is clipped, with a warning; one wholly outside is
an error); unknown image and category ids are errors that name the annotation.

Every image is prepared and run exactly as the runtime does (``Localizer``), and boxes
come from the runtime's own rule (``boxes_from_cam``) at each threshold of a sweep.
Reported (see ``realtime.model.accuracy``):

* ``top1_cls``: the top class is the image's class;
* ``top1_loc``: top class right and a box of it with IoU >= 0.5, at ``best_threshold``;
* ``gt_known_loc``: the true class's CAM gives a box with IoU >= 0.5, at ``best_threshold``;
* ``maxboxacc_v2``: Choe et al. (CVPR 2020), the true class's CAM, IoU 0.3 / 0.5 / 0.7;
* ``best_threshold``: the threshold with the best box accuracy at IoU 0.5.

``--store-threshold`` writes ``best_threshold`` (only when some box was matched: a sweep that
matched nothing has no best threshold) into the model's metadata
(``camloc.threshold``, see :mod:`realtime.model.format`), which the runtime then uses when no
``--threshold`` is given; writing needs the ``onnx`` package (reading it does not).
Everything else runs on the runtime-only install (no torch, no onnx).

Exit status as for ``python -m realtime``: 2 for a user error (bad labels file, missing
image, unknown model), 1 for a failed write or a bug (:mod:`realtime.errors`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime.commands.parser import Parser
from realtime.errors import CamlocError, UsageError, first_line, report_error
from realtime.model.accuracy import best_iou, box_accuracy, max_box_acc_v2
from realtime.model.format import KEY_THRESHOLD, with_threshold

__all__ = ["EvalError", "Sample", "THRESHOLDS", "clip_box", "evaluate", "load_coco", "main",
           "refuse_unmeasured", "store_threshold"]

log = logging.getLogger(__name__)

THRESHOLDS = np.round(np.arange(0.0, 1.0, 0.01), 2)  # the sweep, as in Choe et al.
KEYS = ("top1_cls", "top1_loc", "gt_known_loc", "maxboxacc_v2", "best_threshold")


class EvalError(CamlocError, ValueError):
    """Bad evaluation input (labels file, image folder): a user error, exit status 2."""


@dataclass
class Sample:
    """One image and, if it shows objects, one of its classes with that class's boxes."""

    path: Path
    class_id: int | None             # None: a frame with no annotations
    boxes: list[list[float]]         # [x1, y1, x2, y2], x2/y2 exclusive


def load_coco(path: str | Path, source: str | Path, labels: list[str] | None) -> list[Sample]:
    """Read a COCO file into samples (one per image and class); categories match ``labels``
    by name (``labels=None``: class-agnostic, every box counts as class -1)."""
    path, source = Path(path), Path(source)
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvalError(f"cannot read labels file {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalError(f"labels file {path} is not JSON: {first_line(exc)}") from exc
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise EvalError(f"labels file {path} is not COCO JSON (needs lists 'images', "
                        "'annotations', 'categories')")
    if not source.is_dir():
        raise EvalError(f"source {source} is not a folder")
    try:
        names = {c["id"]: str(c["name"]) for c in coco["categories"]}
        unknown = sorted({n for n in names.values() if labels is not None and n not in labels})
        if unknown:
            more = f" (+{len(labels) - 30} more)" if len(labels) > 30 else ""
            raise EvalError(f"{path}: categor{'y' if len(unknown) == 1 else 'ies'} "
                            f"{', '.join(map(repr, unknown))} not among the model's labels: "
                            f"{', '.join(labels[:30])}{more}")
        image_ids = {img["id"] for img in coco["images"]}
        boxes: dict[int, dict[int, list]] = {}
        for a in coco["annotations"]:
            box = _checked_box(path, a)
            if a["image_id"] not in image_ids:
                raise EvalError(f"{path}: annotation {a.get('id')}: image_id {a['image_id']!r} "
                                "is not among the images")
            if a["category_id"] not in names:
                raise EvalError(f"{path}: annotation {a.get('id')}: category_id "
                                f"{a['category_id']!r} is not among the categories")
            cls = -1 if labels is None else labels.index(names[a["category_id"]])
            boxes.setdefault(a["image_id"], {}).setdefault(cls, []).append(box)
        samples = []
        for img in coco["images"]:
            file = _image_file(path, source, img["file_name"])
            per_class = boxes.get(img["id"], {})
            samples.extend(Sample(file, c, b) for c, b in sorted(per_class.items()))
            if not per_class:
                samples.append(Sample(file, None, []))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, EvalError):
            raise
        raise EvalError(f"labels file {path} is not valid COCO: {type(exc).__name__} "
                        f"{first_line(exc)}") from exc
    if not any(s.class_id is not None for s in samples):
        raise EvalError(f"{path}: no image has a box annotation")
    return samples


def _checked_box(path: Path, a: dict) -> list[float]:
    """An annotation's ``bbox`` [x, y, w, h] as [x1, y1, x2, y2]: four finite numbers and a
    positive width and height, else an EvalError naming the annotation."""
    bbox = a["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        raise EvalError(f"{path}: annotation {a.get('id')} has a bbox that is not four "
                        f"numbers [x, y, w, h]: {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise EvalError(f"{path}: annotation {a.get('id')} has a bbox that is not finite: "
                        f"{bbox}")
    if w <= 0 or h <= 0:
        raise EvalError(f"{path}: annotation {a.get('id')} has an empty bbox {bbox}")
    return [x, y, x + w, y + h]


def _image_file(path: Path, source: Path, name: Any) -> Path:
    """The image ``name`` of the labels file, which must resolve inside ``source`` (after
    every symlink): ``source/name``, else ``source/`` its base name (tools that store
    their own folders); a name that leads outside is an EvalError, never read."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise EvalError(f"{path}: image file_name {name!r} is not a file name")
    root = source.resolve()
    for candidate in (source / name, source / Path(name).name):
        real = candidate.resolve()
        if real != root and root not in real.parents:
            if candidate.exists() or candidate.is_symlink():
                raise EvalError(f"{path}: image {name} resolves to {real}, outside --source "
                                f"{source}; refusing to read it")
            continue
        if real.is_file():
            return real
    raise EvalError(f"{path}: image {name} is not in {source}")


def clip_box(box: list[float], width: int, height: int) -> list[float] | None:
    """``box`` clipped to a ``width`` x ``height`` image; None when nothing of it is inside."""
    x1, y1 = max(0.0, box[0]), max(0.0, box[1])
    x2, y2 = min(float(width), box[2]), min(float(height), box[3])
    return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else None


def _fit_boxes(s: Sample, hw: tuple[int, int], clipped: list[str]) -> list[list[float]]:
    """The sample's boxes inside its image: clipped (noted in ``clipped``); a box with no
    part inside the image is an EvalError (it could never be matched)."""
    h, w = hw
    out = []
    for box in s.boxes:
        fit = clip_box(box, w, h)
        if fit is None:
            raise EvalError(f"{s.path.name}: box {[round(v, 1) for v in box]} (x1, y1, x2, y2) "
                            f"lies outside the image ({w}x{h}): check the labels' units")
        if fit != box:
            clipped.append(f"{s.path.name} {[round(v, 1) for v in box]}")
        out.append(fit)
    return out


def _iou_curve(loc, cam: np.ndarray, truth: list, frame_hw: tuple[int, int],
               blur: float = 0.0) -> np.ndarray:
    """Best IoU with ``truth`` of the runtime's boxes at every threshold of the sweep
    (``blur``: the tiled map's, realtime.model.tiling.map_blur)."""
    from realtime.model.boxes import boxes_from_cam, scale_boxes

    out = np.zeros(len(THRESHOLDS))
    for i, t in enumerate(THRESHOLDS):
        cells, _ = boxes_from_cam(cam, float(t), loc.box_rule, loc.min_area, loc.max_boxes,
                                  blur=blur)
        out[i] = best_iou(scale_boxes(cells, cam.shape, *frame_hw), truth)
    return out


def evaluate(loc, samples: list[Sample]) -> dict[str, float | None]:
    """Score a ``Localizer`` on ``samples``; the five figures under ``KEYS``.

    Class-agnostic samples (class -1, a model that does not know the classes, such as the
    ImageNet model before training) score the top class's CAM; top1_cls and top1_loc are
    then None."""
    import cv2

    from realtime.model.cam import normalize_cams
    from realtime.model.tiling import map_blur

    background = loc.info.background
    agnostic = any(s.class_id == -1 for s in samples)
    cls_right, gt_curves, pred_curves, pred_right = [], [], [], []
    cache: dict[Path, tuple] = {}
    clipped: list[str] = []
    for s in samples:
        if s.path not in cache:
            frame = cv2.imread(str(s.path), cv2.IMREAD_COLOR)
            if frame is None:
                raise EvalError(f"cannot read image {s.path}")
            x, geo = loc.prepare(frame)
            logits, feats = loc.infer(x)
            rows = slice(None) if len(x) > 1 else 0  # a tiled frame is all the batch's rows
            scores, cams_of = loc.class_maps(logits[rows], feats[rows], geo)
            cache = {s.path: (int(np.argmax(scores)), (geo.frame_h, geo.frame_w), cams_of,
                              map_blur(geo, loc.tile_blur))}
        pred, hw, cams_of, blur = cache[s.path]
        truth_cls = s.class_id if s.class_id is not None else background
        if truth_cls is not None and not agnostic:
            cls_right.append(pred == truth_cls)
        if s.class_id is None:
            continue
        known = pred if agnostic else s.class_id
        truth = _fit_boxes(s, hw, clipped)
        ids = np.array([known, pred])
        cams = normalize_cams(cams_of(ids), loc.normalize)
        gt_curve = _iou_curve(loc, cams[0], truth, hw, blur)
        gt_curves.append(gt_curve)
        pred_right.append(pred == known)
        pred_curves.append(gt_curve if pred == known else _iou_curve(loc, cams[1], truth, hw, blur))
    if clipped:
        log.warning("warning: %d box(es) reach outside their image and were clipped to it: %s%s",
                    len(clipped), "; ".join(clipped[:5]), " ..." if len(clipped) > 5 else "")
    gt, top = np.array(gt_curves), np.array(pred_curves)
    maxbox, per = max_box_acc_v2(gt, THRESHOLDS)
    best = per[0.5][1]
    i = int(np.flatnonzero(THRESHOLDS == best)[0])
    top1_loc = float(np.mean(np.array(pred_right) & (top[:, i] >= 0.5)))
    for d, (acc, t) in per.items():
        log.info("BoxAcc at IoU %.1f: %.3f (threshold %.2f)", d, acc, t)
    if agnostic:  # nothing says what the right class is
        return {"top1_cls": None, "top1_loc": None, "gt_known_loc": float(box_accuracy(gt, 0.5)[i]),
                "maxboxacc_v2": maxbox, "best_threshold": float(best)}
    return {"top1_cls": float(np.mean(cls_right)), "top1_loc": top1_loc,
            "gt_known_loc": float(box_accuracy(gt, 0.5)[i]), "maxboxacc_v2": maxbox,
            "best_threshold": float(best)}


def _onnx():
    """The onnx package, which only writing a model needs (a runtime-only install lacks it)."""
    try:
        import onnx
    except ImportError as exc:
        raise EvalError("--store-threshold needs the onnx package to write the model: "
                        "pip install onnx (running the model does not)") from exc
    return onnx


def store_threshold(model: str | Path, threshold: float, tile_blur: float | None = None) -> None:
    """Store ``threshold`` as the model's box threshold (:data:`realtime.model.format.KEY_THRESHOLD`)
    in the model file, atomically (the runtime only reads metadata; writing needs ``onnx``);
    and ``tile_blur``, unless None, as its tiled-map blur (``KEY_TILE_BLUR``)."""
    onnx = _onnx()
    model = Path(model)
    proto = onnx.load(str(model))
    meta = with_threshold({p.key: p.value for p in proto.metadata_props}, round(threshold, 2),
                          tile_blur)
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    fd, tmp = tempfile.mkstemp(dir=model.parent, prefix=f".{model.stem}-", suffix=".onnx.tmp")
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.chmod(tmp, model.stat().st_mode & 0o777)
        os.replace(tmp, model)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refuse_unmeasured(figures: dict[str, float | None]) -> None:
    """EvalError unless ``best_threshold`` was measured on matched boxes: with no box
    matched at IoU 0.5 at any threshold (accuracy 0) the sweep's best is its first value,
    0.00, which would make every box the whole frame."""
    if not figures.get("gt_known_loc"):
        raise EvalError("--store-threshold: not stored (the model is unchanged): no labelled "
                        "box was matched (IoU >= 0.5) at any threshold, so best_threshold "
                        f"{figures.get('best_threshold', 0.0):.2f} measures nothing; check the "
                        "boxes' units and the images they belong to")


def _refuse_overwrites(args: argparse.Namespace, samples: list[Sample]) -> None:
    """--json and --store-threshold's model must not be an image or the labels file (and
    --json not the model): one line, exit 2, before anything is written."""
    from realtime.outputs.guard import input_files, refuse_overwrites

    inputs = sorted({s.path for s in samples}) + [args.labels]
    model = input_files([], str(args.model))
    refuse_overwrites(inputs + model, {"--json": args.json})
    refuse_overwrites(inputs, {"--store-threshold": model if args.store_threshold else None})


def build_parser() -> argparse.ArgumentParser:
    p = Parser("python -m realtime.evaluate", "Localization metrics of a camloc model on "
               "box-labelled images (COCO JSON): " + ", ".join(KEYS) + ".")
    p.add_model(default=None)
    p.add_argument("--source", required=True, type=Path, help="folder holding the images")
    p.add_argument("--labels", required=True, type=Path, help="COCO JSON file with the boxes")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    p.add_argument("--store-threshold", action="store_true",
                   help="store best_threshold in the model: the runtime's default from then on")
    p.add_argument("--class-agnostic", action="store_true",
                   help="ignore the category names and score the CAM of the top class (a model "
                        "that does not know the classes yet: gt_known_loc and maxboxacc_v2 only)")
    p.add_device()
    p.add_imgsz()
    p.add_tiles()
    p.add_tile_blur()
    p.add_logging(quiet=True)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation CLI; return the exit status: 0 done, 2 a user error, 1 a failed
    write or a bug (see :mod:`realtime.errors`)."""
    args = build_parser().parse(argv, "python -m realtime.evaluate")
    if isinstance(args, int):  # --help, or a usage error said in one line
        return args
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(message)s")
    from realtime.model.engine import Localizer

    try:
        if args.store_threshold and not str(args.model).lower().endswith(".onnx"):
            raise UsageError("--store-threshold needs --model as a .onnx path (not a zoo name)")
        if args.store_threshold:
            _onnx()  # before the evaluation, not after it
        loc = Localizer(args.model, device=args.device, imgsz=args.imgsz, tiles=args.tiles,
                        tile_blur=args.tile_blur)
        samples = load_coco(args.labels, args.source,
                            None if args.class_agnostic else list(loc.info.labels))
        _refuse_overwrites(args, samples)
        figures = evaluate(loc, samples)
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        if args.store_threshold:
            refuse_unmeasured(figures)
            store_threshold(args.model, figures["best_threshold"])
    except KeyboardInterrupt:
        print("evaluate: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user error 2, failed write or bug 1; one line
        return report_error("evaluate", exc, args.verbose)
    if args.quiet:
        return 0
    images = len({s.path for s in samples})
    print(f"{images} images, {sum(s.class_id is not None for s in samples)} with boxes")
    for key in KEYS:
        value = figures[key]
        print(f"{key:<15} " + ("n/a (class-agnostic)" if value is None else
                               f"{value:.2f}" if key == "best_threshold" else f"{value:.3f}"))
    if args.store_threshold:
        print(f"stored {KEY_THRESHOLD} = {figures['best_threshold']:.2f} in {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
