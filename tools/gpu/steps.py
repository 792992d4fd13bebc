"""The steps of tools/gpu/check, each run as its own process (so that a hang is killed
without taking the others down): ``python3 tools/gpu/steps.py STEP [ARGS] --parts DIR..``.

The environment says where and how (set by check): CAMLOC_GPU_WORK (install folder),
CAMLOC_GPU_MODELS, CAMLOC_GPU_CLIP, CAMLOC_GPU_DEVICE (cuda, or cpu for the
rehearsal), CAMLOC_GPU_SMALL=1 (the rehearsal's small inputs and short timings).
Each step writes ``results/<step>.json`` under the work folder and exits 0 on
success; figures say whether they are of the model alone or of the whole pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

WORK = Path(os.environ.get("CAMLOC_GPU_WORK", "/tmp/camloc-gpu/work"))
MODELS = Path(os.environ.get("CAMLOC_GPU_MODELS", WORK / "models"))
CLIP = Path(os.environ.get("CAMLOC_GPU_CLIP", WORK / "media" / "clip1080.mp4"))
DEVICE = os.environ.get("CAMLOC_GPU_DEVICE", "cuda")
SMALL = os.environ.get("CAMLOC_GPU_SMALL") == "1"
MODEL_ALONE = "model alone: ONNX Runtime with in-graph CAMs, input from and outputs to host"
PIPELINE = "whole pipeline: decode, prepare, infer, CAMs, boxes, draw (and encode)"


def save(name: str, data: dict) -> None:
    out = WORK / "results" / (name.replace(" ", "_") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")


def model_path(name: str, precision: str = "fp32") -> Path:
    return MODELS / (f"{name}.onnx" if precision == "fp32" else f"{name}.{precision}.onnx")


def join(parts: list[Path]) -> None:
    """Find manifest and parts in ``parts`` folders, verify every SHA-256, unpack."""
    import lzma
    import tarfile

    manifest = next((d / "manifest.json" for d in parts if (d / "manifest.json").is_file()), None)
    if manifest is None:
        raise SystemExit(f"no manifest.json in {', '.join(map(str, parts))}")
    m = json.loads(manifest.read_text())
    payload = WORK / m["payload"]["name"]
    whole = hashlib.sha256()
    with open(payload, "wb") as out:
        for part in m["parts"]:
            found = [d / part["name"] for d in parts if (d / part["name"]).is_file()]
            if not found:
                raise SystemExit(f"{part['name']} is missing (make the device calls again, back "
                                 f"to back); looked in {', '.join(map(str, parts))}")
            data = found[0].read_bytes()
            if hashlib.sha256(data).hexdigest() != part["sha256"]:
                raise SystemExit(f"{found[0]}: SHA-256 differs from the manifest")
            whole.update(data)
            out.write(data)
            print(f"{part['name']}: {len(data) / 1e6:.1f} MB ok ({found[0].parent})")
    if whole.hexdigest() != m["payload"]["sha256"]:
        raise SystemExit("the joined payload's SHA-256 differs from the manifest")
    t0 = time.monotonic()
    with lzma.open(payload) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
        tar.extractall(WORK, filter="data")
    payload.unlink()
    bad = [c["path"] for c in m["contents"]
           if hashlib.sha256((WORK / c["path"]).read_bytes()).hexdigest() != c["sha256"]]
    if bad:
        raise SystemExit(f"unpacked files differ from the manifest: {', '.join(bad[:5])}")
    print(f"unpacked {len(m['contents'])} files into {WORK} in {time.monotonic() - t0:.1f} s")
    save("join", {"status": "passed", "manifest": {k: m[k] for k in (
        "made", "onnxruntime_gpu", "keep_sm", "pyav", "models", "clip_codec", "steps")}})


def fp16() -> None:
    """The FP16 variant of each packed FP32 model (export/fp16.py; onnx + onnxruntime)."""
    from export.fp16 import make_fp16

    made = []
    for src in sorted(MODELS.glob("*.onnx")):
        if src.name.count(".") > 1:
            continue
        dst = model_path(src.stem, "fp16")
        if not dst.is_file():
            t0 = time.monotonic()
            make_fp16(src, dst)
            print(f"{dst.name}: {dst.stat().st_size / 1e6:.1f} MB in "
                  f"{time.monotonic() - t0:.1f} s")
        made.append(dst.name)
    save("fp16", {"status": "passed", "models": made})


def providers() -> None:
    import onnxruntime as ort

    from realtime import Localizer
    from realtime.model.providers import PROVIDER_OF, parse_device

    print(f"onnxruntime {ort.__version__} from {Path(ort.__file__).parent}")
    print(f"available: {', '.join(ort.get_available_providers())}")
    loc = Localizer(model_path("efficientnet_lite0"), device=DEVICE)
    granted = loc.session.get_providers()
    print(f"granted for --device {DEVICE}: {', '.join(granted)}; runner "
          f"{type(loc._forward).__name__}")
    want = PROVIDER_OF[parse_device(DEVICE)[0]]
    save("providers", {"status": "passed" if granted[0] == want else "failed",
                       "onnxruntime": ort.__version__, "onnxruntime_path": ort.__file__,
                       "available": ort.get_available_providers(), "granted": granted,
                       "runner": type(loc._forward).__name__})
    if granted[0] != want:
        raise SystemExit(f"{want} was not granted")


def _frames(count: int) -> list:
    from itertools import islice

    from realtime.sources import open_source

    with open_source(str(CLIP)) as source:
        return [f.image for f in islice(source, count)]


def _rate(call, x, seconds: float) -> tuple[float, int]:
    """(frames per second, calls) of ``call(x)`` in a loop for about ``seconds``."""
    for _ in range(3):
        call(x)
    n, t0 = 0, time.perf_counter()
    while True:
        call(x)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n * len(x) / elapsed, n


def bench(name: str, precision: str) -> None:
    """Model alone, one thread: batch 1/8/64 (rehearsal 1/2), CUDA graphs on and off."""
    import numpy as np

    from realtime import Localizer
    from realtime.bench import device_name

    path = model_path(name, precision)
    key = f"bench {name} {precision}"
    if not path.is_file():
        save(key, {"status": "skipped", "reason": f"{path.name} not packed", "cells": []})
        print(f"skipped: {path.name} not packed")
        return
    batches, seconds = ((1, 2), 0.3) if SMALL else ((1, 8, 64), 1.5)
    frames = _frames(max(batches))
    cells: list[dict] = []
    for graphs in (True, False):
        loc = Localizer(path, device=DEVICE, cuda_graphs=graphs)
        tensors = [loc.prepare(f)[0] for f in frames]
        for batch in batches:
            x = np.concatenate((tensors * batch)[:batch])
            fps, calls = _rate(loc.forward, x, seconds)
            runner = loc._forward
            cells.append({"model": name, "precision": precision, "batch": batch,
                          "cuda_graphs": graphs, "runner": type(runner).__name__,
                          "graphs_refused": bool(getattr(runner, "refused", False)),
                          "fps": round(fps, 1), "ms_per_call": round(1e3 * batch / fps, 3),
                          "calls": calls, "input_size": list(x.shape[2:]),
                          "provider": loc.provider, "scope": MODEL_ALONE})
            print(f"{name} {precision} batch {batch:>2} graphs {'on ' if graphs else 'off'} "
                  f"({type(runner).__name__}): {fps:9.1f} frames/s")
            save(key, {"status": "passed", "device": device_name(loc.provider), "cells": cells})


def file1080() -> None:
    """A 1080p H.264 file to an annotated video, 1 and 4 draw workers, stage table; and
    the same file's decoding alone, to say what limits the run."""
    from realtime.bench import run_bench

    try:
        import av  # noqa: F401
        codec = "h264"
    except ImportError:
        codec = "mp4v"  # no PyAV on the machine: OpenCV's MPEG-4 writer
    frames, warmup = (12, 2) if SMALL else (300, 20)
    t0, n = time.perf_counter(), len(_frames(frames))
    decode_fps = n / (time.perf_counter() - t0)
    r = run_bench(str(CLIP), str(model_path("efficientnet_lite0")), device=DEVICE,
                  frames=frames, warmup=warmup, repeats=1, codecs=(codec,),
                  draw_workers=(1, 4))
    best = max([r["file_fps"]] + [v["file_fps"] for v in r["by_draw_workers"].values()])
    verdict = ("limited by decoding" if best >= 0.9 * decode_fps else
               "NOT limited by decoding: see the stage table")
    print(f"decode alone {decode_fps:.1f} fps (open + read, one thread); bare {r['bare_fps']}, "
          f"draw {r['draw_fps']}, file {r['file_fps']} ({codec}); "
          f"by draw workers {r['by_draw_workers']}")
    print("stages (median ms per frame): " + ", ".join(f"{k} {v}" for k, v in
                                                        r["stages_ms"].items()))
    save("file1080", {"status": "passed", "decode_fps": round(decode_fps, 1),
                      "file_fps": best, "verdict": verdict, "bench": r, "scope": PIPELINE,
                      "note": "bare_fps is the model alone; draw/file are the pipeline"})


def multi16() -> None:
    """16 copies of the 1080p clip as 16 sources in one process, batched per round."""
    from realtime import Localizer
    from realtime.pipeline.runner import Pipeline

    sources, frames = (3, 6) if SMALL else (16, 150)
    loc = Localizer(model_path("efficientnet_lite0"), device=DEVICE)
    with Pipeline([str(CLIP)] * sources, loc, names=[f"s{i}" for i in range(sources)],
                  draw=False, max_frames=frames, batch=sources, workers=2) as run:
        for _ in run:
            pass
    done = sum(f.stats.processed for f in run.feeds)
    fps = done / run.elapsed_s
    print(f"{sources} sources x {frames} frames: {done} frames in {run.elapsed_s:.1f} s = "
          f"{fps:.0f} frames/s, {fps / sources:.1f} per source")
    save("multi16", {"status": "passed", "sources": sources, "frames": done, "fps": round(fps, 1),
                     "per_source_fps": round(fps / sources, 1),
                     "realtime": fps / sources >= 30.0, "provider": loc.provider,
                     "scope": "pipeline without outputs: decode, prepare, batched infer, "
                              "CAMs, boxes (no drawing, no encoding)"})


def uint8() -> None:
    """Model alone with a uint8 [N, H, W, 3] input normalised in the graph (a quarter of
    the host-to-device copy) against the float input, batch 1 and 64, IO binding."""
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT / "tools"))
    from measure_uint8_input import uint8_variant

    from realtime import Localizer
    from realtime.model.format import INCAM_OUTPUTS
    from realtime.model.preprocess import normalize_to_tensor, resize_frame, working_size

    src = model_path("efficientnet_lite0")
    loc = Localizer(src, device=DEVICE, cuda_graphs=False)  # both: IO binding, no graphs
    dst = WORK / "lite0.uint8in.onnx"
    info = loc.info
    uint8_variant(src, dst, info.mean, info.std, info.color == "RGB")
    sess = ort.InferenceSession(str(dst), providers=loc.session.get_providers())
    dev = "cuda" if loc.provider == "CUDAExecutionProvider" else "cpu"
    frames = _frames(2)
    h, w = frames[0].shape[:2]
    small = resize_frame(frames[0], working_size(h, w, loc.working_size_for(h, w), info.stride))

    def u8_run(x):
        b = sess.io_binding()
        b.bind_cpu_input("frames", x)
        for n in INCAM_OUTPUTS:
            b.bind_output(n, dev)
        sess.run_with_iobinding(b)
        return b.copy_outputs_to_cpu()

    cells = []
    for batch in ((1, 2) if SMALL else (1, 64)):
        u8 = np.ascontiguousarray(np.stack([small] * batch))
        fl = np.concatenate([normalize_to_tensor(small, info.mean, info.std,
                                                 info.color == "RGB")] * batch)
        for kind, call, x in (("uint8", u8_run, u8), ("float", loc.forward, fl)):
            fps, _ = _rate(call, x, 0.3 if SMALL else 2.0)
            cells.append({"input": kind, "batch": batch, "fps": round(fps, 1),
                          "provider": loc.provider, "scope": MODEL_ALONE + " (float: prepared "
                          "tensor; uint8: resized frame, normalised in the graph)"})
            print(f"{kind:<5} input batch {batch:>2}: {fps:9.1f} frames/s")
    save("uint8", {"status": "passed", "cells": cells})


def main(argv: list[str]) -> int:
    parts = [Path(p) for p in argv[argv.index("--parts") + 1:]] if "--parts" in argv else []
    args = argv[:argv.index("--parts")] if "--parts" in argv else argv
    step, rest = args[0], args[1:]
    if step == "join":
        join(parts)
    else:
        {"fp16": fp16, "providers": providers, "bench": bench, "file1080": file1080,
         "multi16": multi16, "uint8": uint8}[step](*rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
