"""Per-case, per-class segmentation metrics under the two evaluation contracts.

``dhc`` reproduces the reference's evaluate_Ntimes.py (reference §11): Dice = 100·medpy dc,
ASD = medpy ``asd(pred, gt)`` (directed: prediction surface to ground-truth surface) in
voxels of the evaluation grid (no spacing), connectivity 1; one side empty -> Dice 0 and
ASD 128; both empty -> Dice **1** (not 100) and ASD 0.

``rigorous``: Dice in % with both-empty undefined; symmetric ASD (medpy ``assd``) and HD95
in mm from the voxel spacing; every undefined value (an empty mask on either side for the
distances, both empty for Dice) is NaN and excluded from averages.

:func:`surface_distances` is medpy's computation (border = mask minus its erosion, then a
Euclidean distance transform), on the bounding box of the two masks with a one-voxel margin.
:func:`case_metrics` gives the same numbers without a distance transform per class:

1. the borders of all classes of a label map come from neighbour comparisons (a voxel is
   on its class's border when a face neighbour has another label or it lies on the volume's
   edge: medpy's erosion with connectivity 1 and background outside);
2. the nearest border voxel of the same class on the other side is searched among the
   integer offsets of a ball (about :data:`SEARCH_OFFSETS`), by increasing length, in a
   padded volume of the border voxels' labels: the first hit is the nearest one;
3. the few voxels without a hit (e.g. false-positive blobs far from the organ) query a
   k-d tree of that class's border voxels (exact nearest neighbours).

Each distance is computed from its integer offset with the arithmetic of scipy's EDT
(offset × spacing, squared, summed along the axes in order, square root) and kept in medpy's
order (C order of the border voxels): values in voxels are bit for bit medpy's; in mm, a
voxel with two nearest border voxels at the same true distance may differ in the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

CONTRACTS = ("dhc", "rigorous")
#: ASD given by the dhc contract when one of the two masks is empty (reference §11).
DHC_EMPTY_ASD = 128.0
#: About how many offsets (a ball around each border voxel) are searched before the k-d tree.
SEARCH_OFFSETS = 400
#: Largest search reach along one axis, in voxels (bounds the padding of the lookup volume).
_MAX_REACH = 32
#: Most (voxel, offset) pairs gathered at once (memory of one search step: 8 bytes each).
_CHUNK = 1 << 21


def _bbox(slices: Sequence[slice | None], shape: Sequence[int], margin: int = 1
          ) -> tuple[slice, ...]:
    """Union of bounding boxes (``None`` entries skipped), grown by ``margin``, clipped."""
    boxes = [s for s in slices if s is not None]
    return tuple(slice(max(0, min(b[axis].start for b in boxes) - margin),
                       min(size, max(b[axis].stop for b in boxes) + margin))
                 for axis, size in enumerate(shape))


def _border(mask: np.ndarray, connectivity: int) -> np.ndarray:
    footprint = ndimage.generate_binary_structure(mask.ndim, connectivity)
    return mask & ~ndimage.binary_erosion(mask, structure=footprint, iterations=1)


def surface_distances(
    a: np.ndarray,
    b: np.ndarray,
    spacing: Sequence[float] | None = None,
    connectivity: int = 1,
    box: tuple[slice, ...] | None = None,
) -> np.ndarray:
    """Distances from every border voxel of ``a`` to the nearest border voxel of ``b``.

    medpy's definition (border = mask minus its erosion with the given connectivity).
    ``a`` and ``b`` are masks of the same shape, e.g. ``(D, H, W)``, both non-empty;
    ``spacing`` is the voxel size per axis in mm (None measures in voxels). ``box``
    restricts the computation to a region containing both masks (computed when None).
    Returns a 1-D float64 array, one distance per border voxel of ``a``.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if box is None:
        box = _bbox([ndimage.find_objects(a.astype(np.uint8))[0],
                     ndimage.find_objects(b.astype(np.uint8))[0]], a.shape)
    a_border = _border(a[box], connectivity)
    b_border = _border(b[box], connectivity)
    dt = ndimage.distance_transform_edt(~b_border, sampling=spacing)
    return dt[a_border]


def dice_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks as a fraction.

    ``a`` and ``b`` are boolean masks of the same shape; returns 2|A∩B| / (|A| + |B|) in
    [0, 1] (not %), NaN when both are empty.
    """
    sa, sb = int(a.sum()), int(b.sum())
    if sa + sb == 0:
        return math.nan
    return 2.0 * int(np.logical_and(a, b).sum()) / (sa + sb)


# -- the search behind case_metrics -------------------------------------------------------------


def _edt_lengths(offsets: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Lengths of integer offsets ``(..., ndim)`` as scipy's EDT computes them (bit for bit)."""
    d = offsets.astype(np.float64)
    if scale is not None:
        d = d * scale
    d = d * d
    total = d[..., 0]
    for axis in range(1, d.shape[-1]):
        total = total + d[..., axis]
    return np.sqrt(total)


def _class_borders(labels: np.ndarray) -> np.ndarray:
    """Boolean map of the voxels on the border of their own (non-zero) class.

    Neighbours along every axis are compared on the flat array: a pair that wraps around
    an axis joins two voxels on that axis's edges, which are border voxels anyway.
    """
    flat = labels.ravel()
    out = np.zeros(flat.size, dtype=bool)
    stride = 1
    for size in reversed(labels.shape):
        differ = flat[:-stride] != flat[stride:]
        out[:-stride] |= differ
        out[stride:] |= differ
        stride *= size
    out = out.reshape(labels.shape)
    for axis, size in enumerate(labels.shape):
        edges = [slice(None)] * labels.ndim
        edges[axis] = [0, size - 1]
        out[tuple(edges)] = True
    out &= labels != 0
    return out


def _search_ball(scale: np.ndarray | None, shape: Sequence[int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer offsets of a ball sorted by length, their lengths and the reach per axis.

    The ball holds about :data:`SEARCH_OFFSETS` offsets and lies inside the box of the
    reach, so a voxel with no hit in it has its nearest border voxel farther than any of
    its offsets. Returns ``(offsets (K, ndim), lengths (K,), reach (ndim,))``.
    """
    s = np.ones(len(shape)) if scale is None else scale
    radius = (SEARCH_OFFSETS * math.gamma(len(shape) / 2 + 1) * float(np.prod(s))
              / math.pi ** (len(shape) / 2)) ** (1 / len(shape))
    reach = np.minimum(np.floor(radius / s), np.minimum(np.array(shape) - 1, _MAX_REACH))
    reach = reach.astype(np.int64)
    # Offsets outside the box are at least this long (an axis spanning the volume bounds none).
    outside = min([(r + 1) * si for r, si, n in zip(reach, s, shape, strict=True) if r < n - 1],
                  default=math.inf)
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
    offsets = np.stack(grids, axis=-1).reshape(-1, len(shape))
    lengths = _edt_lengths(offsets, scale)
    keep = lengths < min(radius, outside)
    order = np.argsort(lengths[keep], kind="stable")
    return offsets[keep][order], lengths[keep][order], reach


class _Borders:
    """The border voxels of every class of one label map, for the nearest-border search.

    ``labels`` and ``coords`` are each border voxel's class and index (C order);
    ``linear`` its flat index in ``lookup``, a copy of the label map padded by ``reach``
    voxels per side that keeps only the border voxels' labels (0 elsewhere).
    """

    def __init__(self, labels: np.ndarray, reach: np.ndarray) -> None:
        border = _class_borders(labels)
        flat = np.flatnonzero(border)
        self.labels = labels.ravel()[flat]
        self.coords = np.stack(np.unravel_index(flat, labels.shape), axis=1)
        inner = tuple(slice(r, r + n) for r, n in zip(reach, labels.shape, strict=True))
        lookup = np.zeros(tuple(n + 2 * r for n, r in zip(labels.shape, reach, strict=True)),
                          labels.dtype)
        np.multiply(labels, border, out=lookup[inner])
        self.strides = np.array(lookup.strides, dtype=np.int64) // lookup.itemsize
        self.lookup = lookup.ravel()
        self.linear = (self.coords + reach) @ self.strides


def _scan(linear: np.ndarray, labels: np.ndarray, lookup: np.ndarray, steps: np.ndarray,
          lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit of each voxel's own label in ``lookup`` along ``steps`` (sorted by length).

    Returns the hit's length per voxel (inf without one) and the voxels without a hit.
    Offsets are tried in growing batches (1, 1, 2, 4, … 64), most voxels hitting early.
    """
    out = np.full(len(linear), np.inf)
    rest = np.arange(len(linear))
    start, batch = 0, 1
    while len(rest) and start < len(steps):
        k = min(max(_CHUNK // len(rest), 1), batch, len(steps) - start)
        batch = min(2 * batch, 64) if start else 1
        hit = lookup[linear[:, None] + steps[None, start:start + k]] == labels[:, None]
        first = hit.argmax(axis=1)
        found = hit[np.arange(len(rest)), first]
        out[rest[found]] = lengths[start + first[found]]
        rest, linear, labels = rest[~found], linear[~found], labels[~found]
        start += k
    return out, rest


def _directed(src: _Borders, dst: _Borders, scale: np.ndarray | None,
              ball: tuple[np.ndarray, np.ndarray, np.ndarray], wanted: np.ndarray
              ) -> np.ndarray:
    """Distance from each border voxel of ``src`` to the nearest ``dst`` one of its class.

    Returns float64 aligned with ``src.labels``; NaN where the class is not ``wanted``.
    """
    query = wanted[src.labels]
    coords, labels = src.coords[query], src.labels[query]
    dist, rest = _scan(src.linear[query], labels, dst.lookup, ball[0] @ dst.strides, ball[1])
    s = np.ones(coords.shape[1]) if scale is None else scale
    for c in np.unique(labels[rest]):
        far = rest[labels[rest] == c]
        targets = dst.coords[dst.labels == c]
        tree = cKDTree(targets * s, balanced_tree=False, compact_nodes=False)
        _, nearest = tree.query(coords[far] * s)
        dist[far] = _edt_lengths(targets[nearest] - coords[far], scale)
    out = np.full(len(src.labels), np.nan)
    out[query] = dist
    return out


def _compact(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``labels`` as the smallest unsigned type holding ``num_classes`` (uint8 kept as is).

    Other values (negative, too large, fractional) become ``num_classes``: no class.
    """
    dtype = np.min_scalar_type(num_classes)
    if labels.dtype == dtype == np.uint8:
        return np.ascontiguousarray(labels)
    inside = (labels >= 0) & (labels < num_classes)
    if labels.dtype.kind == "f":
        inside &= labels == np.floor(labels)
    return np.where(inside, labels, num_classes).astype(dtype)


def _empty_values(c: int, both_empty: bool) -> dict[tuple[str, str, int], float]:
    """The conventional values of class ``c`` when at least one of its masks is empty."""
    dice, asd = (1.0, 0.0) if both_empty else (0.0, DHC_EMPTY_ASD)
    return {("dhc", "dice", c): dice, ("dhc", "asd", c): asd,
            ("rigorous", "dice", c): math.nan if both_empty else 0.0,
            ("rigorous", "asd", c): math.nan, ("rigorous", "hd95", c): math.nan}


def case_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    spacing: Sequence[float],
) -> dict[tuple[str, str, int], float]:
    """Metrics of one case for every foreground class under both contracts.

    ``pred`` and ``gt`` are integer label maps ``(D, H, W)`` of the same shape, values
    below ``num_classes``; ``spacing`` is the voxel size in mm along (D, H, W). Returns
    ``{(contract, metric, class_index): value}`` with metrics ``dice`` (%) and ``asd``
    (voxels, directed) under dhc and ``dice`` (%), ``asd``, ``hd95`` (mm) under rigorous
    (asd symmetric as medpy's ``assd``: the mean of both directions' distances pooled).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    pred, gt = _compact(pred, num_classes), _compact(gt, num_classes)
    sp = np.asarray(spacing, dtype=np.float64)
    size_p = np.array([np.count_nonzero(pred == c) for c in range(num_classes)])
    differ = np.flatnonzero(pred != gt)
    inter = size_p - np.bincount(pred.ravel()[differ], minlength=num_classes)[:num_classes]
    size_g = inter + np.bincount(gt.ravel()[differ], minlength=num_classes)[:num_classes]
    wanted = np.zeros(max(256, num_classes + 1), dtype=bool)  # indexed by any label
    wanted[1:num_classes] = (size_p[1:] > 0) & (size_g[1:] > 0)
    ball_vox, ball_mm = _search_ball(None, pred.shape), _search_ball(sp, pred.shape)
    reach = np.maximum(ball_vox[2], ball_mm[2])
    bp, bg = _Borders(pred, reach), _Borders(gt, reach)
    d_vox = _directed(bp, bg, None, ball_vox, wanted)
    d_pg = _directed(bp, bg, sp, ball_mm, wanted)
    d_gp = _directed(bg, bp, sp, ball_mm, wanted)
    out: dict[tuple[str, str, int], float] = {}
    for c in range(1, num_classes):
        sa, sb = int(size_p[c]), int(size_g[c])
        if not wanted[c]:
            out.update(_empty_values(c, sa + sb == 0))
            continue
        dice = 100.0 * (2.0 * int(inter[c]) / (sa + sb))
        on_p, on_g = bp.labels == c, bg.labels == c
        both = np.concatenate([d_pg[on_p], d_gp[on_g]])
        out.update({
            ("dhc", "dice", c): dice,
            ("dhc", "asd", c): float(d_vox[on_p].mean()),
            ("rigorous", "dice", c): dice,
            ("rigorous", "asd", c): float(both.mean()),
            ("rigorous", "hd95", c): float(np.percentile(both, 95)),
        })
    return out
