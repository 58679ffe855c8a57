"""YuNet reads large pictures in tiles (bounded working memory): the tiles cover the picture,
the network never sees more than a tile, and the faces found are those one whole pass finds,
also where a face straddles two tiles or is larger than their overlap."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeemo.analyzer import FaceModels
from edgeemo.config import DetectorConfig
from edgeemo.detectors import iou_matrix
from edgeemo.detectors.yunet import TILE, TILE_OVERLAP, _spans
from edgeemo.modelstore import catalog
from edgeemo.tools.devtools import astronaut_bgr, empty_room

FACE = (slice(20, 260), slice(150, 390))  # the astronaut's head in skimage's picture


@pytest.fixture
def yunet(models_dir: Path):  # type: ignore[no-untyped-def]
    if not (models_dir / catalog()["yunet"].file).is_file():
        pytest.skip("YuNet is not installed: no internet and no ../shared/models/yunet copy here")
    return FaceModels.from_settings(models_dir, DetectorConfig(model="yunet", score_threshold=0.6)).detector


@pytest.mark.parametrize("length", [320, 321, 480, 540, 640, 1080, 1920, 3840])
def test_tiles_cover_the_side_overlapping_on_the_coarsest_stride(length: int) -> None:
    spans = _spans(length)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (_, a1), (b0, _) in itertools.pairwise(spans):
        assert a1 - b0 >= TILE_OVERLAP  # neighbours overlap enough for a face to lie whole in one
    assert all(e - s <= TILE and s % 32 == 0 for s, e in spans)


def _paste(frame: np.ndarray, px: int, cx: int, cy: int) -> np.ndarray:
    """The astronaut's head, its face ~px wide, centred at (cx, cy); returns where it went."""
    head = cv2.resize(astronaut_bgr()[FACE], (px * 2, px * 2), interpolation=cv2.INTER_AREA)
    x, y = cx - px, cy - px
    frame[y : y + 2 * px, x : x + 2 * px] = head
    return np.array([x, y, 2 * px, 2 * px], np.float32)


def _whole_pass(det, frame: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What one pass over the whole frame finds (as before tiles), after the same NMS."""
    boxes, scores = det._forward(frame)
    keep = np.array(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), det.threshold, 0.3)).reshape(-1)
    return boxes[keep]


def _tiled(det, frame: np.ndarray) -> tuple[np.ndarray, int]:  # type: ignore[no-untyped-def]
    """The detector's boxes, and the largest side of any input the network was given."""
    shapes: list[tuple[int, ...]] = []
    run = det.model.run
    det.model.run = lambda batch: shapes.append(batch.shape) or run(batch)
    try:
        boxes = np.array([d.box for d in det.detect(frame)], np.float32).reshape(-1, 4)
    finally:
        det.model.run = run
    return boxes, max(max(s[1], s[2]) for s in shapes)


@pytest.mark.parametrize(
    ("size", "faces"),
    [
        # (face px, centre): on tile boundaries, inside one tile, larger than the overlap
        ((640, 480), [(48, 256, 240), (30, 100, 100), (170, 440, 240)]),
        ((1920, 1080), [(32, 1600, 500), (40, 900, 400), (56, 300, 800), (200, 1200, 300)]),
    ],
)
def test_tiles_find_what_one_whole_pass_finds(yunet, size: tuple[int, int], faces: list) -> None:  # type: ignore[no-untyped-def]
    frame = empty_room(*size)
    heads = np.array([_paste(frame, px, cx, cy) for px, cx, cy in faces])
    tiled, largest = _tiled(yunet, frame)
    whole = _whole_pass(yunet, frame)
    assert largest <= TILE  # never a whole 640x480 or 1080p frame
    assert len(whole) == len(faces) and len(tiled) == len(faces)  # each face once, nothing else
    # The same boxes: each tile starts on YuNet's grid, so a face read whole in a tile gets the
    # box a whole pass gives it; one larger than the overlap, from the half-size picture.
    match = iou_matrix(whole, tiled).max(axis=1)
    assert match.min() > 0.8, match
    assert (iou_matrix(heads, tiled).max(axis=0) > 0.1).all()  # every box is on a pasted head


@pytest.mark.parametrize("px", [96, 220])
def test_a_face_crossing_the_tiles_is_found_wherever_it_is(yunet, px: int) -> None:  # type: ignore[no-untyped-def]
    """A face moved across a picture four tiles wide, in steps: at every place it is found
    once, with the whole pass's box. 96 px: under the overlap, so read whole in some tile;
    220 px: over it, so from the half-size picture where a tile edge cuts it."""
    w = 832  # tiles (0, 320), (192, 512), (384, 704), (512, 832)
    for cx in range(px + 10, w - px - 10, 24):
        frame = empty_room(w, 2 * px + 40)
        _paste(frame, px, cx, px + 20)
        tiled, _ = _tiled(yunet, frame)
        whole = _whole_pass(yunet, frame)
        assert len(whole) == 1 and len(tiled) == 1, (cx, whole, tiled)
        assert iou_matrix(whole, tiled)[0, 0] > 0.8, cx


def test_the_uint8_frame_and_its_float_copy_give_the_same_outputs(yunet) -> None:  # type: ignore[no-untyped-def]
    image = empty_room(320, 256)
    _paste(image, 40, 160, 128)
    a = yunet.model.run(image[None])
    b = yunet.model.run(image.astype(np.float32)[None])
    assert all(np.allclose(x, y, atol=1e-5) for x, y in zip(a, b, strict=True))


def test_tile_px_0_reads_the_whole_picture_in_one_pass(models_dir: Path) -> None:
    """detector.tile_px: 0 trades the bounded memory for speed (one pass, ~3.3x faster at 1080p)."""
    if not (models_dir / catalog()["yunet"].file).is_file():
        pytest.skip("YuNet is not installed: no internet and no ../shared/models/yunet copy here")
    det = FaceModels.from_settings(
        models_dir, DetectorConfig(model="yunet", score_threshold=0.6, tile_px=0)
    ).detector
    frame = empty_room(1920, 1080)
    heads = np.array([_paste(frame, 40, 900, 400), _paste(frame, 200, 1200, 300)])
    calls: list[tuple[int, ...]] = []
    run = det.model.run
    det.model.run = lambda batch: calls.append(batch.shape) or run(batch)
    found = np.array([d.box for d in det.detect(frame)], np.float32).reshape(-1, 4)
    assert calls == [(1, 1088, 1920, 3)]  # one pass, padded to YuNet's 32 px grid
    assert len(found) == 2 and (iou_matrix(heads, found).max(axis=0) > 0.1).all()
