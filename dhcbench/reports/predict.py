"""``dhcbench predict``: a seed run's best checkpoint segments new images.

:func:`dhcbench.evaluation.predict.segment_images` does the work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dhcbench.benchmark.tracking import Tracker
from dhcbench.evaluation.predict import segment_images
from dhcbench.reports.runs import best_method, dataset_of, load_run


def predict_images(tracker: Tracker, run_id: str, images: Path, out: Path,
                   device: str = "auto",
                   on_case: Callable[[int, int], None] | None = None) -> list[Path]:
    """Segment every image (file or folder) with a seed run's best checkpoint.

    The run's dataset must still be prepared on this machine (it says how images are
    brought into the training geometry). Writes ``<case>.nii.gz`` label maps to ``out`` on
    the source grid and returns their paths; ``on_case`` reports progress.
    """
    loaded = load_run(tracker, run_id)
    dspec, ds = dataset_of(loaded)
    method = best_method(tracker, loaded, dspec)
    return segment_images(method, dspec, ds.meta, loaded.spec.eval, images, out, device,
                          on_case)
