"""INT8 and FP16 variants of a camloc .onnx, self-verifying against the FP32 model.

INT8 (CPU, edge boards): ONNX Runtime static quantisation: the pre-processing
pass (``quant_pre_process``: shape inference and graph optimisation), QDQ
format, per-channel symmetric INT8 weights, UINT8 activations whose ranges are
calibrated on real frames prepared exactly as the runtime prepares them.
Weights are 7-bit by default (``target="portable"``: ONNX Runtime's
``reduce_range``): the U8S8 kernels of x86 CPUs without VNNI (AVX2 only, or
AVX-512 without VNNI) add pairs of uint8 x int8 products into int16 and
saturate with full 8-bit weights, which cost 6 points of top-1 agreement on
such a CPU; ``target="vnni"`` keeps 8-bit weights for CPUs whose kernels do
not saturate (AVX-512 VNNI / AVX-VNNI x86, ARM). docs/EDGE.md has the figures.
The classifier head (global pooling, Flatten, Gemm) stays float so the CAM
identity ``GAP(features) . W^T + b == logits`` still holds exactly in the INT8
model; its weight stays the FP32 weight, stored once and read straight by the
Gemm and the ``cam_weight`` output (export/int8head.py: nothing runs on it per
frame, which an INT8 weight with a DequantizeLinear did). Layers that quantise badly can be kept float as well
(``float_first`` / ``float_last`` convolutions; see docs/EDGE.md for the
measurements behind the defaults).

FP16 (GPUs): float16 weights and activations with float32 inputs and outputs
(``onnxruntime.transformers.float16`` with ``keep_io_types``); the classifier
head again stays float32.

Either way the file keeps the FP32 model's ``camloc.*`` metadata with
``camloc.precision`` set, is written to a temporary file, verified (CAM
identity, classifier, top-1 agreement with FP32 on held-out frames) and only
then moved into place: a failed step leaves nothing at the output path. The
verification (export/verify.py) judges the quantization, not FP32's doubt: top-1
agreement on the held-out frames FP32 is sure of, CAM correlation and box IoU on all.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np

from realtime.errors import first_line
from realtime.model.format import INPUT, with_precision

from .atomic import atomic_output, check_writable
from .calib import MIN_CALIB_FRAMES, CalibError, CalibFrame, prepare_frames, read_frames
from .compare import compare, open_session, run_all, speed_ratio
from .fp16 import make_fp16
from .graph import (
    QuantizeError,
    float_node_names,
    load_proto,
    name_nodes,
    read_metadata,
    write_metadata,
)
from .incam import INCAM_TOLERANCE, incam_error
from .int8head import float_classifier_weight
from .verify import (
    DEFAULT_MIN_AGREEMENT,
    INT8_TARGETS,
    QuantizeReport,
    check,
)

__all__ = ["DEFAULT_FLOAT_FIRST", "DEFAULT_FLOAT_LAST", "INT8_TARGETS", "MIN_CALIB_FRAMES",
           "QuantizeError", "QuantizeReport", "compare", "quantize_onnx", "quantize_zoo_model"]

log = logging.getLogger(__name__)

DEFAULT_FLOAT_FIRST = 9      # convolutions kept float from the input side: stem + 3 blocks
DEFAULT_FLOAT_LAST = 0       # ... and before ``features``
HELDOUT_EVERY = 4            # every 4th calibration frame is held out for verification

# ----------------------------------------------------------------------------- the variants

class _Reader:
    """CalibrationDataReader over prepared tensors (batch 1, varying H, W)."""

    def __init__(self, tensors: list[np.ndarray]):
        self._it = iter(tensors)

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {INPUT: x}


def _make_int8(fp32: Path, out: Path, calib: list[np.ndarray], float_first: int,
               float_last: int, method: str, extra: dict | None = None,
               select=None, reduce_range: bool = True) -> list[str]:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    meta = read_metadata(load_proto(fp32))
    pre = out.with_name(out.name + ".pre.onnx")
    quiet = contextlib.redirect_stdout(io.StringIO())  # the tools print progress and
    logging.disable(logging.INFO)                      # log each bias-scale adjustment
    try:
        quiet.__enter__()
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
        proto = load_proto(pre)
        if name_nodes(proto.graph):  # layers are kept float by name: every node needs one
            onnx.save(proto, str(pre))
        exclude, desc = float_node_names(proto.graph, float_first, float_last)
        if select is not None:  # tuning hook: graph -> more node names to keep float
            exclude += select(load_proto(pre).graph)
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        quantize_static(str(pre), str(out), _Reader(calib), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        nodes_to_exclude=exclude,
                        calibrate_method=methods[method],
                        extra_options={"WeightSymmetric": True, **(extra or {})})
    finally:
        quiet.__exit__(None, None, None)
        logging.disable(logging.NOTSET)
        pre.unlink(missing_ok=True)
        for extra in out.parent.glob("augmented_model*.onnx"):
            extra.unlink(missing_ok=True)
    proto = onnx.load(str(out))
    float_classifier_weight(proto)
    write_metadata(proto, with_precision(meta, "int8"))
    onnx.save(proto, str(out))
    return desc


# ----------------------------------------------------------------------------- entry points

def _info(fp32: Path):
    from realtime.errors import ModelError
    from realtime.model.format import KEY_ARCH, check_outputs, parse_metadata

    try:
        session = open_session(fp32)
    except Exception as exc:  # onnxruntime raises its own types for corrupt files
        first = first_line(exc)
        raise QuantizeError(f"cannot load model {fp32}: {first}") from exc
    meta = session.get_modelmeta().custom_metadata_map
    try:
        check_outputs([o.name for o in session.get_outputs()],
                      [i.name for i in session.get_inputs()], fp32, meta.get(KEY_ARCH, "<model>"))
        info = parse_metadata(meta, fp32)
    except ModelError as exc:
        raise QuantizeError(str(exc)) from exc
    if info.precision != "fp32":
        raise QuantizeError(f"{fp32} is already {info.precision}; quantize from the FP32 export")
    return session, info


def split_frames(frames: list, every: int = HELDOUT_EVERY) -> tuple[list, list]:
    """(calibration, held-out): every ``every``-th frame (starting with the 2nd) is held out."""
    held = [f for i, f in enumerate(frames) if i % every == 1]
    cal = [f for i, f in enumerate(frames) if i % every != 1]
    return cal, held


def quantize_onnx(fp32: str | Path, output: str | Path, precision: str = "int8",
                  calib: str | Path | list[CalibFrame] | None = None, calib_frames: int = 64,
                  heldout: list[CalibFrame] | None = None, float_first: int = DEFAULT_FLOAT_FIRST,
                  float_last: int = DEFAULT_FLOAT_LAST, method: str = "minmax",
                  min_agreement: float = DEFAULT_MIN_AGREEMENT, bench_runs: int = 20,
                  target: str = "portable", source: str | Path | None = None,
                  qat_note: str = "") -> QuantizeReport:
    """Write the INT8 or FP16 variant of the camloc FP32 model ``fp32`` to ``output``.

    ``calib``: a folder of images, a video, or frames already read (INT8 needs it;
    FP16 uses it only to verify). ``heldout``: frames to verify on; by default every
    4th calibration frame is held out of calibration for that. ``target``: INT8 for
    every CPU ("portable", 7-bit weights) or for CPUs with VNNI and ARM ("vnni",
    8-bit weights; saturates on AVX2-only x86). ``source``: the float model to quantize
    when it is not ``fp32`` itself (``--qat``'s fine-tuned one); the result is always
    verified against ``fp32``. Raises QuantizeError
    (or CalibError) and leaves nothing at ``output`` when a step or check fails.
    """
    fp32, output = Path(fp32), Path(output)
    if precision not in ("int8", "fp16"):
        raise ValueError(f"precision must be int8 or fp16, got {precision!r}")
    if method not in ("minmax", "entropy", "percentile"):
        raise ValueError(f"method must be minmax, entropy or percentile, got {method!r}")
    if target not in INT8_TARGETS:
        raise ValueError(f"target must be {' or '.join(INT8_TARGETS)}, got {target!r}")
    frames = (read_frames(calib, calib_frames) if isinstance(calib, (str, Path))
              else list(calib or []))
    if precision == "int8" and len(frames) < MIN_CALIB_FRAMES:
        raise CalibError(f"INT8 calibration needs at least {MIN_CALIB_FRAMES} frames "
                         f"(--calib), got {len(frames)}")
    session32, info = _info(fp32)
    if heldout is None:
        cal, held = split_frames(frames) if frames else ([], [])
    else:
        cal, held = frames, list(heldout)
    if not held:
        import cv2

        from .photos import real_photos

        held = [CalibFrame(k, cv2.cvtColor(v, cv2.COLOR_RGB2BGR)) for k, v in real_photos().items()]
    prep = dict(stride=info.stride, mean=info.mean, std=info.std, rgb=info.color == "RGB",
                input_size=info.input_size)
    cal_x, held_x = prepare_frames(cal, **prep), prepare_frames(held, **prep)

    with atomic_output(output) as tmp:
        try:
            if precision == "int8":
                desc = _make_int8(Path(source or fp32), tmp, cal_x, float_first, float_last,
                                  method,
                                  reduce_range=INT8_TARGETS[target])
            else:
                desc = make_fp16(fp32, tmp)
        except (CalibError, QuantizeError):
            raise
        except Exception as exc:  # the quantisation tools raise anything from deep inside
            raise QuantizeError(f"{precision} conversion failed: {type(exc).__name__}: "
                                f"{first_line(exc)}") from exc
        report = QuantizeReport(output, precision, info.arch,
                                target if precision == "int8" else "",
                                len(cal_x) if precision == "int8" else 0, len(held_x), desc,
                                min_agreement=min_agreement, qat=qat_note)
        report.take(compare(session32, tmp, held_x, info.stride,
                            reference=run_all(session32, held_x)))
        if precision == "int8" and cal_x:
            report.agreement_calib = compare(session32, tmp, cal_x, info.stride).agreement
        log.debug("\n".join(report.verification()))
        check(report)
        if info.topk_max:  # in-graph CAMs against numpy on the variant's own features
            incam = max(incam_error(open_session(tmp), x) for x in held_x[:4])
            if not incam < INCAM_TOLERANCE:
                raise QuantizeError(f"verification failed: in-graph CAMs differ from numpy "
                                    f"by {incam:.2e} >= {INCAM_TOLERANCE:g}")
        if bench_runs:
            bench = held_x[0] if held_x else cal_x[0]
            a, b, r = speed_ratio(fp32, tmp, bench, bench_runs)
            report.ms, report.speed, report.bench_shape = (a, b), r, tuple(bench.shape)
    report.size_bytes = output.stat().st_size
    report.fp32_bytes = fp32.stat().st_size
    return report


def quantize_zoo_model(model: str, output: str | Path, precision: str = "int8",
                       calib: str | Path | None = None, qat=None, **options) -> QuantizeReport:
    """Export zoo model ``model`` (FP32, verified against PyTorch) to a temporary file,
    then write its ``precision`` variant to ``output`` (see ``quantize_onnx``).

    A ``.onnx`` path as ``model`` is quantised directly (no torch needed). ``qat`` (an
    export.qat.QatConfig): INT8 of an EfficientNet-Lite only; fine-tune a copy on the
    calibration frames first (quantization-aware, distilled from FP32; export/qat.py)."""
    skipped = ""  # the default's QAT not done: why, for the report
    if qat is not None and (precision != "int8" or str(model).lower().endswith(".onnx")):
        if not qat.optional:
            raise QuantizeError("--qat is for --int8 of a zoo model or --checkpoint (it "
                                "fine-tunes the PyTorch model), not of a .onnx file")
        skipped = ("not done: it needs the PyTorch model (a zoo name or --checkpoint), not "
                   "a .onnx file")
        qat = None
    frames = None
    if precision == "int8":
        if calib is None:
            raise CalibError("--int8 needs --calib SOURCE: a folder of images or a video "
                             f"with at least {MIN_CALIB_FRAMES} frames like those it will see")
        frames = read_frames(calib, options.pop("calib_frames", 64))  # fail before exporting
    elif calib is not None:
        frames = read_frames(calib, options.pop("calib_frames", 64))
    options.pop("calib_frames", None)
    output = Path(output)
    if str(model).lower().endswith(".onnx"):
        if not Path(model).is_file():
            raise QuantizeError(f"model file not found: {model}")
        return quantize_onnx(model, output, precision, frames, qat_note=skipped, **options)
    from .onnx_export import ExportError, export_model

    check_writable(output)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".camloc-fp32-") as tmpdir:
        fp32 = Path(tmpdir) / f"{model}.fp32.onnx"
        zoo = {k: options.pop(k) for k in ("weights", "checkpoint", "labels", "opset")
               if k in options}
        try:
            export_model(model, fp32, **zoo)
        except ExportError as exc:
            raise QuantizeError(f"the FP32 export of {model} failed, so there is nothing to "
                                f"convert to {precision}: {exc}") from exc
        source, note = None, ""
        if qat is not None:
            source = Path(tmpdir) / f"{model}.qat.onnx"
            tuned, note = _fine_tune(model, frames, {**options, **zoo}, qat, source)
            source = source if tuned else None
        return quantize_onnx(fp32, output, precision, frames, source=source, qat_note=note,
                             **options)


def _fine_tune(model: str, frames: list[CalibFrame], options: dict, cfg, out: Path
               ) -> tuple[bool, str]:
    """--qat: fine-tune ``model`` on the calibration part of ``frames`` and write it
    (float) to ``out``: (written, a line for the report). Not written ("not done: ...")
    when the default (``cfg.optional``) meets a model or --float-first QAT cannot handle."""
    from models.zoo import load_model

    from .onnx_export import write_onnx
    from .qat import fine_tune

    cfg.target = options.get("target", "portable")
    cfg.float_first = options.get("float_first", DEFAULT_FLOAT_FIRST)
    cal = frames if options.get("heldout") is not None else split_frames(frames)[0]
    zm = load_model(model, **{k: options[k] for k in ("weights", "checkpoint", "labels")
                              if k in options})
    try:
        zm.module, seconds = fine_tune(zm, [f.image for f in cal], cfg, log.info)
    except ValueError as exc:
        if cfg.optional:
            return False, f"not done: {exc}"
        raise QuantizeError(str(exc)) from exc
    zm.weights += f"; QAT fine-tuned for INT8 {cfg.target}"
    write_onnx(zm, out, opset=options.get("opset", 17))
    return True, (f"{cfg.steps} steps on {cfg.views} views of the {len(cal)} calibration "
                  f"frames, {seconds:.0f} s")
