"""Fast downscaling for per-frame work (the detector's input, the motion gate's thumbnails)."""

from __future__ import annotations

import cv2
import numpy as np


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Downscale with pixel averaging, about 2.5x faster than one INTER_AREA resize.

    OpenCV's INTER_AREA is fast only for an exact halving (640x480 → 128x96 in one step
    costs 0.30 ms here, three steps 0.12 ms), so halve while the image is at least twice
    the target, then finish with a bilinear step of less than 2x, which still averages.
    """
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
