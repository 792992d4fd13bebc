"""Localizer: one ONNX Runtime session, CAMs and boxes for each frame; and Result, the
data of one frame's localization (drawing it: realtime.model.draw; its JSONL record:
realtime.outputs.sinks.record).

The work is split so a pipeline can time each stage and run it in its own
thread: ``prepare`` (frame -> tensor, on the CPU), ``forward`` (the session; any
batch size), ``finish`` (one image's outputs -> Result). ``Localizer(frame)``
chains the three for one frame. A model with in-graph CAMs (export/incam.py)
hands back only top-k scores, class ids and normalised CAMs; an older model
hands back logits and features and the CAMs are computed here in numpy
(``infer`` + ``postprocess``, which stay available for every model).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from realtime.errors import DeviceError, ModelError, OptionError, first_line
from realtime.model import binding, tiling
from realtime.model import providers as prov
from realtime.model.boxes import BOX_RULES, boxes_from_cam, scale_boxes
from realtime.model.cam import CamSmoother, compute_cams, normalize_cams, softmax, top_k
from realtime.model.format import (
    FRAME_OUTPUTS,
    INCAM_OUTPUTS,
    INPUT,
    KEY_ARCH,
    MAX_INPUT_SIDE,
    WEIGHT_OUTPUTS,
    ModelInfo,
    check_outputs,
    parse_metadata,
)
from realtime.model.paths import tensorrt_cache
from realtime.model.preprocess import Geometry, prepare_frame
from realtime.model.zoo import DEFAULT_MODEL, resolve_model

__all__ = ["DEFAULT_IMGSZ_SCALE", "DEFAULT_MIN_AREA", "DEFAULT_THRESHOLD", "Localizer",
           "Result", "default_imgsz"]

log = logging.getLogger(__name__)

# Defaults chosen on the labelled set of tools/eval_localization.py (docs/LOCALIZATION.md).
DEFAULT_IMGSZ_SCALE = 256 / 224  # shorter side = this x the native size (256 for Lite0)
DEFAULT_THRESHOLD = 0.3          # of each CAM's maximum
DEFAULT_MIN_AREA = 0.01    # fraction of the frame
DEFAULT_RULE = "mass"


def default_imgsz(info: ModelInfo, frame_h: int, frame_w: int) -> int:
    """Default longer side, such that the shorter side is ``DEFAULT_IMGSZ_SCALE`` times
    the model's native size (256 px for EfficientNet-Lite0: 448x256 for a 16:9 frame).

    Tied to the native size so that objects appear near the scale the network was
    trained on; the factor was the best of 160..320 px in docs/LOCALIZATION.md."""
    short = DEFAULT_IMGSZ_SCALE * min(info.input_size)
    return max(info.stride, round(short * max(frame_h, frame_w) / min(frame_h, frame_w)))


@dataclass
class Result:
    """One frame's localization: top-k classes (best first), their CAMs and boxes."""

    class_ids: np.ndarray          # int64 [k]
    scores: np.ndarray             # float32 [k], softmax probabilities
    labels: list[str]
    cams: np.ndarray               # float32 [k, h, w] in [0, 1], CAM resolution
    boxes: list[list[list[int]]]   # per class, its boxes [x1, y1, x2, y2] best first
    frame_shape: tuple[int, int]   # (H, W) of the source frame
    provider: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def detections(self) -> list[dict[str, Any]]:
        """The ``detections`` of this frame's JSONL record (README): one dict per box, best
        class first, boxes in frame pixels."""
        return [{"class_id": int(cid), "label": label, "score": round(float(score), 4),
                 "box": [int(v) for v in box]}
                for cid, label, score, boxes in zip(self.class_ids, self.labels, self.scores,
                                                    self.boxes)
                for box in boxes]

    def draw(self, frame: np.ndarray, heatmap: bool = True, boxes: bool = True,
             index: int | None = None, alpha: float = 0.4, hud: str | None = None) -> np.ndarray:
        """Draw on ``frame`` in place and return it: the heatmap of class ``index`` (default
        the best), boxes of every class (or only of ``index``), optional HUD text. A
        convenience for :func:`realtime.model.draw.draw_result`, which does the drawing."""
        from realtime.model.draw import RenderOptions, draw_result

        return draw_result(frame, self, RenderOptions(heatmap, boxes, index, alpha), hud)


def _plan(device: str) -> list[prov.Provider]:
    gpu = prov.gpu_present()
    return prov.plan_providers(device, ort.get_available_providers(), gpu,
                               prov.tensorrt_present() if gpu else False)


def _session_options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Idle intra-op threads would spin, stealing the cores that the reader, renderer
    # and encoder threads need (file/bare 0.56 -> 0.69 here, docs/PERFORMANCE.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise OptionError(f"threads must be a positive integer or None, got {threads!r}")
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


def _graph_session(path: str, device: str, threads: int | None) -> ort.InferenceSession:
    """A second session of the model with CUDA graphs on, used only by GraphRunner (its
    buffers are fixed per shape); raises when the provider refuses graphs."""
    plan = binding.with_cuda_graph(_plan(device))
    if plan is None:
        raise DeviceError(f"device {device!r} has no CUDA provider for graphs")
    session = ort.InferenceSession(path, sess_options=_session_options(threads), providers=plan)
    if session.get_providers()[0] != prov.PROVIDER_OF["cuda"]:
        raise DeviceError(f"CUDA graphs session runs on {session.get_providers()[0]}")
    return session


def _open_session(path: str, device: str, threads: int | None
                  ) -> tuple[ort.InferenceSession, list[str]]:
    """An InferenceSession on the best providers for ``device``; (session, granted).
    TensorRT that fails to start falls back to CUDA, GPUs that fail to the CPU (auto)."""
    plan = _plan(device)
    opts = _session_options(threads)
    if any(not isinstance(p, str) for p in plan):
        prov.preload_cuda()
    try:
        try:
            session = ort.InferenceSession(path, sess_options=opts, providers=plan)
        except Exception as trt_exc:
            lighter = prov.without_tensorrt(plan)
            if lighter is None:
                raise
            session = ort.InferenceSession(path, sess_options=opts, providers=lighter)
            log.warning("TensorRT could not start (%s); running on CUDA", first_line(trt_exc))
            plan = lighter
    except Exception as exc:
        first = first_line(exc)
        if plan == ["CPUExecutionProvider"]:
            raise ModelError(f"cannot load model {path}: {first}") from exc
        try:  # loadable on the CPU? then it is the device that failed, not the file
            session = ort.InferenceSession(path, sess_options=opts,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc2:
            raise ModelError(f"cannot load model {path}: {first}") from exc2
        if prov.parse_device(device)[0] != "auto":
            raise DeviceError(f"device {device!r} could not start: {first}") from exc
        log.warning("GPU providers failed (%s); running on the CPU", first)
        plan = ["CPUExecutionProvider"]
    granted = session.get_providers()
    prov.check_granted(device, plan, granted)
    if granted[0] == prov.PROVIDER_OF["tensorrt"]:
        log.warning("TensorRT builds an engine for each new input size on first use: "
                    "minutes the first time, cached under %s after", tensorrt_cache())
    return session, granted


class Localizer:
    """Classify a frame with a GAP-CNN (.onnx) and localize its top-k classes with CAMs.

    ``model``: zoo name or .onnx path. ``device``: auto, cpu, cuda[:N], tensorrt[:N],
    openvino, coreml, directml. ``imgsz``: the working size's longer side (None: a shorter
    side of 8/7 the model's native size, see ``default_imgsz``). ``threshold``: box threshold relative
    to each CAM's maximum (None: the model's stored threshold, else ``DEFAULT_THRESHOLD``).
    A model with a background class (``ModelInfo.background``) gives no classes, CAMs or
    boxes for a frame whose top class is background. ``smooth``: EMA weight of the previous
    frame's CAM (video). ``threads``: ONNX Runtime intra-op threads (None: its default).
    ``incam``: use the model's in-graph CAMs when it has them (else, or with
    ``normalize="minmax"`` or a ``topk`` above the graph's, numpy computes them).
    ``cuda_graphs``: replay CUDA graphs on CUDA (in-graph CAMs only). ``tiles``: N > 1 also
    runs an N x N grid of overlapping tiles in the frame's batch and merges their CAMs
    (``tile_merge``) and class scores (``tile_decision``), its boxes less ``tile_blur`` (None:
    the model's stored blur, else ``tiling.BLUR``).
    """

    def __init__(self, model: str | os.PathLike[str] = DEFAULT_MODEL, device: str = "auto",
                 imgsz: int | None = None, topk: int = 1, threshold: float | None = None,
                 smooth: float = 0.0, threads: int | None = None, *,
                 box_rule: str = DEFAULT_RULE, min_area: float = DEFAULT_MIN_AREA,
                 max_boxes: int = 3, normalize: str = "max", incam: bool = True,
                 cuda_graphs: bool = True, tiles: int = 1, tile_merge: str = tiling.DEFAULT_MERGE,
                 tile_decision: str = tiling.DEFAULT_DECISION, tile_blur: float | None = None):
        prov.parse_device(device)  # unknown names fail before any loading
        if threshold is not None and not 0.0 <= float(threshold) < 1.0:
            raise OptionError(f"threshold must be in [0, 1), got {threshold!r}")
        if box_rule not in BOX_RULES:
            raise OptionError(f"box_rule must be one of {', '.join(BOX_RULES)}, got {box_rule!r}")
        if normalize not in ("max", "minmax"):
            raise OptionError(f"normalize must be 'max' or 'minmax', got {normalize!r}")
        if imgsz is not None and (not isinstance(imgsz, int) or isinstance(imgsz, bool)
                                  or not 1 <= imgsz <= MAX_INPUT_SIDE):
            raise OptionError(f"imgsz must be an integer in [1, {MAX_INPUT_SIDE}] or None, "
                              f"got {imgsz!r}")
        tiling.check_tile_options(tiles, tile_merge, tile_decision,
                                  tiling.BLUR if tile_blur is None else tile_blur)
        self.tiles, self.tile_merge, self.tile_decision = tiles, tile_merge, tile_decision
        self.smoother = CamSmoother(smooth)
        self.imgsz, self.box_rule, self.min_area = imgsz, box_rule, float(min_area)
        self.max_boxes, self.normalize, self.device = int(max_boxes), normalize, device
        path = str(resolve_model(model))
        self.session, granted = _open_session(path, device, threads)
        self.provider, self.threads = granted[0], threads
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        check_outputs(outputs, inputs, path, meta.get(KEY_ARCH, "<model>"))
        self.info = parse_metadata(meta, path)
        # no --threshold: the one stored with the model (realtime.evaluate), else the default
        self.threshold = float(threshold if threshold is not None else
                               self.info.threshold if self.info.threshold is not None
                               else DEFAULT_THRESHOLD)
        self.tile_blur = float(tile_blur if tile_blur is not None else self.info.tile_blur
                               if self.info.tile_blur is not None else tiling.BLUR)
        self.weight, self.bias = self._fetch_weights()
        num = self.info.num_classes
        if not isinstance(topk, int) or not 1 <= topk <= num:
            raise OptionError(f"topk must be between 1 and the number of classes ({num}), "
                             f"got {topk!r}")
        self.topk = topk
        self.in_graph = (incam and normalize == "max" and topk <= self.info.topk_max and tiles == 1
                         and all(n in outputs for n in INCAM_OUTPUTS))
        self._cuda_graphs = cuda_graphs
        self._use(self.session, granted, threads)
        log.info("camloc: %s (%s, %d classes) running on %s (asked: %s; available: %s)",
                 os.path.basename(path), self.info.arch, num, ", ".join(granted), device,
                 ", ".join(ort.get_available_providers()))

    @classmethod
    def for_pipeline(cls, model: str | os.PathLike[str] = DEFAULT_MODEL, device: str = "auto",
                     threads: int | None = None, workers: int | None = None, **options: Any
                     ) -> tuple[Localizer, int]:
        """A Localizer and the number of inference workers for a pipeline, both decided on
        the provider the session really granted (``providers.parallelism``): opened with
        the threads the expected provider calls for, re-opened with the CPU's share when
        a GPU was expected but the session fell back to the CPU. Explicit ``threads`` and
        ``workers`` are kept. How ``forward`` calls the session (IO binding, CUDA graphs)
        follows the same granted provider (``_use``)."""
        guess_workers, guess_threads = prov.parallelism(prov.expected_provider(device), threads,
                                                        workers)
        loc = cls(model, device=device, threads=guess_threads, **options)
        workers, wanted = prov.parallelism(loc.provider, threads, workers)
        if wanted != guess_threads:
            log.info("session runs on %s, not the expected provider: %s intra-op threads",
                     loc.provider, wanted)
            loc._use(*_open_session(loc.info.path, device, wanted), wanted)
        return loc, workers

    def _use(self, session: ort.InferenceSession, granted: list[str], threads: int | None
             ) -> None:
        """Run on ``session`` from now on: its granted provider decides ``forward``'s runner."""
        self.session, self.provider, self.threads = session, granted[0], threads
        self._forward = self._runner(session, self.provider)

    def _runner(self, session: ort.InferenceSession, provider: str) -> binding.Runner:
        """How ``forward`` calls ``session`` (realtime/binding.py): plainly on the CPU, with
        IO binding on CUDA/TensorRT, plus CUDA graphs on CUDA where the provider takes them."""
        names = INCAM_OUTPUTS if self.in_graph else FRAME_OUTPUTS
        index = prov.parse_device(self.device)[1]
        if provider not in (prov.PROVIDER_OF["cuda"], prov.PROVIDER_OF["tensorrt"]):
            return binding.PlainRunner(session, names)
        bound = binding.BoundRunner(session, names, "cuda", index)
        if provider == prov.PROVIDER_OF["tensorrt"]:
            return binding.TensorrtWatch(bound, self._on_cuda)
        if not (self._cuda_graphs and self.in_graph):
            return bound
        try:
            graphs = _graph_session(self.info.path, f"cuda:{index}", self.threads)
        except Exception as exc:  # noqa: BLE001 - any refusal: plain IO binding
            log.warning("CUDA graphs refused (%s); running without them", first_line(exc))
            return bound
        return binding.GraphRunner(graphs, names, bound, "cuda", index)

    def _on_cuda(self) -> binding.Runner:
        """After a failed TensorRT engine build: the model on CUDA instead (a GPU provider
        like TensorRT, so the pipeline's workers and threads still hold)."""
        index = prov.parse_device(self.device)[1]
        self._use(*_open_session(self.info.path, f"cuda:{index}", self.threads), self.threads)
        return self._forward

    def _fetch_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's constant weight [K, C] and bias [K], read once."""
        s = self.info.stride
        tiny = np.zeros((1, 3, s, s), np.float32)
        weight, bias = self.session.run(list(WEIGHT_OUTPUTS), {INPUT: tiny})
        weight, bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
        k = self.info.num_classes
        if weight.ndim != 2 or weight.shape[0] != k or bias.shape != (k,):
            raise ModelError(f"{self.info.path}: cam_weight {weight.shape} / cam_bias "
                             f"{bias.shape} do not match the {k} labels in the metadata")
        return weight, bias

    def working_size_for(self, frame_h: int, frame_w: int) -> int:
        """The ``imgsz`` (longer side) used for frames of this size."""
        return self.imgsz or default_imgsz(self.info, frame_h, frame_w)

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """BGR frame -> (float32 [1, 3, H, W] input, geometry back to the frame); with tiles
        [1 + N*N, 3, H, W] (the frame, then its tiles) and a TileGeometry."""
        h, w = frame.shape[:2] if isinstance(frame, np.ndarray) and frame.ndim >= 2 else (1, 1)
        i = self.info
        if self.tiles > 1:
            return tiling.prepare_tiles(frame, self.working_size_for(h, w), i.stride, i.mean,
                                        i.std, i.color == "RGB", self.tiles)
        return prepare_frame(frame, self.working_size_for(h, w), i.stride, i.mean, i.std,
                             i.color == "RGB")

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on a batch [N, 3, H, W]: (logits [N, K], features [N, C, h, w])."""
        logits, feats = self.session.run(list(FRAME_OUTPUTS), {INPUT: x})
        return logits, feats

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Run the network on a batch [N, 3, H, W] for ``finish``: batch-first (top-k
        scores, class ids, CAMs) from a model with in-graph CAMs, else (logits, features)."""
        return tuple(self._forward(x))

    def finish(self, outputs: tuple[np.ndarray, ...], geo: Geometry) -> Result:
        """One image's ``forward`` outputs (batch index taken; with tiles its 1 + N*N rows)
        -> Result. Applies temporal smoothing when ``smooth > 0``: call it in frame order."""
        if not self.in_graph:
            return self.postprocess(outputs[0], outputs[1], geo)
        scores, ids, cams = outputs
        t0 = time.perf_counter()
        ids = np.asarray(ids[:self.topk], np.int64)
        keep = self._kept(ids)
        ids = ids[keep]
        cams = self.smoother(ids, np.asarray(cams[:self.topk], np.float32)[keep])
        return self._result(ids, np.asarray(scores[:self.topk], np.float32)[keep], cams, geo, t0)

    def _kept(self, ids: np.ndarray) -> np.ndarray:
        """Which of the top-k ``ids`` are reported: all, but for a model with a background
        class none when it is the top class, else all but it."""
        background = self.info.background
        if background is None or not len(ids):
            return np.ones(len(ids), bool)
        return np.zeros(len(ids), bool) if ids[0] == background else ids != background

    def postprocess(self, logits: np.ndarray, features: np.ndarray, geo: Geometry) -> Result:
        """One image's logits [K] and features [C, h, w] -> Result (top-k, CAMs, boxes).

        Applies temporal smoothing when ``smooth > 0``: call it in frame order.
        """
        logits = logits[0] if logits.ndim == 2 and logits.shape[0] == 1 else logits
        features = features[0] if features.ndim == 4 and features.shape[0] == 1 else features
        t0 = time.perf_counter()
        probs, cams_of = self.class_maps(logits, features, geo)
        ids = top_k(probs, self.topk)
        ids = ids[self._kept(ids)]  # a background frame has no detections
        cams = normalize_cams(cams_of(ids), self.normalize) if len(ids) else cams_of(ids)
        cams = self.smoother(ids, cams)
        return self._result(ids, probs[ids], cams, geo, t0)

    def class_maps(self, logits: np.ndarray, features: np.ndarray, geo: Geometry
                   ) -> tuple[np.ndarray, Any]:
        """One frame's class scores [K] and a function: class ids -> their raw CAMs; with
        tiles (a TileGeometry) the merged ones of realtime/model/tiling.py."""
        if isinstance(geo, tiling.TileGeometry):
            maps = tiling.TiledMaps(logits, features, geo, self.weight, self.tile_merge,
                                    self.tile_decision, self.info.background)
            return maps.scores(), maps.cams
        return softmax(logits), lambda ids: compute_cams(features, self.weight, ids)

    def _result(self, ids: np.ndarray, scores: np.ndarray, cams: np.ndarray, geo: Geometry,
                t0: float) -> Result:
        """Boxes of each CAM, and the Result (``t0``: when the CAM work started)."""
        t1 = time.perf_counter()
        boxes, blur = [], tiling.map_blur(geo, self.tile_blur)  # untiled: 0, boxes as they were
        for cam in cams:
            cells, _ = boxes_from_cam(cam, self.threshold, self.box_rule, self.min_area,
                                      self.max_boxes, blur=blur)
            boxes.append(scale_boxes(cells, cam.shape, geo.frame_h, geo.frame_w).tolist())
        t2 = time.perf_counter()
        return Result(class_ids=ids.astype(np.int64), scores=scores.astype(np.float32),
                      labels=[self.info.labels[i] for i in ids], cams=cams, boxes=boxes,
                      frame_shape=(geo.frame_h, geo.frame_w), provider=self.provider,
                      extra={"times_ms": {"cam": (t1 - t0) * 1e3, "boxes": (t2 - t1) * 1e3}})

    def reset(self) -> None:
        """Forget the smoothing history (between unrelated videos)."""
        self.smoother.reset()

    def localize(self, frame: np.ndarray) -> Result:
        """prepare + forward + finish for one BGR frame."""
        x, geo = self.prepare(frame)
        return self.finish(tuple(o[0] if len(x) == 1 else o for o in self.forward(x)), geo)

    __call__ = localize
