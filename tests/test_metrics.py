"""Unit tests of the per-case metrics (dhcbench.evaluation.metrics), reference §11.

Pinned:

- against medpy.metric.binary (the library the reference evaluation uses) on random 3D blob
  label maps: dhc Dice == 100·dc, dhc ASD == asd(pred==c, gt==c) without spacing,
  rigorous ASD == assd(..., voxelspacing) and rigorous HD95 == hd95(..., voxelspacing);
- the empty-mask conventions of reference §11 (dhc: one side empty -> 0 / 128, both empty ->
  Dice 1 (not 100) / ASD 0) and of the rigorous contract (NaN wherever undefined);
- masks touching the volume border (the bounding-box crop must not change the result);
- a hand-computed case: two 3x3x3 cubes offset by one voxel along axis 0 (numbers derived
  in the comments of ``test_offset_cubes_by_hand``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from medpy.metric import binary as mb
from scipy import ndimage

from dhcbench.evaluation.metrics import DHC_EMPTY_ASD, case_metrics, surface_distances

SPACING = (2.5, 0.8, 1.2)


def blob_labels(seed: int, shape=(20, 30, 25), k: int = 4, base=None, mix: float = 0.0):  # noqa: ANN001, ANN201
    """Smooth random label map: argmax over k gaussian-filtered noise fields.

    With ``base`` (the noise of another map) the fields are ``base + mix * new``, so the two
    label maps overlap substantially, like a prediction and its ground truth.
    """
    rng = np.random.default_rng(seed)
    noise = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
                      for _ in range(k)])
    if base is not None:
        noise = base + mix * noise
    return noise.argmax(0).astype(np.uint8), noise


@pytest.fixture(scope="module")
def blobs():  # noqa: ANN201
    gt, noise = blob_labels(0)
    pred, _ = blob_labels(1, base=noise, mix=0.8)
    for c in range(1, 4):  # every class present on both sides, and imperfect overlap
        assert (gt == c).any() and (pred == c).any()
        assert 0 < mb.dc(pred == c, gt == c) < 1
    return pred, gt


def test_blobs_match_medpy(blobs) -> None:  # noqa: ANN001
    pred, gt = blobs
    m = case_metrics(pred, gt, 4, SPACING)
    assert set(m) == {(ct, met, c) for c in (1, 2, 3)
                      for ct, met in [("dhc", "dice"), ("dhc", "asd"), ("rigorous", "dice"),
                                      ("rigorous", "asd"), ("rigorous", "hd95")]}
    for c in (1, 2, 3):
        p, g = pred == c, gt == c
        assert m[("dhc", "dice", c)] == pytest.approx(100.0 * mb.dc(p, g), rel=1e-12)
        assert m[("rigorous", "dice", c)] == pytest.approx(100.0 * mb.dc(p, g), rel=1e-12)
        assert m[("dhc", "asd", c)] == pytest.approx(mb.asd(p, g), rel=1e-9)
        assert m[("rigorous", "asd", c)] == pytest.approx(
            mb.assd(p, g, voxelspacing=SPACING), rel=1e-9)
        assert m[("rigorous", "hd95", c)] == pytest.approx(
            mb.hd95(p, g, voxelspacing=SPACING), rel=1e-9)
        # dhc ASD is directed (pred -> gt); on blobs it differs from the reverse direction.
        assert m[("dhc", "asd", c)] != pytest.approx(mb.asd(g, p), rel=1e-6)


def test_surface_distances_match_medpy_directed(blobs) -> None:  # noqa: ANN001
    pred, gt = blobs
    p, g = pred == 2, gt == 2
    d = surface_distances(p, g)
    assert d.mean() == pytest.approx(mb.asd(p, g), rel=1e-9)
    d_mm = surface_distances(g, p, spacing=SPACING)
    assert d_mm.mean() == pytest.approx(mb.asd(g, p, voxelspacing=SPACING), rel=1e-9)
    # Number of distances = number of border voxels of the first mask (face connectivity).
    border = g & ~ndimage.binary_erosion(g, ndimage.generate_binary_structure(3, 1))
    assert d_mm.size == int(border.sum())


def test_masks_touching_the_border_match_medpy() -> None:
    pred = np.zeros((12, 10, 9), np.uint8)
    gt = np.zeros_like(pred)
    pred[0:5, 0:5, 0:5] = 1          # corner cube, touches three faces
    gt[0:6, 1:5, 0:4] = 1
    pred[7:12, 3:10, 2:9] = 2        # touches the opposite faces
    gt[8:12, 2:10, 4:9] = 2
    m = case_metrics(pred, gt, 3, SPACING)
    for c in (1, 2):
        p, g = pred == c, gt == c
        assert m[("dhc", "dice", c)] == pytest.approx(100.0 * mb.dc(p, g), rel=1e-12)
        assert m[("dhc", "asd", c)] == pytest.approx(mb.asd(p, g), rel=1e-9)
        assert m[("rigorous", "asd", c)] == pytest.approx(
            mb.assd(p, g, voxelspacing=SPACING), rel=1e-9)
        assert m[("rigorous", "hd95", c)] == pytest.approx(
            mb.hd95(p, g, voxelspacing=SPACING), rel=1e-9)


def test_offset_cubes_by_hand() -> None:
    pred = np.zeros((8, 8, 8), np.uint8)
    gt = np.zeros_like(pred)
    pred[2:5, 2:5, 2:5] = 1   # A: axis-0 layers 2, 3, 4
    gt[3:6, 2:5, 2:5] = 1     # B: axis-0 layers 3, 4, 5
    sp = (2.0, 0.5, 3.0)
    m = case_metrics(pred, gt, 2, sp)
    # Overlap: layers 3 and 4 -> 18 voxels; Dice = 2·18 / (27 + 27) = 2/3.
    assert m[("dhc", "dice", 1)] == pytest.approx(100 * 2 / 3, rel=1e-12)
    assert m[("rigorous", "dice", 1)] == pytest.approx(100 * 2 / 3, rel=1e-12)
    # Border of each cube: 26 voxels (all but its centre). A -> B:
    #  - A's layer 2 (9 voxels): nearest B border is B's layer-3 face, 1 voxel along axis 0;
    #  - A's layer-3 ring (8): on B's layer-3 face -> 0;
    #  - A's layer-4 ring (8): on B's middle-layer ring -> 0;
    #  - A's (4, 3, 3) is B's centre (not border): 1 voxel to any face neighbour.
    # => 10 distances of 1 voxel out of 26: ASD = 10/26. B -> A is the mirror image.
    assert m[("dhc", "asd", 1)] == pytest.approx(10 / 26, rel=1e-12)
    # In mm: the 9 face distances are along axis 0 (2.0 mm); the centre voxel's nearest border
    # neighbour is along axis 1 (0.5 mm). Per direction 9·2.0 + 0.5 = 18.5; both: 37 / 52.
    assert m[("rigorous", "asd", 1)] == pytest.approx(37 / 52, rel=1e-12)
    # HD95 over the 52 pooled distances: 32 × 0, 2 × 0.5, 18 × 2.0; numpy's linear
    # percentile at rank 0.95·51 = 48.45 lies between two 2.0 entries -> 2.0.
    assert m[("rigorous", "hd95", 1)] == pytest.approx(2.0, rel=1e-12)
    d = np.sort(surface_distances(pred == 1, gt == 1))
    assert d.tolist() == [0.0] * 16 + [1.0] * 10


def test_empty_mask_conventions() -> None:
    pred = np.zeros((10, 10, 10), np.uint8)
    gt = np.zeros_like(pred)
    pred[2:5, 2:5, 2:5] = 1   # class 1: predicted, absent from GT
    gt[5:8, 5:8, 5:8] = 3     # class 3: in GT, never predicted
    # class 2: empty in both
    m = case_metrics(pred, gt, 4, SPACING)
    for c in (1, 3):
        assert m[("dhc", "dice", c)] == 0.0
        assert m[("dhc", "asd", c)] == 128.0 == DHC_EMPTY_ASD
        assert m[("rigorous", "dice", c)] == 0.0
        assert math.isnan(m[("rigorous", "asd", c)])
        assert math.isnan(m[("rigorous", "hd95", c)])
    assert m[("dhc", "dice", 2)] == 1.0  # 1, not 100 (reference quirk, §11)
    assert m[("dhc", "asd", 2)] == 0.0
    for met in ("dice", "asd", "hd95"):
        assert math.isnan(m[("rigorous", met, 2)])


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        case_metrics(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8), 2, SPACING)
