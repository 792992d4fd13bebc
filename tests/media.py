"""Test media: real photos turned into real video files, frame numbers as barcodes,
and a tiny camloc-format .onnx built with onnx.helper (no torch, instant).

Every frame written by :func:`write_clip` carries its number as a 10-bit
barcode in the bottom strip, so a test can read back which frame a decoded
(or annotated and re-encoded) frame was, and prove order and completeness.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from realtime.model.format import FORMAT, ModelInfo, to_metadata

BITS = 10
STRIP = 24  # barcode height in pixels


def clip_frames(photos: dict[str, np.ndarray], n: int, size: tuple[int, int] = (320, 240)
                ) -> list[np.ndarray]:
    """``n`` BGR frames of ``size`` (w, h): the cat photo sliding over the espresso
    photo, frame number as a barcode in the bottom ``STRIP`` rows."""
    w, h = size
    bg = cv2.resize(np.ascontiguousarray(photos["espresso"][:, :, ::-1]), (w, h),
                    interpolation=cv2.INTER_AREA)
    ch = h // 2
    cat = cv2.resize(np.ascontiguousarray(photos["cat"][:, :, ::-1]),
                     (ch * 451 // 300, ch), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        f = bg.copy()
        x = (i * 7) % max(1, w - cat.shape[1])
        f[8:8 + ch, x:x + cat.shape[1]] = cat
        frames.append(stamp(f, i))
    return frames


def stamp(frame: np.ndarray, number: int) -> np.ndarray:
    """Write ``number`` as black/white blocks into the bottom strip, in place."""
    h, w = frame.shape[:2]
    bw = w // BITS
    for b in range(BITS):
        frame[h - STRIP:, b * bw:(b + 1) * bw] = 255 if (number >> b) & 1 else 0
    return frame


def read_stamp(frame: np.ndarray) -> int:
    """The number :func:`stamp` wrote (robust to compression and thin lines)."""
    h, w = frame.shape[:2]
    bw = w // BITS
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    value = 0
    for b in range(BITS):
        block = gray[h - STRIP + 4:h - 4, b * bw + 4:(b + 1) * bw - 4]
        if np.median(block) > 127:
            value |= 1 << b
    return value


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0,
                fourcc: str = "mp4v") -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), path
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def write_clip(path: Path, photos: dict[str, np.ndarray], n: int, fps: float = 25.0,
               size: tuple[int, int] = (320, 240), fourcc: str = "mp4v") -> Path:
    return write_video(path, clip_frames(photos, n, size), fps, fourcc)


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def corrupt_mjpeg_frame(path: Path, index: int) -> None:
    """Destroy the JPEG data of frame ``index`` of an MJPG .avi, in place."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    k = starts[index]
    data[k:k + 400] = bytes(400)
    path.write_bytes(bytes(data))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lines_in(path: Path) -> int:
    """Lines written to ``path`` so far, 0 while it does not exist: a run being watched may
    create and remove its outputs while checking them, before it starts writing."""
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def tiny_camloc_onnx(path: Path, classes: int = 5, seed: int = 0) -> Path:
    """A 3->8->16 conv + GAP + linear GAP-CNN in the camloc .onnx layout (format 1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    fc = rng.normal(0, 1.0, (classes, 16)).astype(np.float32)
    fb = rng.normal(0, 0.1, (classes,)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (w2, "w2"), (fc, "fc_w"), (fb, "fc_b"),
              (np.array([2, 3], np.int64), "axes"))]
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["features"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("ReduceMean", ["features", "axes"], ["pooled"], keepdims=0),
        helper.make_node("Gemm", ["pooled", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Identity", ["fc_w"], ["cam_weight"]),
        helper.make_node("Identity", ["fc_b"], ["cam_bias"]),
    ]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "tiny_gap_cnn",
        [helper.make_tensor_value_info("images", f32, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", f32, ["N", classes]),
         helper.make_tensor_value_info("features", f32, ["N", 16, "h", "w"]),
         helper.make_tensor_value_info("cam_weight", f32, [classes, 16]),
         helper.make_tensor_value_info("cam_bias", f32, [classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    info = ModelInfo(path="", arch="tiny", weights=f"random (seed {seed})",
                     labels=tuple(f"class{i}" for i in range(classes)), color="RGB",
                     mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), input_size=(64, 64),
                     stride=32, precision="fp32", format=FORMAT)
    onnx.helper.set_model_props(model, to_metadata(info))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class FakeCapture:
    """Stands in for cv2.VideoCapture. Each instance takes its script from ``plans``:
    None = fails to open; otherwise a queue of frames (an int n gives an image filled
    with n; None makes read() fail). ``calls`` counts read() calls entered, so a test
    can wait until the reader has published frame k (it then enters read() k+1 times)."""

    plans: list[queue.Queue | None] = []
    opened: list[tuple] = []
    calls = 0
    cond = threading.Condition()

    def __init__(self, *args):
        FakeCapture.opened.append(args)
        self.script = FakeCapture.plans.pop(0) if FakeCapture.plans else None

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return self.script is not None

    def set(self, prop, value):
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: 8.0,
                cv2.CAP_PROP_FRAME_HEIGHT: 6.0}.get(prop, 0.0)

    def read(self):
        with FakeCapture.cond:
            FakeCapture.calls += 1
            FakeCapture.cond.notify_all()
        n = self.script.get()
        if n is None:
            return False, None
        return True, np.full((6, 8, 3), n, np.uint8)

    def release(self):
        pass

    @classmethod
    def wait_calls(cls, n: int) -> None:
        """Wait for the n-th read() call (a bound so that a broken reader fails, not hangs)."""
        with cls.cond:
            assert cls.cond.wait_for(lambda: cls.calls >= n, timeout=60), f"no read() #{n}"


def use_fake_capture(monkeypatch) -> type[FakeCapture]:
    """Replace cv2.VideoCapture for live sources by a fresh scripted FakeCapture."""
    from realtime.sources import live

    FakeCapture.plans, FakeCapture.opened, FakeCapture.calls = [], [], 0
    monkeypatch.setattr(live.cv2, "VideoCapture", FakeCapture)
    return FakeCapture
