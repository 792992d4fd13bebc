"""Real photos for verification: scikit-image's public-domain test images."""

from __future__ import annotations

import numpy as np

__all__ = ["real_photos"]


def real_photos() -> dict[str, np.ndarray]:
    """name -> RGB uint8 photo (cat, espresso, motorcycle, astronaut, rocket)."""
    try:
        from skimage import data
    except ImportError as exc:
        raise RuntimeError("export verifies on scikit-image's photos: pip install scikit-image") from exc
    return {
        "cat": data.chelsea(),
        "espresso": data.coffee(),
        "motorcycle": data.stereo_motorcycle()[0],
        "astronaut": data.astronaut(),
        "rocket": data.rocket(),
    }
