"""Shared fixtures: real photos, the exported default model, tiny structural models.

The model cache lives under .pytest_cache/camloc-home (CAMLOC_HOME), so the
default model is exported once per fresh checkout (a few seconds) and reused;
subprocesses started by tests inherit it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["CAMLOC_HOME"] = str(ROOT / ".pytest_cache" / "camloc-home")


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """name -> RGB uint8 real photo (scikit-image's public-domain test images: cat,
    espresso, motorcycle, astronaut, rocket), the same ones the export verifies on."""
    from export.photos import real_photos

    return real_photos()


@pytest.fixture(scope="session")
def lite0_onnx() -> Path:
    """The default model (EfficientNet-Lite0, real ImageNet weights) as exported
    into the runtime's cache, built on first use."""
    from realtime.model.zoo import resolve_model

    return resolve_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3->8->16 conv + GAP + linear model with random weights in the camloc .onnx
    layout (5 classes), built with onnx.helper: for pipeline and CLI behaviour."""
    from media import tiny_camloc_onnx

    return tiny_camloc_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")
