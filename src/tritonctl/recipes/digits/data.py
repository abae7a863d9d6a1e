"""The digits data set (scikit-learn's bundled copy, offline) and its fixed-seed split.

Images are 8×8 on the data set's own scale: integers 0–16, ink high on a 0 background (each
pixel counts the inked pixels of a 4×4 block of the original 32×32 bitmap).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 20240611
TEST_FRACTION = 0.2
VAL_FRACTION = 0.15
CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class Split:
    """Images as float32 ``[N, 1, 8, 8]`` on the 0–16 scale, labels as int64 ``[N]``."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Digits:
    train: Split
    val: Split
    test: Split


def load(seed: int = SEED) -> Digits:
    """Stratified train / validation / held-out test split, the same for a given seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float32)[:, None, :, :]
    labels = data.target.astype(np.int64)
    rest_x, test_x, rest_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=seed
    )
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x,
        rest_y,
        test_size=VAL_FRACTION / (1 - TEST_FRACTION),
        stratify=rest_y,
        random_state=seed,
    )
    return Digits(Split(train_x, train_y), Split(val_x, val_y), Split(test_x, test_y))


def save_test_set(split: Split, path: Path, **extra: np.ndarray) -> Path:
    """The held-out images as uint8 ``[N, 8, 8]`` (0–16), their labels and ``extra`` arrays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=split.x[:, 0].astype(np.uint8), labels=split.y, **extra)
    return path
