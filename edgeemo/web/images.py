"""Turning a ``/predict`` request body into a BGR frame, or an error a client can act on.

Pillow reads the header first, so an image's size is checked before a single pixel is decoded
(a 100-byte PNG can claim 100,000 x 100,000 pixels), and a truncated file is an error, not a
half-grey picture (OpenCV's decoder fills the missing part silently).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG", "MPO", "PNG"}  # MPO: a JPEG with a multi-picture segment (phones); first frame
WORK_SIDE = 1920  # /predict analyses at most this long a side (1080p is read at its own size)
IMAGE_TYPES = ("image/jpeg", "image/png")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)


class BadImage(Exception):
    """A request the client must change: ``status`` is the HTTP code, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_type(content_type: str) -> str:
    """The request's media type if /predict takes it, else 415 (before the body is read)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind not in (*IMAGE_TYPES, "application/json"):
        raise BadImage(
            415,
            f"content type {kind[:60] or '(none)'} is not accepted; send application/json "
            '({"frame": "data:image/jpeg;base64,..."}), image/jpeg or image/png',
        )
    return kind


def image_bytes(content_type: str, body: bytes) -> bytes:
    """The encoded image in a request: the older service's JSON ``{"frame": "data:...;base64,..."}``
    (a bare base64 string also works) or a raw ``image/jpeg`` / ``image/png`` body."""
    if check_type(content_type) in IMAGE_TYPES:
        return body
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, huge ints
        raise BadImage(400, f"the body is not valid JSON ({str(e)[:120]})") from None
    if not isinstance(doc, dict) or "frame" not in doc:
        raise BadImage(400, 'the JSON body must be an object with a "frame" key (a base64 data URL)')
    frame = doc["frame"]
    if not isinstance(frame, str) or not frame:
        raise BadImage(400, '"frame" must be a non-empty string: "data:image/jpeg;base64,..."')
    m = _DATA_URL.match(frame[:256])  # the prefix only: a crafted 8 MB "prefix" costs nothing
    data = frame[m.end() :] if m else frame
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage(400, '"frame" is not valid base64 (expected "data:image/jpeg;base64,...")') from None


def decode(data: bytes, max_pixels: int, work_side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """A BGR uint8 array, upright as the photo's EXIF says, its long side at most ``work_side``,
    and the scale back to the picture's own pixels. A big photo is read shrunk (a JPEG decoded
    at 1/2, 1/4 or 1/8 by libjpeg itself): the detector's working memory grows with the pixels
    it is given, and it holds the model the cameras share while it works."""
    if not data:
        raise BadImage(400, "the image is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage(400, "not an image: expected a JPEG or PNG") from None
    except Image.DecompressionBombError:  # Pillow's own bound, far above ours
        raise BadImage(413, f"the image is over the limit of {max_pixels / 1e6:.0f} megapixels") from None
    except (OSError, SyntaxError, ValueError) as e:  # its header already ends early
        raise BadImage(400, f"the image is truncated or corrupt ({e})") from None
    if img.format not in FORMATS:
        raise BadImage(400, f"a {img.format} image is not accepted; send a JPEG or PNG")
    w, h = img.size
    if w < 1 or h < 1:
        raise BadImage(400, f"the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise BadImage(
            413, f"the image is {w}x{h} pixels, over the limit of {max_pixels / 1e6:.0f} megapixels"
        )
    try:
        if img.format in ("JPEG", "MPO") and max(w, h) > work_side:
            img.draft("RGB", (w * work_side // max(w, h), h * work_side // max(w, h)))
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I"):  # a PNG's 16-bit grey ("I;16" or "I"): its top 8 bits, not clipped white
            grey = (np.asarray(img) >> 8).clip(0, 255).astype(np.uint8)
            bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        else:
            bgr = np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(400, f"the {img.format} image is truncated or corrupt ({e})") from None
    # The scale back to the picture as sent (EXIF-rotated), from whatever size it was read at.
    upright_long = max(w, h)
    if max(bgr.shape[:2]) > work_side:
        f = work_side / max(bgr.shape[:2])
        bgr = cv2.resize(
            bgr, (round(bgr.shape[1] * f), round(bgr.shape[0] * f)), interpolation=cv2.INTER_AREA
        )
    return bgr, upright_long / max(bgr.shape[:2])
