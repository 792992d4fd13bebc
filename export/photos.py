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


# Offline scikit-image photos (no download) split by PHOTO into two disjoint sets, for
# INT8 calibration and for held-out checks of the quantized models (docs/EDGE.md).
# Held out: the five photos the export verifies on plus two more ImageNet-like objects;
# calibration: every other photo that loads offline (natural, microscopy, texture, text).
HELDOUT_PHOTOS = ("chelsea", "coffee", "stereo_motorcycle", "astronaut", "rocket", "camera",
                  "clock")
CALIB_PHOTOS = ("coins", "moon", "hubble_deep_field", "immunohistochemistry", "retina",
                "colorwheel", "brick", "grass", "gravel", "page", "text", "cell",
                "logo")


def _load(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def photo_variants(photo: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` views of one RGB photo: the whole, a mirror, then seeded random crops
    (30-90% of each side), rescales and brightness changes; deterministic."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    out = [photo, photo[:, ::-1]]
    while len(out) < count:
        ch, cw = (int(s * rng.uniform(0.3, 0.9)) for s in (h, w))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        v = photo[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            v = v[:, ::-1]
        scale = rng.uniform(0.5, 1.5)
        v = cv2.resize(v, (max(32, int(cw * scale)), max(32, int(ch * scale))),
                       interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            v = np.clip(v.astype(np.float32) * rng.uniform(0.6, 1.4), 0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(v))
    return out[:count]


def photo_set(names: tuple[str, ...], per_photo: int, seed: int = 0
              ) -> list[tuple[str, np.ndarray]]:
    """[(name#i, RGB uint8)] with ``per_photo`` variants of each named skimage photo."""
    out = []
    for k, name in enumerate(names):
        for i, v in enumerate(photo_variants(_load(name), per_photo, seed * 1000 + k)):
            out.append((f"{name}#{i}", v))
    return out
