"""The phantom's volume synthesis: one seeded CT-like case from the anatomy of a case.

A case is made in four steps, each drawing from the case's one random generator in a fixed
order (the order is part of the output, see :data:`GENERATOR_VERSION`):

1. the geometry (:class:`~dhcbench.datasets.phantom_anatomy.CaseGeometry`);
2. the background tissue: air, subcutaneous fat, the muscle wall with rib sections,
   visceral fat, enhancing bowel loops, the spine and the paraspinal muscles;
3. the organs: the label map, then HU-like intensities with overlapping per-organ
   distributions and a shared texture, a hollow stomach and air in the esophagus;
4. the acquisition: partial-volume blur, a smooth additive bias field and noise.

So no intensity threshold separates the classes: location and shape must be learned.
Intensities are in Hounsfield units (HU), the grid spans :data:`FIELD_OF_VIEW_MM`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dhcbench.datasets.classes import SYNAPSE_CLASSES
from dhcbench.datasets.phantom_anatomy import (
    PAINT_ORDER,
    BodyRegions,
    CaseGeometry,
    smooth_noise,
)

#: Bumped whenever the generator's output changes, so that no older cache is reused.
GENERATOR_VERSION = 3
#: Physical extent of the phantom field of view in mm (z, y, x); the spacing is this / size.
FIELD_OF_VIEW_MM = (180.0, 240.0, 240.0)


@dataclass(frozen=True)
class PhantomConfig:
    """What determines the generated phantom: every field changes the cached data.

    ``volume_size`` is (D, H, W); the default 24×60×60 (thick axial slices, as abdominal CT)
    is 1.5× the default patch 16×48×48 in depth and 1.25× in-plane, the reference's
    in-plane ratio of 160 to 128. ``num_cases`` are split 2/3 train, 2/15 eval, 1/5 test
    (20/4/6 for 30, as Synapse).
    """

    volume_size: tuple[int, int, int] = (24, 60, 60)
    num_cases: int = 30
    seed: int = 0

    def key(self) -> str:
        """Folder name of the cached dataset, derived from every field."""
        d, h, w = self.volume_size
        return f"phantom-v{GENERATOR_VERSION}-{d}x{h}x{w}-n{self.num_cases}-s{self.seed}"


# (mean HU, texture std HU) per class; neighbours overlap on purpose (liver / spleen /
# pancreas, aorta / kidney / portal vein, adrenal / esophagus / muscle / bowel).
_INTENSITY = {
    "spleen": (128.0, 12.0),
    "right_kidney": (190.0, 26.0),
    "left_kidney": (190.0, 26.0),
    "gallbladder": (12.0, 8.0),
    "esophagus": (75.0, 10.0),  # the wall; air in its centre is set separately
    "liver": (108.0, 14.0),
    "stomach": (122.0, 12.0),  # the wall; the lumen is set separately
    "aorta": (205.0, 20.0),
    "inferior_vena_cava": (168.0, 14.0),
    "portal_splenic_veins": (178.0, 14.0),
    "pancreas": (98.0, 12.0),
    "right_adrenal_gland": (75.0, 10.0),
    "left_adrenal_gland": (75.0, 10.0),
}
_STOMACH_LUMEN_HU = (0.0, 10.0)
ESOPHAGUS_AIR_HU = -400.0
#: Acquisition noise (std, HU) and amplitude of the smooth additive bias field (HU).
NOISE_HU = 10.0
BIAS_HU = 20.0
#: Visceral fat between the organs: (mean, std of its smooth variation) in HU.
VISCERAL_HU = (-80.0, 25.0)


def generate_case(config: PhantomConfig, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One phantom case of ``config``: a CT-like image and its organ labels.

    Deterministic in (config.seed, index, config.volume_size): the case's generator is
    seeded with exactly those numbers, so any case can be regenerated alone.

    Args:
        config: the phantom's size and seed (``num_cases`` is not read).
        index: the case's position, 0-based; ``phantom_0001`` is index 0.

    Returns:
        ``(image, label)``: float32 (D, H, W) intensities in HU and uint8 (D, H, W) Synapse
        class indices (0 background … 13 left adrenal gland), (D, H, W) =
        ``config.volume_size``.
    """
    size = tuple(int(s) for s in config.volume_size)
    rng = np.random.default_rng([config.seed, index, *size])
    case = CaseGeometry(rng, size)  # type: ignore[arg-type]
    body = case.body_regions()
    image = _background_tissue(rng, case, body)
    label = case.paint_labels(body.organ_space)
    _paint_organ_intensities(rng, image, label)
    return _acquire(rng, image), label


def _background_tissue(rng: np.random.Generator, case: CaseGeometry, body: BodyRegions
                       ) -> np.ndarray:
    """The float32 (D, H, W) HU image before the organs are painted in.

    Air, subcutaneous fat, muscle wall with rib sections, visceral fat, spine, muscles,
    enhancing bowel loops (soft-tissue blobs that compete with the organs' intensities, as
    the ribs compete with the enhanced vessels and kidneys).
    """
    size = case.size
    image = np.full(size, -1000.0, dtype=np.float32)
    image[body.inside] = -95.0
    image[body.inside & (body.radius2 < 0.90)] = 45.0
    visceral = VISCERAL_HU[1] * smooth_noise(rng, size, max(1.0, min(size) / 12.0)) \
        + VISCERAL_HU[0]
    image[body.inner] = visceral[body.inner]
    bowel = smooth_noise(rng, size, max(1.0, min(size) / 15.0)) > 0.7
    image[body.inner & bowel & (case.z > -0.2)] = rng.uniform(60.0, 140.0)
    wall = body.inside & (body.radius2 >= 0.80) & (body.radius2 < 0.90) & (case.z < 0.4)
    ribs = smooth_noise(rng, size, max(1.0, min(size) / 15.0)) > 0.8
    image[wall & ribs] = rng.uniform(200.0, 240.0)
    image[body.paraspinal & body.inside] = 50.0
    image[body.spine] = 420.0
    return image


def _paint_organ_intensities(rng: np.random.Generator, image: np.ndarray,
                             label: np.ndarray) -> None:
    """Overwrite ``image`` (float32 HU) in place with every organ's intensities.

    Each organ's mean shifts with a contrast shift shared by the case and one of its own;
    one smooth texture field modulates all organs.
    """
    size = image.shape
    texture = smooth_noise(rng, size, 1.2)
    contrast_shift = rng.normal(0.0, 12.0)
    for name in PAINT_ORDER:
        region = label == SYNAPSE_CLASSES.index(name)
        mean, std = _INTENSITY[name]
        mean += contrast_shift + rng.normal(0.0, 8.0)
        image[region] = mean + std * texture[region]
    # Hollow stomach: the lumen (eroded stomach) is fluid, the rim is the enhancing wall.
    stomach = label == SYNAPSE_CLASSES.index("stomach")
    lumen = ndimage.binary_erosion(stomach, iterations=max(1, round(min(size[1:]) / 30)))
    lumen_mean, lumen_std = _STOMACH_LUMEN_HU
    image[lumen] = lumen_mean + lumen_std * texture[lumen]
    # Air in the oesophagus: its eroded core (the wall stays soft tissue).
    esophagus = label == SYNAPSE_CLASSES.index("esophagus")
    image[ndimage.binary_erosion(esophagus)] = ESOPHAGUS_AIR_HU


def _acquire(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Partial-volume blur, a smooth additive bias field and acquisition noise (float32 HU)."""
    size = image.shape
    image = ndimage.gaussian_filter(image, 0.7)
    image += BIAS_HU * smooth_noise(rng, size, max(2.0, min(size) / 3.0))
    image += rng.normal(0.0, NOISE_HU, size=size).astype(np.float32)
    return image.astype(np.float32)


def spacing_mm(config: PhantomConfig) -> tuple[float, float, float]:
    """Voxel spacing in mm (z, y, x) of the phantom grid.

    :data:`FIELD_OF_VIEW_MM` divided by ``config.volume_size``: 7.5×4×4 mm by default.
    """
    return tuple(  # type: ignore[return-value]
        float(f / n) for f, n in zip(FIELD_OF_VIEW_MM, config.volume_size, strict=True)
    )


def class_proportions(labels: list[np.ndarray], num_classes: int = 14) -> np.ndarray:
    """Voxel share of every class over a list of label maps.

    Args:
        labels: integer label maps of any shape (the phantom's are uint8 (D, H, W)).
        num_classes: K, background included (14 for the Synapse classes).

    Returns:
        float64 (K,) fractions summing to 1, background first.
    """
    counts = sum(np.bincount(lab.ravel(), minlength=num_classes) for lab in labels)
    return np.asarray(counts, dtype=np.float64) / float(np.sum(counts))
