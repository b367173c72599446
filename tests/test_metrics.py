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

import dhcbench.evaluation.metrics as metrics_module
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


# -- the fast search of case_metrics against medpy ------------------------------------------------
#
# case_metrics finds each border voxel's nearest border voxel by scanning a ball of offsets,
# then a k-d tree for the voxels beyond it (module docstring). Dice and the dhc ASD (voxel
# units: square roots of integers) are bit for bit medpy's; in mm a distance could differ in
# the last bit when two border voxels are nearest at the same true distance (scipy's EDT and
# the search may pick either, and their float64 lengths can differ by one ulp), hence
# ``rel=1e-12`` there (observed: exact equality everywhere, ties included).

#: Voxel shares (%) of the 13 Synapse organs in an abdominal CT crop (liver 6 %, adrenals 0.03 %).
ORGAN_SHARES = [1.2, 0.8, 0.8, 0.2, 0.12, 6.0, 2.0, 0.5, 0.4, 0.25, 0.4, 0.03, 0.03]


def _ellipsoid(rng, shape, voxels, center):  # noqa: ANN001, ANN202
    """An ellipsoid-ish blob of about ``voxels`` voxels: (slices, mask) clipped to ``shape``."""
    ratios = np.array([1.0, rng.uniform(0.6, 1.5), rng.uniform(0.6, 1.5)])
    radii = (3 * voxels / (4 * np.pi * ratios.prod())) ** (1 / 3) * ratios
    lo = np.maximum(0, (center - 1.4 * radii).astype(int))
    hi = np.minimum(shape, (center + 1.4 * radii).astype(int) + 2)
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    f = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii, strict=True))
    noise = ndimage.gaussian_filter(rng.standard_normal(f.shape), 2.0)
    mask = f + 0.35 * noise / (noise.std() + 1e-9) < 1.0
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), mask


def organ_case(seed: int, shape=(40, 80, 80)):  # noqa: ANN001, ANN201
    """Ground truth with 13 organ-like classes and a prediction that errs like a network.

    Each predicted organ is shifted by up to a voxel, dilated on one half and eroded on the
    other; false-positive blobs lie anywhere (often far from the organ); the liver (6) sits
    in a corner (touches three faces). Class 12 is never predicted, class 11 predicted but
    absent from the truth, class 13 predicted as one stray voxel more; 14 is empty on both
    sides (num_classes 15).
    """
    rng = np.random.default_rng(seed)
    size = np.array(shape)
    gt = np.zeros(shape, np.uint8)
    for c, share in enumerate(ORGAN_SHARES, start=1):
        center = np.zeros(3) if c == 6 else rng.uniform(0.15, 0.85, 3) * size
        sl, mask = _ellipsoid(rng, size, share / 100 * size.prod() * (8 if c == 6 else 1), center)
        gt[sl][mask] = c
    pred = np.zeros_like(gt)
    cross = ndimage.generate_binary_structure(3, 1)
    for c in range(1, len(ORGAN_SHARES) + 1):
        m = np.roll(gt == c, tuple(rng.integers(-1, 2, 3)), axis=(0, 1, 2))
        half = np.zeros_like(m)
        cut = [slice(None)] * 3
        cut[c % 3] = slice(0, shape[c % 3] // 2)
        half[tuple(cut)] = True
        m = np.where(half, ndimage.binary_dilation(m, cross, int(rng.integers(1, 3))),
                     ndimage.binary_erosion(m, cross))
        for _ in range(int(rng.integers(0, 3))):
            sl, blob = _ellipsoid(rng, size, rng.uniform(5, 60), rng.uniform(0, 1, 3) * size)
            m[sl] |= blob
        pred[m & (pred == 0)] = c
    pred[pred == 12] = 0
    gt[gt == 11] = 0
    pred[tuple(int(n) - 1 for n in shape)] = 13
    return pred, gt


def assert_matches_medpy(pred, gt, num_classes, spacing, m=None):  # noqa: ANN001, ANN201
    """Every value of case_metrics against medpy (the empty-mask conventions aside)."""
    m = case_metrics(pred, gt, num_classes, spacing) if m is None else m
    checked = 0
    for c in range(1, num_classes):
        p, g = pred == c, gt == c
        if not (p.any() and g.any()):
            assert m[("dhc", "asd", c)] == (DHC_EMPTY_ASD if p.any() or g.any() else 0.0)
            continue
        assert m[("dhc", "dice", c)] == 100.0 * mb.dc(p, g)
        assert m[("rigorous", "dice", c)] == 100.0 * mb.dc(p, g)
        assert m[("dhc", "asd", c)] == mb.asd(p, g)
        assert m[("rigorous", "asd", c)] == pytest.approx(
            mb.assd(p, g, voxelspacing=spacing), rel=1e-12, abs=0)
        assert m[("rigorous", "hd95", c)] == pytest.approx(
            mb.hd95(p, g, voxelspacing=spacing), rel=1e-12, abs=0)
        checked += 1
    return checked


@pytest.fixture(scope="module")
def organs():  # noqa: ANN201
    pred, gt = organ_case(0)
    for c in range(1, 11):
        assert (pred == c).any() and (gt == c).any()
    assert not (pred == 12).any() and (gt == 12).any()
    assert (pred == 11).any() and not (gt == 11).any()
    return pred, gt


def test_organ_like_case_matches_medpy(organs) -> None:  # noqa: ANN001
    pred, gt = organs
    assert assert_matches_medpy(pred, gt, 15, (2.5, 0.8, 0.8)) == 11  # classes 1-10 and 13
    m = case_metrics(pred, gt, 15, (2.5, 0.8, 0.8))
    assert m[("dhc", "dice", 14)] == 1.0 and math.isnan(m[("rigorous", "hd95", 14)])
    assert m[("dhc", "asd", 12)] == m[("dhc", "asd", 11)] == DHC_EMPTY_ASD


def test_thick_slices_organ_case_matches_medpy() -> None:
    pred, gt = organ_case(1, shape=(16, 48, 48))
    assert assert_matches_medpy(pred, gt, 15, (7.5, 4, 4)) >= 8


@pytest.mark.parametrize("offsets", [1, 7, 40])
def test_search_and_tree_give_the_same_values(organs, monkeypatch, offsets) -> None:  # noqa: ANN001
    # With a ball of 1 offset every distance but 0 comes from the k-d tree; with 7 or 40
    # both paths share the work. All must equal the default (400), bit for bit.
    pred, gt = organs
    default = case_metrics(pred, gt, 15, (2.5, 0.8, 0.8))
    monkeypatch.setattr(metrics_module, "SEARCH_OFFSETS", offsets)
    small = case_metrics(pred, gt, 15, (2.5, 0.8, 0.8))
    assert small.keys() == default.keys()
    for k, v in default.items():
        assert small[k] == v or (math.isnan(v) and math.isnan(small[k])), k


@pytest.mark.parametrize("spacing", [(2.5, 0.8, 0.8), (7.5, 4, 4), (1, 1, 1), (0.7, 0.7, 3.0)])
@pytest.mark.parametrize("seed", [2, 3])
def test_random_blobs_match_medpy(spacing, seed) -> None:  # noqa: ANN001
    gt, noise = blob_labels(seed, shape=(14, 22, 18), k=5)
    pred, _ = blob_labels(seed + 10, shape=(14, 22, 18), k=5, base=noise, mix=1.0)
    pred[0, 0, 0] = 5  # a stray voxel in a corner
    assert assert_matches_medpy(pred, gt, 6, spacing) >= 3


@pytest.mark.parametrize("spacing", [(2.5, 0.8, 0.8), (7.5, 4, 4)])
def test_single_voxels_near_and_far_match_medpy(spacing) -> None:  # noqa: ANN001
    pred = np.zeros((30, 40, 40), np.uint8)
    gt = np.zeros_like(pred)
    pred[5, 5, 5] = gt[5, 6, 5] = 1         # adjacent voxels
    pred[0, 0, 0] = gt[29, 39, 39] = 2      # opposite corners: beyond the search ball
    pred[10, 20, 20] = gt[10, 20, 20] = 3   # the same voxel
    gt[12:15, 20:30, 20:30] = 3             # ... plus a slab nearby in the truth
    assert assert_matches_medpy(pred, gt, 4, spacing) == 3


def test_label_types_and_foreign_values() -> None:
    pred, gt = organ_case(2, shape=(12, 24, 24))
    ref = case_metrics(pred, gt, 15, SPACING)
    wide = case_metrics(pred.astype(np.int64), gt.astype(np.int32), 15, SPACING)
    assert all(wide[k] == v or (math.isnan(v) and math.isnan(wide[k])) for k, v in ref.items())
    # Values outside the classes (an ignore label, negatives) belong to no class.
    p, g = pred.astype(np.int16), gt.astype(np.int16)
    p[:3] = np.where(p[:3] == 0, 255, p[:3])
    g[-2:] = np.where(g[-2:] == 0, -1, g[-2:])
    assert assert_matches_medpy(p, g, 15, SPACING) >= 5
    p8 = np.where(p == 255, 255, p).astype(np.uint8)
    assert assert_matches_medpy(p8, gt, 15, SPACING) >= 5
