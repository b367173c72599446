"""``dhcbench bench --part data|infer``: a patch fetch and one volume's inference, timed.

Both parts run on a synthetic case of a chosen grid: a phantom case generated at most at
40×80×80 (:func:`dhcbench.datasets.phantom_synthesis.generate_case`) and resized to the grid
(trilinear image, nearest label), so its organs are the phantom's, at Synapse or AMOS size.

- ``data``: one labeled training patch from a prepared case (written with
  :func:`~dhcbench.datasets.storage.write_prepared` into a temporary folder, read by
  :class:`~dhcbench.datasets.loaders.PatchSampler`, which normalises the volume once)
  against the per-item alternative: re-reading the case's source volume from disk (the grid
  with twice its in-plane size, as Synapse's 512×512 slices are to the 256×256 of the
  ``dhc2024`` profile), resizing image and label to the grid, normalising and cropping.
  Both give the identical patch for the same crop draw, which is checked.
- ``infer``: sliding-window inference of one volume with DHC's prediction (two V-Nets,
  logits averaged) through :func:`~dhcbench.evaluation.inference.predict_case_probs`, for
  the device's default inference options and for each configuration of
  :class:`~dhcbench.evaluation.inference.InferenceOptions`; each configuration's labels are
  compared with the default's.

Rounds alternate between the compared sides in one process; ratios are taken per round.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dhcbench.benchmark.bench import Spread, timed
from dhcbench.benchmark.spec import EvalSpec
from dhcbench.benchmark.train_state import seed_everything
from dhcbench.datasets.base import DatasetSpec
from dhcbench.datasets.classes import SYNAPSE_CLASSES
from dhcbench.datasets.geometry import resize_image, resize_label
from dhcbench.datasets.intensity import normalise_image
from dhcbench.datasets.loaders import PatchSampler, pad_to_patch
from dhcbench.datasets.phantom_synthesis import FIELD_OF_VIEW_MM, PhantomConfig, generate_case
from dhcbench.datasets.storage import PreparedCase, write_prepared
from dhcbench.errors import UserError
from dhcbench.evaluation.inference import default_stride, predict_case_probs, resolve_device
from dhcbench.methods import METHODS
from dhcbench.methods.losses import class_argmax

Shape3 = tuple[int, int, int]

#: Synapse in the ``dhc2024`` profile (native depth, in-plane halved) and AMOS / ``dhc2023``.
SYNAPSE_GRID: Shape3 = (147, 256, 256)
AMOS_GRID: Shape3 = (80, 160, 160)
#: The reference's training patch.
PATCH: Shape3 = (64, 128, 128)
#: The reference's CT window, clipped before the min-max normalisation.
WINDOW = (-75.0, 275.0)
_SMALL = (40, 80, 80)


def synthetic_case(grid: Shape3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A phantom case resized to ``grid``: float32 HU image and uint8 label (D, H, W)."""
    small = tuple(max(8, min(g, s)) for g, s in zip(grid, _SMALL, strict=True))
    image, label = generate_case(PhantomConfig(volume_size=small, seed=seed), 0)  # type: ignore[arg-type]
    return resize_image(image, grid), resize_label(label, grid)


def grid_spacing(grid: Shape3) -> tuple[float, float, float]:
    """Voxel size (mm, z/y/x) of ``grid`` over the phantom's field of view."""
    return tuple(float(f / n) for f, n in zip(FIELD_OF_VIEW_MM, grid, strict=True))  # type: ignore[return-value]


def synthetic_spec(patch: Shape3) -> DatasetSpec:
    """The synthetic cases' dataset spec: Synapse's classes, one CT channel, ``patch``."""
    return DatasetSpec(name="synthetic", class_names=SYNAPSE_CLASSES, channels=1,
                       patch_size=patch, intensity_window=WINDOW, profile="synthetic")


# -- data -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataTiming:
    """A prepared-case patch fetch against re-reading and resizing per item.

    ``ratio``: re-read time over patch time per round; ``identical``: both paths gave the
    same patch (image and label) for the same crop draw.
    """

    grid: Shape3
    patch: Shape3
    patch_ms: float
    reread_ms: float
    ratio: Spread
    identical: bool
    rounds: int

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return asdict(self)


def _crop(image: np.ndarray, label: np.ndarray, patch: Shape3, rng: np.random.Generator
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random patch drawn as :class:`PatchSampler` draws it (no flips)."""
    image, label = pad_to_patch(image, patch), pad_to_patch(label, patch)
    offsets = [int(rng.integers(0, size - p)) if size > p else 0
               for size, p in zip(label.shape, patch, strict=True)]
    sl = tuple(slice(o, o + p) for o, p in zip(offsets, patch, strict=True))
    return (torch.from_numpy(np.ascontiguousarray(image[sl]))[None, None],
            torch.from_numpy(label[sl].astype(np.int64))[None])


def reread_patch(source: tuple[Path, Path], grid: Shape3, patch: Shape3,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-item path: read the source volume, resize to ``grid``, normalise, crop.

    Returns the image patch (1, 1, *patch) float32 and the label patch (1, *patch) int64.
    """
    image = resize_image(np.load(source[0]), grid)
    label = resize_label(np.load(source[1]), grid)
    return _crop(normalise_image(image, "CT", WINDOW, {}), label, patch, rng)


def _prepare_data_case(folder: Path, grid: Shape3, patch: Shape3
                       ) -> tuple[PatchSampler, tuple[Path, Path]]:
    """Write the source volume and the prepared case; a sampler over the prepared case."""
    src_shape = (grid[0], 2 * grid[1], 2 * grid[2])
    src_image, src_label = synthetic_case(src_shape)  # type: ignore[arg-type]
    source = (folder / "source_image.npy", folder / "source_label.npy")
    np.save(source[0], src_image)
    np.save(source[1], src_label)
    case = PreparedCase("case_0001", resize_image(src_image, grid),
                        resize_label(src_label, grid), grid_spacing(grid))
    del src_image, src_label
    ds = write_prepared(folder / "prepared", name="synthetic", class_names=SYNAPSE_CLASSES,
                        profile="synthetic", cases=[case], splits={"train": ["case_0001"]})
    sampler = PatchSampler(ds, synthetic_spec(patch), ["case_0001"], [], batch_labeled=1,
                           batch_unlabeled=1, flip=False, seed=0, mode="labeled")
    return sampler, source


def bench_data(grid: Shape3 = SYNAPSE_GRID, patch: Shape3 = PATCH, rounds: int = 5,
               per_round: int = 10) -> DataTiming:
    """Time a patch fetch (``per_round`` per round) against one re-read per round."""
    one, none = np.array([0]), np.array([], dtype=np.int64)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="dhcbench-bench-") as tmp:
        sampler, source = _prepare_data_case(Path(tmp), grid, patch)
        sampler.rng = np.random.default_rng(7)
        fetched = sampler.batch(one, none)
        image, label = reread_patch(source, grid, patch, np.random.default_rng(7))
        identical = (torch.equal(fetched.image_l, image)
                     and torch.equal(fetched.label_l, label))
        rng = np.random.default_rng(0)
        patch_t, reread_t, ratios = [], [], []
        for _ in range(rounds):
            p = [timed(lambda: sampler.batch(one, none), cpu) for _ in range(per_round)]
            r = timed(lambda: reread_patch(source, grid, patch, rng), cpu)
            patch_t += p
            reread_t.append(r)
            ratios.append(r / statistics.median(p))
    return DataTiming(grid, patch, 1e3 * statistics.median(patch_t),
                      1e3 * statistics.median(reread_t), Spread.of(ratios), identical, rounds)


# -- infer ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class InferConfig:
    """One inference configuration's time per volume against the default's.

    ``speedup``: default time over this configuration's time, per round (×1.4 = faster);
    ``identical_labels``: its label map equals the default's (else ``differing_voxels``, and
    ``tie_gap``: the largest gap between the default's two highest class probabilities on
    those voxels; a gap at rounding level means only ties were broken differently).
    """

    name: str
    options: dict[str, Any] | None
    median_s: float
    speedup: Spread
    identical_labels: bool
    differing_voxels: int
    tie_gap: float = 0.0


@dataclass(frozen=True)
class InferTiming:
    """Sliding-window inference of one volume for every configuration."""

    grid: Shape3
    patch: Shape3
    stride: Shape3
    filters: int
    device: str
    default_options: dict[str, Any]
    configs: list[InferConfig]
    rounds: int

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return asdict(self)


def inference_configs(device: torch.device) -> list[tuple[str, Any]]:
    """The (name, options) pairs to compare, the default (options None) first.

    Then the four channels-last / BN-folding combinations at the default window batch, and
    window batches 1 and 8 with the default's other options; a combination equal to the
    default (``window_batch=None`` is the run's ``eval.window_batch``) is left out.
    """
    from dhcbench.evaluation import inference

    try:
        options_cls = inference.InferenceOptions
        default = inference.default_inference_options(device)
    except AttributeError as exc:
        raise UserError("--part infer needs InferenceOptions and default_inference_options"
                        " in dhcbench.evaluation.inference") from exc
    out: list[tuple[str, Any]] = [("default", None)]
    for cl in (False, True):
        for fb in (False, True):
            name = " + ".join([n for n, on in (("channels-last", cl), ("fold-bn", fb)) if on])
            out.append((name or "plain", options_cls(channels_last=cl, fold_bn=fb,
                                                     window_batch=default.window_batch)))
    for wb in (1, 8):
        out.append((f"window batch {wb}", options_cls(channels_last=default.channels_last,
                                                      fold_bn=default.fold_bn,
                                                      window_batch=wb)))
    # A combination equal to the default would only time the default against itself.
    return [(name, o) for name, o in out if o is None or o != default]


def _top2_gap(probs: torch.Tensor, where: np.ndarray) -> float:
    """The largest gap between the two highest class probabilities at ``where`` (0 if none)."""
    if not where.any():
        return 0.0
    picked = probs.permute(1, 2, 3, 0)[torch.from_numpy(where)]
    top = picked.float().topk(2, dim=1).values
    return float((top[:, 0] - top[:, 1]).max())


def bench_infer(grid: Shape3 = AMOS_GRID, patch: Shape3 = PATCH, filters: int = 16,
                rounds: int = 5, device: str = "cpu", stride: Shape3 | None = None,
                window_batch: int = 4) -> InferTiming:
    """Time one volume's sliding-window inference per configuration, alternating per round.

    ``window_batch`` is the run's ``eval.window_batch`` (what options with
    ``window_batch=None`` use). Round ``r`` starts at configuration ``r`` (mod their number),
    so that no configuration always runs first or after the same one. Labels are compared
    with the default's; where they differ, the default's own two highest probabilities there
    are at most ``tie_gap`` apart (a tie broken the other way by rounding).
    """
    dev = resolve_device(device)
    configs = inference_configs(dev)
    seed_everything(0)
    method = METHODS.get("dhc").build(num_classes=len(SYNAPSE_CLASSES), in_channels=1,
                                      base_filters=filters, variant="reference", kwargs={})
    method.to(dev)
    method.eval()
    image = normalise_image(synthetic_case(grid)[0], "CT", WINDOW, {})
    stride = stride or default_stride(patch)
    settings = EvalSpec(stride=stride, window_batch=window_batch)
    dspec = synthetic_spec(patch)
    base_probs = predict_case_probs(method.predict, image, dspec, settings, dev)  # warm-up
    base = class_argmax(base_probs, 0).numpy()
    times: dict[str, list[float]] = {name: [] for name, _ in configs}
    labels: dict[str, np.ndarray] = {}
    for r in range(rounds):
        shift = r % len(configs)
        for name, options in configs[shift:] + configs[:shift]:
            start = time.perf_counter()
            out = class_argmax(predict_case_probs(method.predict, image, dspec, settings, dev,
                                                  options=options), 0).numpy()
            times[name].append(time.perf_counter() - start)
            labels.setdefault(name, out)
    results = []
    for name, options in configs:
        differ = labels[name] != base
        results.append(InferConfig(
            name=name, options=None if options is None else asdict(options),
            median_s=statistics.median(times[name]),
            speedup=Spread.of([d / t for d, t in zip(times["default"], times[name],
                                                     strict=True)]),
            identical_labels=not differ.any(),
            differing_voxels=int(differ.sum()),
            tie_gap=_top2_gap(base_probs, differ),
        ))
    from dhcbench.evaluation import inference

    return InferTiming(grid, patch, stride, filters, str(dev),
                       asdict(inference.default_inference_options(dev)), results, rounds)
