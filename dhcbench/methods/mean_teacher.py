"""Mean-teacher methods on the co-training step: UA-MT and Basak et al.

Each is the ``mean_teacher`` topology of :class:`~dhcbench.methods.cotraining.CoTraining` — one
student V-Net and an EMA teacher (its update, the reference's epoch-based decay and the
``fixed`` variant's step-based one are documented there) — with its pseudo-labeler from
:mod:`dhcbench.methods.pseudo` (``uamt``: uncertainty-masked consistency; ``basak``:
class-wise sampling) and unweighted supervised losses. Predictions come from the student.
"""

from __future__ import annotations

from dhcbench.methods.base import LR_LAMBDA_SPACE, register_method
from dhcbench.methods.cotraining import Branch, CoTraining


def make_uamt(*, num_classes: int, in_channels: int, base_filters: int,
              variant: str) -> CoTraining:
    """UA-MT (Yu et al., MICCAI 2019) as in the DHC code (reference §8.2): default-initialised
    V-Nets; supervised 0.5 (CE + negative foreground Dice, smooth 1e-8); the ``uamt`` labeler's
    uncertainty-masked consistency. ``variant="fixed"``: EMA decay from the global step and
    the uncertainty threshold with ln K instead of the binary ln 2."""
    return CoTraining(num_classes=num_classes, in_channels=in_channels,
                      base_filters=base_filters, variant=variant,
                      branch_a=Branch(None, "default"), topology="mean_teacher",
                      sup_loss="(ce+dice)/2", pseudo="uamt")


def make_basak(*, num_classes: int, in_channels: int, base_filters: int,
               variant: str) -> CoTraining:
    """Basak et al. (MICCAI 2022, "ACISIS") as in the DHC code (reference §8.10):
    Kaiming-initialised V-Nets; supervised CE + Dice; the ``basak`` labeler's class-wise
    sampling of the teacher's argmax. ``variant="fixed"``: EMA decay from the global step."""
    return CoTraining(num_classes=num_classes, in_channels=in_channels,
                      base_filters=base_filters, variant=variant,
                      branch_a=Branch(None, "kaiming"), topology="mean_teacher",
                      sup_loss="w_ce+dice", pseudo="basak")


register_method(
    "uamt", title="UA-MT", family="general",
    paper="Yu et al., Uncertainty-aware self-ensembling model for semi-supervised 3D left"
          " atrium segmentation, MICCAI 2019",
    factory=make_uamt, networks="student V-Net + EMA teacher (default init)",
    description="Mean teacher with uncertainty-masked consistency (T = 8 noisy teacher"
                " passes). The reference takes the EMA decay from the epoch and thresholds"
                " with ln 2; variant='fixed' uses the global step and ln K (reference §8.2,"
                " §12 item 24).",
    variants=("reference", "fixed"), reference_lambda="1 (train_uamt.py default)",
    search_space=LR_LAMBDA_SPACE,
)
register_method(
    "basak", title="Basak et al.", family="imbalance",
    paper="Basak et al., Addressing class imbalance in semi-supervised image segmentation:"
          " a study on cardiac MRI, MICCAI 2022",
    factory=make_basak, networks="student V-Net + EMA teacher (Kaiming)",
    description="Mean teacher whose pseudo-labelled voxels are sampled per class by a"
                " difficulty score updated once per epoch. The reference takes the EMA decay"
                " from the epoch; variant='fixed' uses the global step (reference §8.10).",
    variants=("reference", "fixed"), reference_lambda="1 (train_acisis.py default)",
    search_space=LR_LAMBDA_SPACE,
    aliases=("acisis",),
)
