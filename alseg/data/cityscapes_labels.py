"""The Cityscapes label table (label id -> train id), as in cityscapesscripts' labels.py.

Written once here so that alseg does not depend on cityscapesscripts at run time; the
test suite checks it against the package (a dev dependency). GTA5 labels use the same
ids.
"""

from __future__ import annotations

import numpy as np

# (label id, name, train id, colour) for the 34 label ids; train id 255 = ignored.
LABELS: tuple[tuple[int, str, int, tuple[int, int, int]], ...] = (
    (0, "unlabeled", 255, (0, 0, 0)),
    (1, "ego vehicle", 255, (0, 0, 0)),
    (2, "rectification border", 255, (0, 0, 0)),
    (3, "out of roi", 255, (0, 0, 0)),
    (4, "static", 255, (0, 0, 0)),
    (5, "dynamic", 255, (111, 74, 0)),
    (6, "ground", 255, (81, 0, 81)),
    (7, "road", 0, (128, 64, 128)),
    (8, "sidewalk", 1, (244, 35, 232)),
    (9, "parking", 255, (250, 170, 160)),
    (10, "rail track", 255, (230, 150, 140)),
    (11, "building", 2, (70, 70, 70)),
    (12, "wall", 3, (102, 102, 156)),
    (13, "fence", 4, (190, 153, 153)),
    (14, "guard rail", 255, (180, 165, 180)),
    (15, "bridge", 255, (150, 100, 100)),
    (16, "tunnel", 255, (150, 120, 90)),
    (17, "pole", 5, (153, 153, 153)),
    (18, "polegroup", 255, (153, 153, 153)),
    (19, "traffic light", 6, (250, 170, 30)),
    (20, "traffic sign", 7, (220, 220, 0)),
    (21, "vegetation", 8, (107, 142, 35)),
    (22, "terrain", 9, (152, 251, 152)),
    (23, "sky", 10, (70, 130, 180)),
    (24, "person", 11, (220, 20, 60)),
    (25, "rider", 12, (255, 0, 0)),
    (26, "car", 13, (0, 0, 142)),
    (27, "truck", 14, (0, 0, 70)),
    (28, "bus", 15, (0, 60, 100)),
    (29, "caravan", 255, (0, 0, 90)),
    (30, "trailer", 255, (0, 0, 110)),
    (31, "train", 16, (0, 80, 100)),
    (32, "motorcycle", 17, (0, 0, 230)),
    (33, "bicycle", 18, (119, 11, 32)),
)

_TRAIN = sorted((t, name, color) for _, name, t, color in LABELS if t != 255)
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(name for _, name, _ in _TRAIN)
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = tuple(color for _, _, color in _TRAIN)


def label_id_lut() -> np.ndarray:
    """(256,) int64: label id -> train id (255 for ignored ids, -1 for values that are
    not Cityscapes label ids)."""
    lut = np.full(256, -1, dtype=np.int64)
    for label_id, _, train_id, _ in LABELS:
        lut[label_id] = train_id
    return lut
