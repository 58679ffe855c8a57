"""FER2013 class order and the FER+ vote mapping, shared by evaluation and training."""

from __future__ import annotations

import numpy as np

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# FER+ vote columns (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
# unknown, NF) → FER2013 class index; contempt, unknown and NF (not a face) have none.
FERPLUS_TO_FER2013 = {0: 6, 1: 3, 2: 5, 3: 4, 4: 0, 5: 1, 6: 2}
FERPLUS_NOT_A_FACE = 9


def ferplus_distribution(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Votes (N, 10) → FER2013-ordered vote shares (N, 7) and a mask of rows with any such vote."""
    dist = np.zeros((len(votes), len(FER2013_CLASSES)), dtype=np.float32)
    for col, cls in FERPLUS_TO_FER2013.items():
        dist[:, cls] = votes[:, col]
    total = dist.sum(axis=1, keepdims=True)
    ok = total[:, 0] > 0
    dist[ok] /= total[ok]
    return dist, ok


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """FER+ majority as a FER2013 class, or -1 where it is contempt, unknown or not-a-face."""
    top = votes.argmax(axis=1)
    out = np.full(len(votes), -1, dtype=np.int64)
    for col, cls in FERPLUS_TO_FER2013.items():
        out[top == col] = cls
    return out
