"""The embedded phantom: Synapse-like imbalance, variation, determinism, layout and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dhcbench.datasets import DATASETS
from dhcbench.datasets.classes import SYNAPSE_CLASSES
from dhcbench.datasets.phantom import (
    GENERATOR_VERSION,
    PhantomConfig,
    class_proportions,
    generate_case,
)
from dhcbench.errors import UserError

IDX = {name: i for i, name in enumerate(SYNAPSE_CLASSES)}


@pytest.fixture(scope="module")
def default_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    cfg = PhantomConfig()
    return [generate_case(cfg, i) for i in range(cfg.num_cases)]


#: Voxel shares (%) of the default phantom (generator v3, 30 cases of 24×60×60), background
#: first, as the docs state them; the generator is frozen, so these only move with a version.
PINNED_SHARES = {
    "background": 66.45, "spleen": 1.637, "right_kidney": 1.170, "left_kidney": 1.238,
    "gallbladder": 0.7555, "esophagus": 0.514, "liver": 20.08, "stomach": 3.420,
    "aorta": 1.281, "inferior_vena_cava": 1.234, "portal_splenic_veins": 0.7103,
    "pancreas": 1.135, "right_adrenal_gland": 0.1868, "left_adrenal_gland": 0.1808,
}


def test_class_proportions_follow_synapse_imbalance(default_cases) -> None:
    p = class_proportions([lab for _, lab in default_cases])
    assert np.allclose(100 * p, [PINNED_SHARES[n] for n in SYNAPSE_CLASSES], rtol=0.01)
    fg = p[1:]
    assert p[0] > 0.5  # background is the majority
    assert np.argmax(fg) + 1 == IDX["liver"]
    smallest = {int(i) + 1 for i in np.argsort(fg)[:2]}
    assert smallest == {IDX["right_adrenal_gland"], IDX["left_adrenal_gland"]}
    # the long tail: largest to smallest foreground class at least 100:1 (111:1 here)
    assert 100.0 <= fg.max() / fg.min() < 125.0
    # every organ is present in every case
    for _, lab in default_cases:
        assert set(np.unique(lab)) == set(range(14))


def test_cache_key_names_the_generator_version() -> None:
    assert PhantomConfig().key() == f"phantom-v{GENERATOR_VERSION}-24x60x60-n30-s0"
    assert GENERATOR_VERSION >= 2  # version 1 caches (the old generator) are never reused


def test_cases_vary_and_generation_is_deterministic() -> None:
    cfg = PhantomConfig(volume_size=(20, 40, 40), num_cases=10)
    a_img, a_lab = generate_case(cfg, 0)
    b_img, b_lab = generate_case(cfg, 0)
    c_img, c_lab = generate_case(cfg, 1)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)
    assert a_img.dtype == np.float32 and a_lab.dtype == np.uint8
    assert a_img.shape == a_lab.shape == (20, 40, 40)


def test_no_intensity_threshold_separates_the_organs(default_cases) -> None:
    """The best intensity interval (between two percentiles of the organ's own intensities,
    inside the CT window) segments no organ well: location and shape must be learned."""
    img = np.concatenate([np.clip(i, -75, 275).ravel() for i, _ in default_cases[:10]])
    lab = np.concatenate([lab.ravel() for _, lab in default_cases[:10]])
    best = {}
    for c in range(1, 14):
        organ = lab == c
        qs = np.percentile(img[organ], [0, 5, 10, 25, 50, 75, 90, 95, 100])
        scores = []
        for a in range(len(qs)):
            for b in range(a + 1, len(qs)):
                inside = (img >= qs[a]) & (img <= qs[b])
                scores.append(2 * np.sum(inside & organ) / (inside.sum() + organ.sum()))
        best[SYNAPSE_CLASSES[c]] = max(scores)
    assert best["liver"] < 0.75  # the largest, brightest-textured organ
    assert max(v for k, v in best.items() if k != "liver") < 0.35, best
    assert np.mean(list(best.values())) < 0.2


def test_stomach_is_hollow(default_cases) -> None:
    """Wall (second voxel layer, clear of the partial-volume edge) brighter than the lumen."""
    from scipy import ndimage

    for img, lab in default_cases[:3]:
        depth = ndimage.distance_transform_cdt(lab == IDX["stomach"], metric="taxicab")
        assert (depth >= 4).sum() > 0
        assert img[depth == 2].mean() > img[depth >= 4].mean() + 30.0


def test_prepared_layout_and_splits(data_dir: Path) -> None:
    source = DATASETS.get("phantom")
    options = {"volume_size": [20, 40, 40], "num_cases": 30}
    spec = source.spec(options, None)
    ds = source.open(spec, options, data_dir)
    again = source.open(spec, options, data_dir)  # cached: read, not regenerated
    assert again.cases == ds.cases
    assert (ds.path / "manifest.json").is_file()
    assert len(ds.splits["train"]) == 20 and len(ds.splits["eval"]) == 4
    assert len(ds.splits["test"]) == 6
    assert [len(ds.splits[f"labeled_{r}p"]) for r in (10, 20, 40)] == [2, 4, 8]
    assert set(ds.splits["labeled_10p"]) <= set(ds.splits["labeled_20p"])
    case = ds.cases[ds.splits["train"][0]]
    assert case.shape == (20, 40, 40)
    assert case.spacing == (9.0, 6.0, 6.0)
    assert sum(case.class_counts) == 20 * 40 * 40
    assert len(case.image_sha256) == 64


def test_bad_phantom_options() -> None:
    source = DATASETS.get("phantom")
    with pytest.raises(UserError, match="unknown phantom option 'size'"):
        source.spec({"size": 3}, None)
    with pytest.raises(UserError, match="num_cases"):
        source.spec({"num_cases": 3}, None)


def test_a_cache_from_another_generator_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache under the current key whose cases another generator wrote (an edit without a
    version bump) is refused by name, and the current generator's cache is accepted."""
    import dhcbench.datasets.phantom_synthesis as synthesis

    source = DATASETS.get("phantom")
    options = {"volume_size": [20, 32, 32], "num_cases": 10}
    spec = source.spec(options, None)
    monkeypatch.setattr(synthesis, "NOISE_HU", synthesis.NOISE_HU + 5.0)
    stale = source.open(spec, options, tmp_path)
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"phantom-v\d+-20x32x32-n10-s0: this phantom cache was"
                                         r" written by a different generator"):
        source.open(spec, options, tmp_path)
    # the same generator reads its own cache back
    fresh_root = tmp_path / "fresh"
    first = source.open(spec, options, fresh_root)
    assert source.open(spec, options, fresh_root).cases == first.cases
    assert stale.cases.keys() == first.cases.keys()
