"""Mean-teacher methods on the co-training step: UA-MT and Basak et al.

Each is the ``mean_teacher`` topology of :class:`~dhcbench.methods.cotraining.CoTraining` — one
student V-Net and an EMA teacher (its update, the reference's epoch-based decay and the
``fixed`` variant's step-based one are documented there) — with its pseudo-labeler from
:mod:`dhcbench.methods.pseudo` and unweighted supervised losses. Predictions come from the
student. As in the DHC code:

- ``uamt``, UA-MT (Yu et al., MICCAI 2019; reference §8.2): default-initialised V-Nets;
  supervised 0.5 (CE + negative foreground Dice, smooth 1e-8); the ``uamt`` labeler's
  uncertainty-masked consistency. ``variant="fixed"``: EMA decay from the global step and
  the uncertainty threshold with ln K instead of the binary ln 2.
- ``basak``, Basak et al. (MICCAI 2022, "ACISIS"; reference §8.10): Kaiming-initialised
  V-Nets; supervised CE + Dice; the ``basak`` labeler's class-wise sampling of the teacher's
  argmax. ``variant="fixed"``: EMA decay from the global step.
"""

from __future__ import annotations

from typing import Any

from dhcbench.methods.base import one_line, register_semi_supervised
from dhcbench.methods.cotraining import Branch, CoTraining

#: How the registry describes each initialisation of the student and teacher.
_INIT_NAMES = {"default": "default init", "kaiming": "Kaiming"}


def _register_mean_teacher(key: str, init: str, sup_loss: str, **fields: Any) -> None:
    """Register ``key``: a mean teacher taught by the pseudo-labeler of the same key.

    Args:
        key: the method's key and its pseudo-labeler's.
        init: the student's and the teacher's initialiser (``default`` or ``kaiming``).
        sup_loss: the supervised loss (see :func:`~dhcbench.methods.cotraining.supervised_loss`).
        **fields: the other :class:`~dhcbench.methods.base.MethodInfo` fields.
    """

    def factory(*, num_classes: int, in_channels: int, base_filters: int,
                variant: str) -> CoTraining:
        return CoTraining(num_classes=num_classes, in_channels=in_channels,
                          base_filters=base_filters, variant=variant,
                          branch_a=Branch(None, init), topology="mean_teacher",
                          sup_loss=sup_loss, pseudo=key)

    register_semi_supervised(key, factory, variants=("reference", "fixed"),
                             networks=f"student V-Net + EMA teacher ({_INIT_NAMES[init]})",
                             **fields)


_register_mean_teacher(
    "uamt", "default", "(ce+dice)/2", title="UA-MT", family="general",
    paper=one_line("""
        Yu et al., Uncertainty-aware self-ensembling model for semi-supervised 3D left
        atrium segmentation, MICCAI 2019
    """),
    description=one_line("""
        Mean teacher with uncertainty-masked consistency (T = 8 noisy teacher passes). The
        reference takes the EMA decay from the epoch and thresholds with ln 2;
        variant='fixed' uses the global step and ln K (reference §8.2, §12 item 24).
    """),
    reference_lambda="1 (train_uamt.py default)",
)
_register_mean_teacher(
    "basak", "kaiming", "w_ce+dice", title="Basak et al.", family="imbalance",
    aliases=("acisis",), reference_lambda="1 (train_acisis.py default)",
    paper=one_line("""
        Basak et al., Addressing class imbalance in semi-supervised image segmentation: a
        study on cardiac MRI, MICCAI 2022
    """),
    description=one_line("""
        Mean teacher whose pseudo-labelled voxels are sampled per class by a difficulty
        score updated once per epoch. The reference takes the EMA decay from the epoch;
        variant='fixed' uses the global step (reference §8.10).
    """),
)
