"""Run camloc's FP32 and INT8 models on other CPUs' ONNX Runtime kernels under qemu
user-mode emulation, and report each one's agreement with FP32 run natively here.

Correctness only: emulated speed means nothing. Not part of CI (minutes per model).

CPUs (``--cpus``):

* ``cortex-a72`` (Raspberry Pi 4: NEON, no dot product) and ``cortex-a76`` (Raspberry
  Pi 5: NEON + SDOT/UDOT): ``qemu-aarch64`` running an arm64 Python 3.11 from Debian's
  arm64 packages with the PyPI aarch64 wheels of onnxruntime, numpy and
  opencv-python-headless (``tools/arm_setup.sh`` builds it). ONNX Runtime's CPU probe
  (cpuinfo) reads ``/proc/cpuinfo``, which qemu 7.2 passes through from the x86 host,
  and crashes on it; so each run gets, in a private mount namespace (``unshare -m``),
  an ARM ``/proc/cpuinfo`` that matches the emulated CPU.
* ``haswell``: ``qemu-x86_64 -cpu Haswell`` running this very Python and onnxruntime:
  an x86 CPU with AVX2 and no AVX-512 / VNNI, so ONNX Runtime takes its AVX2 U8S8
  kernels (the ones that saturate with 8-bit weights).

    bash tools/arm_setup.sh /tmp/arm                        # once (Debian + PyPI)
    python tools/photo_sets.py --out /tmp/sets ...           # the photos
    python tools/arm_check.py --root /tmp/arm --fp32 lite0.onnx \\
        --int8 portable=lite0.int8.onnx --int8 vnni=lite0.vnni.onnx \\
        --photos /tmp/sets/opencv /tmp/sets/wallpapers /tmp/sets/video /tmp/sets/skimage \\
        --per-set 10 --cpus cortex-a72,cortex-a76,haswell

The emulated side only needs numpy and onnxruntime (``--run`` mode, which imports
nothing from the repository): the frames are prepared here exactly as the runtime
prepares them and handed over as one .npz file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["CPUS", "main"]

ROOT = Path(__file__).resolve().parents[1]
# name -> (qemu binary, -cpu model, /proc/cpuinfo "CPU part" and Features, or None for x86)
CPUS = {
    "cortex-a72": ("qemu-aarch64", "cortex-a72",
                   ("0xd08", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid")),
    "cortex-a76": ("qemu-aarch64", "cortex-a76",
                   ("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                             "cpuid asimdrdm lrcpc dcpop asimddp")),
    # Haswell less the features TCG cannot emulate (it warns once per thread otherwise)
    "haswell": ("qemu-x86_64", "Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-rtm,-invpcid", None),
}
OUTPUTS = ("logits", "features", "cam_weight")


def _run(inputs: Path, models: list[Path], out: Path) -> None:
    """Emulated side: every model on every tensor; logits, features, cam_weight -> .npz."""
    import onnxruntime as ort

    data = np.load(inputs)
    keys = sorted(data.files, key=lambda k: int(k))
    result = {}
    for m, path in enumerate(models):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        s = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        for k in keys:
            lo, fe, w = s.run(list(OUTPUTS), {"images": data[k]})
            result[f"{m}/{k}/logits"], result[f"{m}/{k}/features"] = lo[0], fe[0]
        result[f"{m}/cam_weight"] = w
    np.savez(out, **result)


def _cpuinfo(part: str, features: str, n: int) -> str:
    return "\n".join(f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\n"
                     f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
                     f"CPU part\t: {part}\nCPU revision\t: 1\n" for i in range(n)) + "\n"


def _emulated(cpu: str, root: Path, inputs: Path, models: list[Path], out: Path,
              work: Path) -> None:
    qemu, model, arm = CPUS[cpu]
    me = [str(Path(__file__).resolve()), "--run", str(inputs), str(out), *map(str, models)]
    if arm is None:
        subprocess.run([qemu, "-cpu", model, sys.executable, *me], check=True)
        return
    fake = work / f"cpuinfo.{cpu}"
    fake.write_text(_cpuinfo(*arm, os.cpu_count() or 1))
    env = (f"env -i PYTHONPATH={root}/site PYTHONNOUSERSITE=1 {qemu} -cpu {model} -L {root}/root "
           f"{root}/root/usr/bin/python3.11")
    script = f"mount --bind {fake} /proc/cpuinfo && exec {env} " + " ".join(me)
    subprocess.run(["unshare", "-m", "sh", "-c", script], check=True)


def _tensors(folders: list[Path], per_set: int, fp32: Path) -> tuple[list[str], list[np.ndarray]]:
    sys.path.insert(0, str(ROOT))
    from export.calib import prepare_frames, read_frames
    from export.compare import open_session
    from realtime.model.format import parse_metadata

    info = parse_metadata(open_session(fp32).get_modelmeta().custom_metadata_map, fp32)
    names, xs = [], []
    for folder in folders:
        frames = read_frames(folder, max(per_set, 16))
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, per_set).round().astype(int)]
        names += [f"{folder.name}/{Path(f.name).name}" for f in frames]
        xs += prepare_frames(frames, info.stride, info.mean, info.std, info.color == "RGB",
                             info.input_size)
    return names, xs


def _report(label: str, ref, got, stride_names: list[str]) -> str:
    sys.path.insert(0, str(ROOT))
    from export.compare import CONFIDENT_PROB, _box_iou, _corr
    from realtime.model.cam import softmax

    (lo32, fe32, w32), (loq, feq, wq) = ref, got
    top = [int(np.argmax(v)) for v in lo32]
    same = [int(np.argmax(v)) == t for v, t in zip(loq, top)]
    sure = [i for i, v in enumerate(lo32) if softmax(v).max() >= CONFIDENT_PROB]
    cams = [(np.tensordot(w32[c], a, axes=(0, 0)), np.tensordot(wq[c], b, axes=(0, 0)))
            for c, a, b in zip(top, fe32, feq)]
    corr = [_corr(a, b) for a, b in cams]
    ious = [_box_iou(a, b) for a, b in cams]
    sure_agree = sum(same[i] for i in sure) / len(sure) if sure else float("nan")
    return (f"{label:<34} {np.mean(same):.3f} ({sum(same)}/{len(same)})  "
            f"{sure_agree:.3f} ({len(sure)})  {np.mean(corr):.4f} / {np.min(corr):.4f}  "
            f"{np.mean(ious):.3f}")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--run"]:
        _run(Path(argv[1]), [Path(a) for a in argv[3:]], Path(argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="what tools/arm_setup.sh built")
    p.add_argument("--fp32", type=Path, required=True)
    p.add_argument("--int8", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--photos", type=Path, nargs="+", required=True, help="folders of images")
    p.add_argument("--per-set", type=int, default=10, help="photos taken from each folder")
    p.add_argument("--cpus", default=",".join(CPUS))
    args = p.parse_args(argv)
    int8 = dict(a.split("=", 1) for a in args.int8)
    models = [args.fp32, *map(Path, int8.values())]
    labels = ["fp32", *int8]
    names, xs = _tensors(args.photos, args.per_set, args.fp32)
    print(f"{len(xs)} photos ({args.per_set} from each of "
          f"{', '.join(f.name for f in args.photos)}); reference: FP32 on this x86 CPU")
    with tempfile.TemporaryDirectory(prefix="camloc-arm-") as tmp:
        work = Path(tmp)
        inputs = work / "inputs.npz"
        np.savez(inputs, **{str(i): x for i, x in enumerate(xs)})
        native = work / "native.npz"
        _run(inputs, models, native)

        def load(path: Path, m: int):
            d = np.load(path)
            return ([d[f"{m}/{i}/logits"] for i in range(len(xs))],
                    [d[f"{m}/{i}/features"] for i in range(len(xs))], d[f"{m}/cam_weight"])

        ref = load(native, 0)
        print(f"{'model on CPU':<34} top-1 agr. (n)  sure-only (n)  CAM corr mean / min  "
              "box IoU")
        for m, label in enumerate(labels[1:], 1):
            print(_report(f"{label} on this CPU (native)", ref, load(native, m), names))
        for cpu in [c for c in args.cpus.split(",") if c]:
            out = work / f"{cpu}.npz"
            _emulated(cpu, args.root, inputs, models, out, work)
            for m, label in enumerate(labels):
                print(_report(f"{label} on {cpu} (emulated)", ref, load(out, m), names),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
