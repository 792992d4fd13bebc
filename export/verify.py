"""What the INT8 / FP16 export measured against FP32, printed as one block, and the
verdict: refuse only a variant that is really broken.

A top-1 flip between two classes that FP32 itself rates near 0.1 (a logo, a chart, a
page of text in an ImageNet model) says nothing about the quantization, so top-1
agreement is judged on the held-out frames FP32 is sure of (top-1 probability
>= ``CONFIDENT_PROB``); the CAMs, which are what camloc draws, are judged on every
frame: correlation of the FP32 top class's CAM, and IoU of the box it gives. The
agreement on all frames is reported, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .compare import CONFIDENT_PROB, Comparison
from .graph import QuantizeError

__all__ = ["DEFAULT_MIN_AGREEMENT", "IDENTITY_TOLERANCE", "INT8_TARGETS", "MIN_BOX_IOU",
           "MIN_CAM_CORR", "QuantizeReport", "check"]

DEFAULT_MIN_AGREEMENT = 0.8  # top-1 agreement on the frames FP32 is sure of, below: refused
MIN_CAM_CORR = 0.9           # mean CAM correlation with FP32 below this: refused
MIN_BOX_IOU = 0.5            # mean IoU of the top class's box with FP32's below this: refused
IDENTITY_TOLERANCE = 1e-3    # CAM identity inside the quantized model (relative)
# INT8 target -> 7-bit weights (reduce_range)? "portable" is safe on every CPU; "vnni" keeps
# 8-bit weights, for CPUs whose INT8 kernels do not saturate (docs/EDGE.md)
INT8_TARGETS = {"portable": True, "vnni": False}


@dataclass
class QuantizeReport:
    """How the variant compares with its FP32 source."""

    path: Path
    precision: str
    arch: str
    target: str = ""                # INT8 target (portable / vnni); "" for FP16
    calib_frames: int = 0
    heldout_frames: int = 0
    float_nodes: list[str] = field(default_factory=list)
    agreement: float = 0.0          # top-1 agreement with FP32 on all held-out frames
    agreement_calib: float | None = None  # ... on the calibration frames themselves
    confident_frames: int = 0       # held-out frames FP32 is sure of (top-1 p >= 0.5)
    agreement_confident: float | None = None  # top-1 agreement on those (judged)
    cam_corr: float = 0.0           # mean Pearson correlation of the FP32 top class's CAM
    cam_corr_min: float = 0.0
    box_iou: float = 0.0            # mean IoU of that CAM's box, variant vs FP32
    box_iou_min: float = 0.0
    identity_err: float = 0.0       # GAP(features) . W^T + b vs logits, inside the variant
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    size_bytes: int = 0
    fp32_bytes: int = 0
    speed: float = 0.0              # FP32 median ms / variant median ms (> 1: faster)
    ms: tuple[float, float] = (0.0, 0.0)  # (fp32, variant) median ms per run
    bench_shape: tuple[int, ...] = ()
    qat: str = ""                   # quantization-aware fine-tuning done first ("": none)

    def take(self, c: Comparison) -> None:
        """Copy the held-out comparison's figures."""
        self.agreement, self.identity_err = c.agreement, c.identity_err
        self.cam_corr, self.cam_corr_min = c.cam_corr, c.cam_corr_min
        self.box_iou, self.box_iou_min = c.box_iou, c.box_iou_min
        self.confident_frames, self.agreement_confident = c.confident, c.agreement_confident

    def verification(self) -> list[str]:
        """The measurements against FP32, one per line, each with what it is judged by."""
        n = self.heldout_frames
        sure = ("none of them: judged on the CAMs alone" if self.agreement_confident is None
                else f"{self.agreement_confident:.3f} ({self.confident_frames} frames; "
                     f"refused below {self.min_agreement:g})")
        calib = (f"; calibration frames {self.agreement_calib:.3f}"
                 if self.agreement_calib is not None else "")
        return [
            f"  checked against FP32 on {n} held-out frames:",
            f"    top-1 agreement where FP32 is sure (p >= {CONFIDENT_PROB:g}): {sure}",
            f"    top-1 agreement, all frames: {self.agreement:.3f} (not judged: flips "
            f"where FP32 is unsure{calib})",
            f"    CAM correlation (FP32 top class): mean {self.cam_corr:.4f}, min "
            f"{self.cam_corr_min:.4f} (refused below a mean of {MIN_CAM_CORR:g})",
            f"    box IoU (that CAM's box): mean {self.box_iou:.3f}, min {self.box_iou_min:.3f}"
            f" (refused below a mean of {MIN_BOX_IOU:g})",
            f"    CAM identity inside the model: rel. error {self.identity_err:.1e} "
            f"(refused from {IDENTITY_TOLERANCE:g})",
        ]

    def summary(self) -> str:
        lines = [f"wrote {self.precision.upper()} {self.arch} -> {self.path} "
                 f"[{self.size_bytes / 1e6:.1f} MB, {self.fp32_bytes / self.size_bytes:.1f}x "
                 f"smaller than FP32]"]
        if self.calib_frames:
            lines.append(f"  calibrated on {self.calib_frames} frames; float layers: "
                         + (", ".join(self.float_nodes) or "none"))
        if self.qat:
            lines.append(f"  quantization-aware fine-tuning (distilled from FP32): {self.qat}")
        if self.target:
            lines.append(f"  target: {self.target} ("
                         + ("7-bit weights: no saturation on any CPU" if INT8_TARGETS[self.target]
                            else "8-bit weights: for VNNI x86 CPUs and ARM") + ")")
        lines += self.verification()
        if self.ms[0]:
            lines.append(f"  speed on this machine (CPU, 1 thread, input "
                         f"{'x'.join(map(str, self.bench_shape))}): FP32 {self.ms[0]:.1f} ms, "
                         f"{self.precision.upper()} {self.ms[1]:.1f} ms -> {self.speed:.2f}x")
        return "\n".join(lines)


def check(report: QuantizeReport) -> None:
    """Raise QuantizeError, naming what failed and every measurement, when the variant is
    broken: CAM identity, agreement where FP32 is sure, CAM correlation or box IoU."""
    failed = []
    if not report.identity_err < IDENTITY_TOLERANCE:
        failed.append(f"CAM identity rel. error {report.identity_err:.2e} >= "
                      f"{IDENTITY_TOLERANCE:g}")
    if report.agreement_confident is not None \
            and report.agreement_confident < report.min_agreement:
        failed.append(f"top-1 agreement with FP32 {report.agreement_confident:.3f} < "
                      f"{report.min_agreement:g} on the {report.confident_frames} held-out "
                      "frames FP32 is sure of")
    if not report.cam_corr >= MIN_CAM_CORR:
        failed.append(f"CAM correlation with FP32 {report.cam_corr:.3f} < {MIN_CAM_CORR:g}")
    if not report.box_iou >= MIN_BOX_IOU:
        failed.append(f"box IoU with FP32 {report.box_iou:.3f} < {MIN_BOX_IOU:g}")
    if failed:
        raise QuantizeError(f"verification failed: {'; '.join(failed)} (measured on "
                            f"{report.heldout_frames} held-out frames; all-frame top-1 "
                            f"agreement {report.agreement:.3f}); the quantized model is "
                            "broken: calibrate on frames like those it will see, or keep "
                            "more layers float (--float-first)")
