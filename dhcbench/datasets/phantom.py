"""The embedded synthetic dataset: seeded abdominal-CT-like phantoms with Synapse's 13 organs.

Real abdominal CT cannot ship with the package, so the default dataset is generated: every
case is an upper-abdomen volume with the 13 Synapse organ classes (reference §1), whose voxel
proportions follow Synapse's long tail (liver largest, adrenal glands smallest, foreground
imbalance ratio about 110:1, background the majority). That imbalance is what DHC and the
imbalance baselines address, so the phantom exercises the same failure mode at CPU scale.

Generator version 3 was calibrated with the two bounds only (``fully`` and ``labeled-only``,
never the semi-supervised methods): organ sizes in voxels, contrast, noise, the volume and
patch size and the preset (:meth:`PhantomSource.preset`) were set so that the
fully-supervised V-Net learns the organs on a CPU while the labeled-only one stays well below
it. Version 3 differs from 2 only in the adrenal glands' positions, which vary a third as
much between cases. What the bounds reach, and where the upper bound still falls short (the
left adrenal gland in one seed of three): docs/phantom-benchmark.md.

Shapes: solid organs are ellipsoids deformed by smooth noise; the aorta, IVC, esophagus and
portal/splenic veins are curved tubes; the stomach is hollow (wall and lumen of different
intensity, both labelled stomach) and the esophagus holds air; gallbladder and adrenal
glands are small ellipsoids. Intensities are HU-like with overlapping per-organ
distributions, organ texture, enhancing bowel loops and rib sections as distractors, a
smooth additive bias field, partial-volume blur and acquisition noise, so no intensity
threshold separates the classes: location and shape must be learned. Every case varies in position,
size, shape and contrast. The generator is pure numpy/scipy and deterministic in
``(seed, case index, volume_size)``.

Coordinates: a body frame in [-1, 1]^3 with z cranio-caudal (superior = -1), y
anterior-posterior (anterior = -1) and x right-left (patient right = -1); array axes are
(z, y, x) = (D, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from dhcbench.datasets.base import DATASETS, DatasetSpec
from dhcbench.datasets.classes import SYNAPSE_CLASSES
from dhcbench.datasets.splits import ratio_tag, seeded_labeled
from dhcbench.datasets.storage import PreparedCase, PreparedDataset, load_prepared, write_prepared
from dhcbench.errors import UserError

#: Bumped whenever the generator's output changes, so that no older cache is reused.
GENERATOR_VERSION = 3
#: How much the field of view is zoomed onto the abdomen: the volume spans [-1/ZOOM, 1/ZOOM]
#: of the body frame, so the organs cover more voxels (the body's sides are cut, as in CT).
ZOOM = 1.35
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


@dataclass(frozen=True)
class _Ellipsoid:
    label: int
    center: tuple[float, float, float]  # (z, y, x) in the body frame
    radii: tuple[float, float, float]
    wobble: float  # amplitude of the smooth shape deformation
    jitter: float = 0.045  # std of the centre's per-case shift, body-frame units


@dataclass(frozen=True)
class _Tube:
    """A tube along ``axis`` (0 = z, 2 = x) between t0 and t1, centre line (a + b t + c sin)."""

    label: int
    axis: int
    t_range: tuple[float, float]
    offset: tuple[float, float]  # centre of the two other coordinates at t = 0
    slope: tuple[float, float]
    bend: tuple[float, float]  # amplitude of the sinusoidal bend of the two coordinates
    radius: tuple[float, float]  # radius at t0 and at t1 (linear in between)


# Organ layout, tuned so that the mean voxel proportions follow Synapse's imbalance (see
# ``class_proportions``); label values follow reference §1 (1 spleen … 13 left adrenal).
_ELLIPSOIDS = {
    "liver": _Ellipsoid(6, (-0.10, -0.02, -0.38), (0.66, 0.64, 0.58), 0.20),
    "spleen": _Ellipsoid(1, (-0.22, 0.30, 0.56), (0.36, 0.26, 0.18), 0.15),
    "right_kidney": _Ellipsoid(2, (0.28, 0.44, -0.42), (0.36, 0.20, 0.17), 0.10),
    "left_kidney": _Ellipsoid(3, (0.22, 0.44, 0.44), (0.36, 0.20, 0.17), 0.10),
    "stomach": _Ellipsoid(7, (-0.30, -0.18, 0.30), (0.36, 0.28, 0.28), 0.15),
    "gallbladder": _Ellipsoid(4, (0.22, -0.36, -0.26), (0.25, 0.17, 0.15), 0.10),
    # The adrenal glands sit on the kidneys' upper poles: their centres vary a third as much.
    "right_adrenal_gland": _Ellipsoid(12, (-0.04, 0.31, -0.27), (0.165, 0.112, 0.08), 0.05,
                                      0.015),
    "left_adrenal_gland": _Ellipsoid(13, (-0.06, 0.31, 0.26), (0.165, 0.112, 0.08), 0.05,
                                     0.015),
}
_TUBES = {
    "esophagus": _Tube(
        5, 0, (-1.0, -0.30), (0.40, 0.10), (0.25, 0.10), (0.03, 0.03), (0.10, 0.11)
    ),
    "aorta": _Tube(8, 0, (-1.0, 1.0), (0.38, 0.10), (0.0, 0.0), (0.02, 0.03), (0.11, 0.10)),
    "inferior_vena_cava": _Tube(
        9, 0, (-0.75, 1.0), (0.30, -0.17), (0.02, 0.0), (0.02, 0.02), (0.10, 0.10)
    ),
    "portal_splenic_veins": _Tube(
        10, 2, (-0.22, 0.48), (0.02, 0.12), (0.0, 0.15), (0.05, 0.05), (0.12, 0.10)
    ),
    "pancreas": _Tube(
        11, 2, (-0.20, 0.45), (0.14, 0.02), (-0.08, 0.12), (0.04, 0.05), (0.19, 0.11)
    ),
}
# Painting order: later organs overwrite earlier ones where they overlap.
_PAINT_ORDER = (
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


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-smoothed white noise (sigma in voxels)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def _rotation_zyx(angle: float) -> np.ndarray:
    """Rotation about the z axis (in the axial plane) acting on (z, y, x) vectors."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


class _Case:
    """Per-case random geometry: global scale/shift and per-organ jitter."""

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
        self.wobble = _smooth_noise(rng, size, sigma)
        self.body_rx = rng.uniform(0.88, 0.96)
        self.body_ry = rng.uniform(0.70, 0.78)

    def ellipsoid(self, e: _Ellipsoid) -> np.ndarray:
        rng = self.rng
        center = np.asarray(e.center) + rng.normal(0.0, e.jitter, size=3)
        radii = np.asarray(e.radii) * rng.uniform(0.85, 1.15, size=3)
        rot = _rotation_zyx(rng.uniform(-0.3, 0.3))
        d = np.stack([self.z - center[0], self.y - center[1], self.x - center[2]], axis=-1)
        d = d @ rot.T.astype(np.float32)
        q = ((d / radii.astype(np.float32)) ** 2).sum(axis=-1)
        return q < 1.0 + e.wobble * self.wobble

    def tube(self, t: _Tube) -> np.ndarray:
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


def generate_case(config: PhantomConfig, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One phantom case: (image float32 HU (D, H, W), label uint8 (D, H, W)).

    Deterministic in (config.seed, index, config.volume_size).
    """
    size = tuple(int(s) for s in config.volume_size)
    rng = np.random.default_rng([config.seed, index, *size])
    case = _Case(rng, size)  # type: ignore[arg-type]
    z, y, x = case.z, case.y, case.x

    body = (x / case.body_rx) ** 2 + (y / case.body_ry) ** 2
    inside_body = body < 1.0
    inner = body < 0.80  # inside the muscle wall: where organs may lie
    spine = (x / 0.14) ** 2 + ((y - 0.58) / 0.12) ** 2 < 1.0
    paraspinal = ((np.abs(x) - 0.24) / 0.11) ** 2 + ((y - 0.58) / 0.10) ** 2 < 1.0

    # Background tissue: air, subcutaneous fat, muscle wall with rib sections, visceral fat,
    # spine, muscles, enhancing bowel loops (soft-tissue blobs that compete with the organs'
    # intensities, as the ribs compete with the enhanced vessels and kidneys).
    image = np.full(size, -1000.0, dtype=np.float32)
    image[inside_body] = -95.0
    image[inside_body & (body < 0.90)] = 45.0
    visceral = VISCERAL_HU[1] * _smooth_noise(rng, size, max(1.0, min(size) / 12.0)) \
        + VISCERAL_HU[0]
    image[inner] = visceral[inner]
    bowel = _smooth_noise(rng, size, max(1.0, min(size) / 15.0)) > 0.7
    image[inner & bowel & (z > -0.2)] = rng.uniform(60.0, 140.0)
    wall = inside_body & (body >= 0.80) & (body < 0.90) & (z < 0.4)
    ribs = _smooth_noise(rng, size, max(1.0, min(size) / 15.0)) > 0.8
    image[wall & ribs] = rng.uniform(200.0, 240.0)
    image[paraspinal & inside_body] = 50.0
    image[spine] = 420.0

    label = np.zeros(size, dtype=np.uint8)
    organ_masks: dict[str, np.ndarray] = {}
    for name in _PAINT_ORDER:
        shape = _ELLIPSOIDS.get(name)
        mask = case.ellipsoid(shape) if shape is not None else case.tube(_TUBES[name])
        mask &= inner & ~spine & ~paraspinal
        organ_masks[name] = mask
        label[mask] = SYNAPSE_CLASSES.index(name)

    texture = _smooth_noise(rng, size, 1.2)
    contrast_shift = rng.normal(0.0, 12.0)
    for name in _PAINT_ORDER:
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

    # Partial-volume blur, a smooth additive bias field and acquisition noise.
    image = ndimage.gaussian_filter(image, 0.7)
    image += BIAS_HU * _smooth_noise(rng, size, max(2.0, min(size) / 3.0))
    image += rng.normal(0.0, NOISE_HU, size=size).astype(np.float32)
    return image.astype(np.float32), label


def spacing_mm(config: PhantomConfig) -> tuple[float, float, float]:
    """Voxel spacing in mm (z, y, x) of the phantom grid."""
    return tuple(  # type: ignore[return-value]
        float(f / n) for f, n in zip(FIELD_OF_VIEW_MM, config.volume_size, strict=True)
    )


def class_proportions(labels: list[np.ndarray], num_classes: int = 14) -> np.ndarray:
    """Voxel share of every class (background first) over a list of label maps."""
    counts = sum(np.bincount(lab.ravel(), minlength=num_classes) for lab in labels)
    return np.asarray(counts, dtype=np.float64) / float(np.sum(counts))


# -- the registered dataset -------------------------------------------------------------------

DEFAULT_PATCH = (16, 48, 48)


def config_from_options(options: Mapping[str, Any]) -> PhantomConfig:
    """A PhantomConfig from ``data.options``; unknown keys and bad sizes raise UserError."""
    valid = {"volume_size", "num_cases", "seed"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UserError(
            f"unknown phantom option {unknown[0]!r} (valid: {', '.join(sorted(valid))})"
        )
    cfg = PhantomConfig()
    size = tuple(int(v) for v in options.get("volume_size", cfg.volume_size))
    if len(size) != 3 or min(size) < 8:
        raise UserError(f"phantom volume_size {size}: needs three sides of at least 8 voxels")
    num_cases = int(options.get("num_cases", cfg.num_cases))
    if num_cases < 8:
        raise UserError(f"phantom num_cases {num_cases}: needs at least 8 cases")
    return PhantomConfig(size, num_cases, int(options.get("seed", cfg.seed)))  # type: ignore[arg-type]


def phantom_splits(num_cases: int, ids: list[str], seed: int) -> dict[str, list[str]]:
    """Synapse-like split: 1/5 test, then 5/6 of the rest train and 1/6 eval (20/4/6 for
    30), seeded; labeled lists for the paper's Synapse ratios (10/20/40 %)."""
    order = np.random.default_rng([seed, 7919]).permutation(num_cases)
    n_test = max(1, round(num_cases / 5))
    n_trval = num_cases - n_test
    n_train = max(2, round(n_trval * 5 / 6))
    train = sorted(ids[i] for i in order[:n_train])
    splits = {
        "train": train,
        "eval": sorted(ids[i] for i in order[n_train:n_trval]),
        "test": sorted(ids[i] for i in order[n_trval:]),
    }
    for ratio in PHANTOM_RATIOS:
        labeled = seeded_labeled(train, ratio, 0)
        splits[f"labeled_{ratio_tag(ratio)}"] = labeled
        splits[f"unlabeled_{ratio_tag(ratio)}"] = sorted(set(train) - set(labeled))
    return splits


PHANTOM_RATIOS = (0.1, 0.2, 0.4)


def _case_id(index: int) -> str:
    return f"phantom_{index + 1:04d}"


def _checked(ds: PreparedDataset, cfg: PhantomConfig, dest: Path) -> PreparedDataset:
    """``ds`` if its first case is what this generator makes, else a UserError: a cache left
    by an edited generator whose version was not bumped must not pass for the current one
    (regenerating one case takes a fraction of a second)."""
    image, label = generate_case(cfg, 0)
    case_id = _case_id(0)
    if not (np.array_equal(ds.label(case_id), label)
            and np.allclose(ds.image(case_id), image, rtol=0.0, atol=1e-2)):
        raise UserError(f"{dest}: this phantom cache was written by a different generator"
                        " (its first case differs); delete the folder to regenerate it")
    return ds


class PhantomSource:
    """The embedded synthetic dataset (registered as ``phantom``)."""

    name = "phantom"
    title = "Synthetic abdominal CT phantom"
    description = (
        "Seeded CT-like volumes with the 13 Synapse organs and Synapse's class imbalance;"
        " generated on first use, 30 cases split 20/4/6, labeled ratios 10/20/40 %."
    )
    reference = "dhcbench (synthetic); classes and imbalance after Synapse (Landman et al., 2015)"
    ratios = PHANTOM_RATIOS

    classes_text = "13"

    def spec(self, options: Mapping[str, Any], patch_size: tuple[int, int, int] | None,
             root: Path | None = None) -> DatasetSpec:
        del root
        cfg = config_from_options(options)
        patch = tuple(patch_size) if patch_size is not None else DEFAULT_PATCH
        return DatasetSpec(
            name="phantom",
            class_names=SYNAPSE_CLASSES,
            channels=1,
            patch_size=patch,  # type: ignore[arg-type]
            intensity_window=(-75.0, 275.0),
            profile=f"phantom:{cfg.volume_size[0]}x{cfg.volume_size[1]}x{cfg.volume_size[2]}",
        )

    def open(self, spec: DatasetSpec, options: Mapping[str, Any], root: Path,
             on_progress: Callable[[int, int], None] | None = None) -> PreparedDataset:
        """The cached phantom for ``options``, generated and written on first use."""
        cfg = config_from_options(options)
        dest = Path(root) / cfg.key()
        if (dest / "manifest.json").is_file():
            return _checked(load_prepared(dest), cfg, dest)
        try:
            Path(root).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{root}: cannot create the data folder ({exc.strerror})") from exc
        ids = [_case_id(i) for i in range(cfg.num_cases)]
        spacing = spacing_mm(cfg)
        done = [0]

        def cases() -> Iterator[PreparedCase]:
            for index, case_id in enumerate(ids):
                image, label = generate_case(cfg, index)
                yield PreparedCase(case_id, image, label, spacing)

        def tick(_: str) -> None:
            done[0] += 1
            if on_progress is not None:
                on_progress(done[0], len(ids))

        try:
            return write_prepared(
                dest,
                name="phantom",
                class_names=SYNAPSE_CLASSES,
                profile=spec.profile,
                cases=cases(),
                splits=phantom_splits(cfg.num_cases, ids, cfg.seed),
                meta={"generator": "dhcbench.datasets.phantom", "config": {
                    "volume_size": list(cfg.volume_size), "num_cases": cfg.num_cases,
                    "seed": cfg.seed}},
                on_case=tick,
            )
        except (UserError, OSError):
            # Another process may have finished the same cache first: use it.
            if (dest / "manifest.json").is_file():
                return _checked(load_prepared(dest), cfg, dest)
            raise

    def default_split(self, options: Mapping[str, Any]) -> None:
        """The phantom's own lists (written with the data)."""
        del options
        return None

    def preset(self, ratio: float) -> dict[str, Any]:
        """CPU-sized schedule, the same for every method: 16-filter V-Nets (8 filters leave
        the 14-class head too narrow to learn more than the largest organs), SGD at lr 0.2,
        25 epochs of 20 iterations (500 steps) with poly decay of power 0.3 (the reference's
        0.9 lowers the rate early, and the adrenal glands are learned last), evaluation every
        2 epochs, no early stop. Chosen with the two bounds only
        (``fully``, ``labeled-only``)."""
        del ratio
        return {
            "train": {"epochs": 24, "iters_per_epoch": 20, "base_filters": 16, "lr": 0.2,
                      "poly_power": 0.3, "eval_interval": 2, "patience": None},
        }


DATASETS.add("phantom", PhantomSource())
