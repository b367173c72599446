"""``dhcbench predict``: trained seed runs segment new images.

Which weights: ``best`` (the best-on-eval ``best.pt``, read from the run's checkpoint folder
when it is still on this machine, else from its ``checkpoint/best.pt`` artifact) or ``last``
(the end-of-training ``last.pt``, which only the checkpoint folder holds). Which runs: one
seed run, or with ``ensemble`` every FINISHED seed run of a parent run (a seed-run id then
ensembles that one run alone, which is the same as no ``ensemble``); the ensemble's
probabilities are the mean of its members'. Every run is checked and its weights loaded
before anything is written. :func:`dhcbench.evaluation.predict.segment_images` does the
rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dhcbench.benchmark import checkpoint as ckpt
from dhcbench.benchmark.building import build_method
from dhcbench.benchmark.tracking import CHECKPOINT_DIR, ROLE, Tracker
from dhcbench.errors import UserError
from dhcbench.evaluation.predict import segment_images
from dhcbench.reports.runs import (
    LoadedRun,
    best_method,
    dataset_of,
    dataset_spec,
    get_run,
    load_run,
)

if TYPE_CHECKING:
    from dhcbench.datasets import DatasetSpec
    from dhcbench.methods.base import Method

CHECKPOINTS = ("best", "last")


def seed_runs(tracker: Tracker, run_id: str, ensemble: bool) -> list[str]:
    """The seed-run ids whose checkpoints predict for ``--run run_id``.

    A seed run is itself. A parent run is a UserError without ``ensemble`` (it names its
    seed runs and the option); with it, its FINISHED seed runs, oldest first (a parent with
    none is a UserError). Other runs are left to :func:`~dhcbench.reports.runs.load_run`.
    """
    run = get_run(tracker, run_id)
    if run.data.tags.get(ROLE) != "parent":
        return [run_id]
    children = [c for c in tracker.children(run_id) if c.data.tags.get(ROLE) == "seed"]
    if not ensemble:
        ids = ", ".join(c.info.run_id for c in children) or "none"
        raise UserError(f"--run {run_id} is a parent run: pass one of its seed-run ids ({ids})"
                        " or --ensemble to ensemble its finished seed runs")
    finished = [c.info.run_id for c in reversed(children) if c.info.status == "FINISHED"]
    if not finished:
        raise UserError(f"--run {run_id}: parent run with no FINISHED seed run to ensemble"
                        f" ({len(children)} seed run(s), none finished)")
    return finished


def _signature(dspec: DatasetSpec, loaded: LoadedRun) -> tuple[object, ...]:
    data = loaded.spec.data
    return (dspec.name, dspec.class_names, dspec.channels, dspec.patch_size,
            dspec.intensity_window, dspec.profile, repr(data.options), data.root)


def _check_agree(runs: list[LoadedRun], specs: list[DatasetSpec]) -> None:
    """A UserError when the ensemble's seed runs differ in dataset, classes or patch."""
    first = _signature(specs[0], runs[0])
    for loaded, dspec in zip(runs[1:], specs[1:], strict=True):
        if _signature(dspec, loaded) != first:
            raise UserError(
                f"--ensemble: seed runs {runs[0].run_id} and {loaded.run_id} disagree in"
                f" dataset, classes or patch ({specs[0].name} {specs[0].num_classes} classes"
                f" patch {list(specs[0].patch_size)} vs {dspec.name} {dspec.num_classes}"
                f" classes patch {list(dspec.patch_size)}); ensemble runs of one dataset")


def last_method(loaded: LoadedRun, dspec: DatasetSpec) -> Method:
    """The run's method with its end-of-training weights (``last.pt``), in eval mode, on the CPU.

    ``last.pt`` is read from the run's checkpoint folder (it is never logged as an
    artifact); a run whose folder is gone from this machine is a UserError.
    """
    folder = loaded.tags.get(CHECKPOINT_DIR)
    path = Path(folder) / ckpt.LAST if folder else None
    if path is None or not path.is_file():
        raise UserError(f"--checkpoint last: seed run {loaded.run_id} has no {ckpt.LAST} in its"
                        f" checkpoint folder {folder or '(none recorded)'} (it is only kept"
                        " where the run trained); use --checkpoint best")
    method = build_method(loaded.spec, dspec)
    method.load_state_dict(ckpt.load(path)["method"])
    method.eval()
    return method


def predict_images(tracker: Tracker, run_id: str, images: Path, out: Path,
                   device: str = "auto",
                   on_case: Callable[[int, int], None] | None = None, *,
                   checkpoint: str = "best", ensemble: bool = False,
                   save_probabilities: bool = False,
                   on_members: Callable[[list[str]], None] | None = None) -> list[Path]:
    """Segment every image (file or folder) with a seed run's (or an ensemble's) checkpoint.

    ``checkpoint`` is ``best`` or ``last``; ``ensemble`` lets ``run_id`` name a parent run,
    whose FINISHED seed runs are ensembled (see the module's docstring). The runs' dataset
    must still be prepared on this machine (it says how images are brought into the
    training geometry). Writes ``<case>.nii.gz`` label maps (and with
    ``save_probabilities`` ``<case>_probabilities.npz``) to ``out`` on the source grid and
    returns the label maps' paths; ``on_members`` gets the seed-run ids used before any
    inference, ``on_case`` reports progress.
    """
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"--checkpoint {checkpoint!r}: use best or last")
    runs = [load_run(tracker, r) for r in seed_runs(tracker, run_id, ensemble)]
    dspec, ds = dataset_of(runs[0])
    specs = [dspec] + [dataset_spec(r) for r in runs[1:]]
    _check_agree(runs, specs)
    methods = [best_method(tracker, r, dspec) if checkpoint == "best" else last_method(r, dspec)
               for r in runs]
    if on_members is not None:
        on_members([r.run_id for r in runs])
    return segment_images(methods, dspec, ds.meta, runs[0].spec.eval, images, out, device,
                          on_case, save_probabilities=save_probabilities)
