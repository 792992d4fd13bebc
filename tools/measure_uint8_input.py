"""Should the graph take uint8 frames and normalise them itself? Measure on this machine.

Builds a variant of a camloc .onnx whose input is the resized BGR uint8 frame
[N, H, W, 3] (Transpose, Cast, channel swap, scale and shift in the graph) and times,
on the same frames, interleaved, one thread each:

  float: realtime.model.preprocess.normalize_to_tensor + session.run (the runtime today)
  uint8: session.run of the variant on the uint8 frame

both asking for the in-graph CAM outputs. Prints median ms per frame.
Usage: python tools/measure_uint8_input.py [MODEL.onnx] [--frames 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime.model.format import INCAM_OUTPUTS, INPUT, parse_metadata  # noqa: E402
from realtime.model.preprocess import normalize_to_tensor, resize_frame, working_size  # noqa: E402


def uint8_variant(src: Path, dst: Path, mean, std, rgb: bool) -> None:
    """``src`` with input ``frames`` uint8 [N, H, W, 3] (BGR) normalised in the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(src))
    g = proto.graph
    g.input.remove(next(i for i in g.input if i.name == INPUT))
    g.input.insert(0, helper.make_tensor_value_info("frames", TensorProto.UINT8,
                                                    ["N", "H", "W", 3]))
    scale = (1.0 / np.float32(std)).reshape(1, 3, 1, 1).astype(np.float32)
    shift = (np.float32(mean) / np.float32(std)).reshape(1, 3, 1, 1).astype(np.float32)
    g.initializer.extend([numpy_helper.from_array(scale, "u8_scale"),
                          numpy_helper.from_array(shift, "u8_shift"),
                          numpy_helper.from_array(np.array([2, 1, 0], np.int64), "u8_swap")])
    nodes = [helper.make_node("Transpose", ["frames"], ["u8_nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Cast", ["u8_nchw"], ["u8_float"], to=TensorProto.FLOAT)]
    last = "u8_float"
    if rgb:
        nodes.append(helper.make_node("Gather", [last, "u8_swap"], ["u8_rgb"], axis=1))
        last = "u8_rgb"
    nodes += [helper.make_node("Mul", [last, "u8_scale"], ["u8_scaled"]),
              helper.make_node("Sub", ["u8_scaled", "u8_shift"], [INPUT])]
    for n in reversed(nodes):
        g.node.insert(0, n)
    onnx.save(proto, str(dst))


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--frames", type=int, default=60)
    args = p.parse_args(argv)
    from realtime.model.zoo import resolve_model

    path = resolve_model(args.model or "efficientnet_lite0")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s32 = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    info = parse_metadata(s32.get_modelmeta().custom_metadata_map, path)
    cap = cv2.VideoCapture(str(ROOT / "assets" / "demo.mp4"))
    frames = []
    while len(frames) < args.frames:
        ok, f = cap.read()
        if not ok:
            break
        size = working_size(f.shape[0], f.shape[1], 448, info.stride)
        frames.append(resize_frame(f, size))
    rgb = info.color == "RGB"
    with tempfile.TemporaryDirectory() as tmp:
        u8 = Path(tmp) / "u8.onnx"
        uint8_variant(path, u8, info.mean, info.std, rgb)
        s8 = ort.InferenceSession(str(u8), opts, providers=["CPUExecutionProvider"])
    names = list(INCAM_OUTPUTS)
    a = s32.run(names, {INPUT: normalize_to_tensor(frames[0], info.mean, info.std, rgb)})
    b = s8.run(names, {"frames": frames[0][None]})
    diff = max(float(np.max(np.abs(x.astype(np.float64) - y))) for x, y in zip(a, b))
    t_prep, t_f32, t_u8 = [], [], []
    for f in frames:
        t0 = time.perf_counter()
        x = normalize_to_tensor(f, info.mean, info.std, rgb)
        t1 = time.perf_counter()
        s32.run(names, {INPUT: x})
        t2 = time.perf_counter()
        s8.run(names, {"frames": f[None]})
        t3 = time.perf_counter()
        t_prep.append((t1 - t0) * 1e3)
        t_f32.append((t2 - t0) * 1e3)
        t_u8.append((t3 - t2) * 1e3)
    m = statistics.median
    print(f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, 1 thread; "
          f"outputs differ by at most {diff:.1e}")
    print(f"float input: normalise {m(t_prep):.2f} ms + run = {m(t_f32):.2f} ms per frame")
    print(f"uint8 input: run (normalises in the graph) = {m(t_u8):.2f} ms per frame "
          f"({m(t_f32) / m(t_u8):.3f}x the float path's rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
