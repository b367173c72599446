"""Range checks of a run spec: every setting that has a valid range, checked at once.

:func:`dhcbench.benchmark.spec.build_spec` calls :func:`validate` on every spec it builds,
so a bad value is a one-line UserError naming the setting before anything is written.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dhcbench.errors import UserError

if TYPE_CHECKING:
    from dhcbench.benchmark.spec import DataSpec, RunSpec, TrainSpec

#: The largest seed: NumPy's generators take seeds below 2**32.
MAX_SEED = 2**32 - 1


def check_seed(value: Any, where: str) -> int:
    """``value`` as a seed (an int in [0, 2**32 - 1], never a bool); else a UserError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise UserError(f"{where}: a seed must be an integer in [0, {MAX_SEED}], got {value!r}")
    return value


def _check_train(t: TrainSpec) -> None:
    """Range checks of the training settings (see :func:`validate`)."""
    for name in ("epochs", "batch_labeled", "batch_unlabeled", "eval_interval", "base_filters"):
        if getattr(t, name) < (0 if name == "epochs" else 1):
            raise UserError(f"train.{name} must be positive, got {getattr(t, name)}")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise UserError(f"train.lr must be a finite positive number, got {t.lr}")
    for name in ("momentum", "dropout"):
        value = getattr(t, name)
        if not (math.isfinite(value) and 0.0 <= value < 1.0):
            raise UserError(f"train.{name} must be in [0, 1), got {value}")
    for name in ("weight_decay", "unsup_weight", "poly_power"):
        value = getattr(t, name)
        if not (math.isfinite(value) and value >= 0):
            label = "train.unsup_weight (λ)" if name == "unsup_weight" else f"train.{name}"
            raise UserError(f"{label} must be a finite number >= 0, got {value}")
    _check_optional_train(t)
    if not t.device.strip():
        raise UserError("train.device must not be empty (auto, cpu, cuda, cuda:1 …)")


def _check_optional_train(t: TrainSpec) -> None:
    """Range checks of the training settings where None means the default behaviour."""
    if t.iters_per_epoch is not None and t.iters_per_epoch < 1:
        raise UserError("train.iters_per_epoch must be >= 1 (or null for the reference's)")
    if t.patience is not None and t.patience < 1:
        raise UserError("train.patience must be >= 1 (or null: no early stopping)")
    if t.rampup_epochs is not None and t.rampup_epochs < 0:
        raise UserError(f"train.rampup_epochs must be >= 0 (0 or null: the whole run), got"
                        f" {t.rampup_epochs}")
    if t.threads is not None and t.threads < 1:
        raise UserError(f"train.threads must be >= 1 (or null: torch's default), got {t.threads}")


def check_ratio(ratio: float) -> None:
    """A labeled ratio must be a finite fraction in (0, 1]; else a UserError naming --ratio."""
    if not (math.isfinite(ratio) and 0.0 < ratio <= 1.0):
        raise UserError(f"--ratio {ratio}: must be a fraction in (0, 1], e.g. 0.2 for 20%")


def _check_data(d: DataSpec) -> None:
    """Range checks of the data settings (see :func:`validate`)."""
    check_ratio(d.ratio)
    if d.patch_size is not None and any(p < 16 or p % 16 for p in d.patch_size):
        raise UserError(
            f"data.patch_size {d.patch_size}: every side must be a multiple of 16"
            " (the V-Net downsamples four times)"
        )
    check_seed(d.split_seed, "data.split_seed")


def _check_eval_tracking(spec: RunSpec) -> None:
    """Range checks of the evaluation and tracking settings (see :func:`validate`)."""
    e, tr = spec.eval, spec.tracking
    if e.contract not in ("dhc", "rigorous"):
        raise UserError(f"eval.contract must be dhc or rigorous, got {e.contract!r}")
    if e.window_batch < 1:
        raise UserError("eval.window_batch must be >= 1")
    if e.stride is not None and any(s < 1 for s in e.stride):
        raise UserError(f"eval.stride {list(e.stride)}: every side must be >= 1 voxel"
                        " (or null: patch // 4)")
    if not tr.experiment.strip():
        raise UserError("tracking.experiment (--experiment) must not be empty")
    if not tr.out_dir.strip():
        raise UserError("tracking.out_dir (--out) must not be empty")
    if tr.uri is not None and not tr.uri.strip():
        raise UserError("tracking.uri must not be empty (null: MLflow's default)")


def validate(spec: RunSpec) -> None:
    """Value checks that types alone do not express.

    ``data.ratio`` is a fraction in (0, 1], not a percentage; counts are positive; rates
    are finite (lr > 0, momentum in [0, 1), weight decay and λ >= 0); strides, threads and
    patience are >= 1; seeds are non-negative; patch sides are multiples of 16; contract
    and variant are known names; the experiment has a name. The first check that fails
    raises a UserError.
    """
    _check_data(spec.data)
    _check_train(spec.train)
    _check_eval_tracking(spec)
    check_seed(spec.seed, "seed")
    if spec.method.variant not in ("reference", "paper", "fixed"):
        raise UserError(
            f"method.variant must be reference, paper or fixed, got {spec.method.variant!r}"
        )
