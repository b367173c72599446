"""The phantom's anatomy: where the body, the spine and the 13 organs lie in a case.

The organs are laid out once, in a body frame, and every case draws its own global scale and
shift, body outline and per-organ jitter from the case's random generator. Solid organs are
ellipsoids deformed by smooth noise; the aorta, IVC, esophagus, portal/splenic veins and
pancreas are curved tubes. Intensities are not decided here
(:mod:`dhcbench.datasets.phantom_synthesis` paints them).

Coordinates: a body frame in [-1, 1]^3 with z cranio-caudal (superior = -1), y
anterior-posterior (anterior = -1) and x right-left (patient right = -1); array axes are
(z, y, x) = (D, H, W). Distances and radii below are in body-frame units (1 = half the
body's extent), not in mm.

The order in which :class:`CaseGeometry` draws its random numbers is part of the generator's
output: changing it changes every case, so it needs a new generator version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dhcbench.datasets.classes import SYNAPSE_CLASSES

#: How much the field of view is zoomed onto the abdomen: the volume spans [-1/ZOOM, 1/ZOOM]
#: of the body frame, so the organs cover more voxels (the body's sides are cut, as in CT).
ZOOM = 1.35


@dataclass(frozen=True)
class Ellipsoid:
    """A solid organ: an ellipsoid whose surface is deformed by the case's smooth noise.

    Centre and radii are in body-frame units; each case jitters the centre, scales each
    radius by 0.85-1.15 and rotates the organ in the axial plane by up to 0.3 rad.
    """

    label: int
    center: tuple[float, float, float]  # (z, y, x) in the body frame
    radii: tuple[float, float, float]
    wobble: float  # amplitude of the smooth shape deformation
    jitter: float = 0.045  # std of the centre's per-case shift, body-frame units


@dataclass(frozen=True)
class Tube:
    """A tube along ``axis`` (0 = z, 2 = x) between t0 and t1.

    Its centre line in the two other coordinates is offset + slope·t + bend·sin(3t + phase),
    the phase drawn per case; its radius goes linearly from ``radius[0]`` at t0 to
    ``radius[1]`` at t1. All in body-frame units.
    """

    label: int
    axis: int
    t_range: tuple[float, float]
    offset: tuple[float, float]  # centre of the two other coordinates at t = 0
    slope: tuple[float, float]
    bend: tuple[float, float]  # amplitude of the sinusoidal bend of the two coordinates
    radius: tuple[float, float]  # radius at t0 and at t1 (linear in between)


# Organ layout, tuned so that the mean voxel proportions follow Synapse's imbalance (see
# ``class_proportions``); label values follow reference §1 (1 spleen … 13 left adrenal).
ELLIPSOIDS = {
    "liver": Ellipsoid(6, (-0.10, -0.02, -0.38), (0.66, 0.64, 0.58), 0.20),
    "spleen": Ellipsoid(1, (-0.22, 0.30, 0.56), (0.36, 0.26, 0.18), 0.15),
    "right_kidney": Ellipsoid(2, (0.28, 0.44, -0.42), (0.36, 0.20, 0.17), 0.10),
    "left_kidney": Ellipsoid(3, (0.22, 0.44, 0.44), (0.36, 0.20, 0.17), 0.10),
    "stomach": Ellipsoid(7, (-0.30, -0.18, 0.30), (0.36, 0.28, 0.28), 0.15),
    "gallbladder": Ellipsoid(4, (0.22, -0.36, -0.26), (0.25, 0.17, 0.15), 0.10),
    # The adrenal glands sit on the kidneys' upper poles: their centres vary a third as much.
    "right_adrenal_gland": Ellipsoid(12, (-0.04, 0.31, -0.27), (0.165, 0.112, 0.08), 0.05,
                                     0.015),
    "left_adrenal_gland": Ellipsoid(13, (-0.06, 0.31, 0.26), (0.165, 0.112, 0.08), 0.05,
                                    0.015),
}
TUBES = {
    "esophagus": Tube(
        5, 0, (-1.0, -0.30), (0.40, 0.10), (0.25, 0.10), (0.03, 0.03), (0.10, 0.11)
    ),
    "aorta": Tube(8, 0, (-1.0, 1.0), (0.38, 0.10), (0.0, 0.0), (0.02, 0.03), (0.11, 0.10)),
    "inferior_vena_cava": Tube(
        9, 0, (-0.75, 1.0), (0.30, -0.17), (0.02, 0.0), (0.02, 0.02), (0.10, 0.10)
    ),
    "portal_splenic_veins": Tube(
        10, 2, (-0.22, 0.48), (0.02, 0.12), (0.0, 0.15), (0.05, 0.05), (0.12, 0.10)
    ),
    "pancreas": Tube(
        11, 2, (-0.20, 0.45), (0.14, 0.02), (-0.08, 0.12), (0.04, 0.05), (0.19, 0.11)
    ),
}
#: Painting order: later organs overwrite earlier ones where they overlap.
PAINT_ORDER = (
    "liver",
    "spleen",
    "right_kidney",
    "left_kidney",
    "stomach",
    "gallbladder",
    "pancreas",
    "portal_splenic_veins",
    "inferior_vena_cava",
    "aorta",
    "esophagus",
    "right_adrenal_gland",
    "left_adrenal_gland",
)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-smoothed white noise.

    Args:
        rng: the case's generator; draws ``prod(shape)`` standard normals.
        shape: the array shape, (D, H, W) for a volume.
        sigma: the Gaussian's standard deviation in voxels (the noise's correlation length).

    Returns:
        A float32 array of ``shape``, normalised to mean 0 and standard deviation 1.
    """
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def _rotation_zyx(angle: float) -> np.ndarray:
    """Rotation about the z axis (in the axial plane) acting on (z, y, x) vectors."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@dataclass(frozen=True)
class BodyRegions:
    """The body's cross-section in one case, as boolean (D, H, W) masks.

    ``radius2`` is the squared elliptic radius of every voxel in the axial plane (float32,
    1 at the skin): below 0.80 lies the abdominal cavity, 0.80 to 0.90 the muscle wall, 0.90
    to 1 subcutaneous fat. The spine and the paraspinal muscles are elliptic columns behind
    the cavity; no organ is painted over them.
    """

    radius2: np.ndarray
    inside: np.ndarray  # inside the skin
    inner: np.ndarray  # inside the muscle wall: where organs may lie
    spine: np.ndarray
    paraspinal: np.ndarray

    @property
    def organ_space(self) -> np.ndarray:
        """Where organs may be painted: the cavity less the spine and paraspinal muscles."""
        return self.inner & ~self.spine & ~self.paraspinal


class CaseGeometry:
    """One case's random geometry: global scale and shift, body outline, organ shapes.

    Construction draws, in this order, the global scale and shift, the smooth wobble field
    that deforms every organ's surface and the body outline's two radii. ``z``, ``y`` and
    ``x`` are the body-frame coordinates of every voxel after the case's transform (float32
    (D, H, W) arrays); each :meth:`ellipsoid` and :meth:`tube` call draws that organ's own
    jitter, so the organs must be asked for in :data:`PAINT_ORDER`.
    """

    def __init__(self, rng: np.random.Generator, size: tuple[int, int, int]) -> None:
        self.rng = rng
        self.size = size
        axes = [np.linspace(-1.0 / ZOOM, 1.0 / ZOOM, n, dtype=np.float32) for n in size]
        scale = rng.uniform(0.88, 1.12, size=3)
        shift = rng.normal(0.0, 0.045, size=3)
        # Body-frame coordinates of every voxel, after the per-case global transform.
        self.z, self.y, self.x = np.meshgrid(
            *[(a - s) / k for a, s, k in zip(axes, shift, scale, strict=True)], indexing="ij"
        )
        sigma = max(1.0, min(size) / 10.0)
        self.wobble = smooth_noise(rng, size, sigma)
        self.body_rx = rng.uniform(0.88, 0.96)
        self.body_ry = rng.uniform(0.70, 0.78)

    def body_regions(self) -> BodyRegions:
        """The body outline, cavity, spine and paraspinal muscles (draws no random numbers)."""
        x, y = self.x, self.y
        radius2 = (x / self.body_rx) ** 2 + (y / self.body_ry) ** 2
        return BodyRegions(
            radius2=radius2,
            inside=radius2 < 1.0,
            inner=radius2 < 0.80,
            spine=(x / 0.14) ** 2 + ((y - 0.58) / 0.12) ** 2 < 1.0,
            paraspinal=((np.abs(x) - 0.24) / 0.11) ** 2 + ((y - 0.58) / 0.10) ** 2 < 1.0,
        )

    def ellipsoid(self, e: Ellipsoid) -> np.ndarray:
        """The boolean (D, H, W) mask of a solid organ, jittered and rotated in-plane."""
        rng = self.rng
        center = np.asarray(e.center) + rng.normal(0.0, e.jitter, size=3)
        radii = np.asarray(e.radii) * rng.uniform(0.85, 1.15, size=3)
        rot = _rotation_zyx(rng.uniform(-0.3, 0.3))
        d = np.stack([self.z - center[0], self.y - center[1], self.x - center[2]], axis=-1)
        d = d @ rot.T.astype(np.float32)
        q = ((d / radii.astype(np.float32)) ** 2).sum(axis=-1)
        return q < 1.0 + e.wobble * self.wobble

    def tube(self, t: Tube) -> np.ndarray:
        """The boolean (D, H, W) mask of a tubular organ, its centre line jittered and bent."""
        rng = self.rng
        coords = (self.z, self.y, self.x)
        along = coords[t.axis]
        others = [coords[i] for i in range(3) if i != t.axis]
        jitter = rng.normal(0.0, 0.04, size=2)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        t0, t1 = t.t_range
        frac = np.clip((along - t0) / (t1 - t0), 0.0, 1.0)
        radius = (t.radius[0] + (t.radius[1] - t.radius[0]) * frac) * rng.uniform(0.88, 1.12)
        dist2 = np.zeros_like(along)
        for k in range(2):
            centre = (
                t.offset[k] + jitter[k] + t.slope[k] * along
                + t.bend[k] * np.sin(3.0 * along + phase[k])
            )
            dist2 += (others[k] - centre) ** 2
        inside = dist2 < (radius * (1.0 + 0.1 * self.wobble)) ** 2
        return inside & (along >= t0) & (along <= t1)

    def paint_labels(self, organ_space: np.ndarray) -> np.ndarray:
        """The label map: every organ in :data:`PAINT_ORDER`, clipped to ``organ_space``.

        Args:
            organ_space: boolean (D, H, W), where organs may lie
                (:attr:`BodyRegions.organ_space`).

        Returns:
            uint8 (D, H, W) Synapse class indices (0 background, 1 spleen … 13 left adrenal
            gland); where organs overlap, the later one in the painting order wins.
        """
        label = np.zeros(self.size, dtype=np.uint8)
        for name in PAINT_ORDER:
            shape = ELLIPSOIDS.get(name)
            mask = self.ellipsoid(shape) if shape is not None else self.tube(TUBES[name])
            label[mask & organ_space] = SYNAPSE_CLASSES.index(name)
        return label
