"""The bounds of the paper's tables: a single V-Net trained on labeled data only.

``fully`` trains on every training case (the upper bound, "V-Net (fully)", reference §8.12:
batch 4 labeled patches, each case once per epoch, no early stopping); ``labeled-only``
trains on the labeled cases of the split (the lower bound) with the same schedule as the
semi-supervised methods (2 labeled patches per step, the labeled list repeated to the
unlabeled length). Both use unweighted CE + Dice and PyTorch's default initialisation.
"""

from __future__ import annotations

from typing import Any

import torch

from dhcbench.interfaces import Batch, StepContext, StepOutput
from dhcbench.methods.base import Method, one_line, register_method
from dhcbench.methods.losses import ce_plus_dice
from dhcbench.methods.networks import VNet


class Supervised(Method):
    """One V-Net, unweighted CE + negative soft Dice on labeled patches."""

    def __init__(self, *, num_classes: int, in_channels: int, base_filters: int,
                 variant: str) -> None:
        super().__init__()
        del variant
        self.networks["net"] = VNet(in_channels, num_classes, base_filters, has_dropout=True)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        """CE + Dice on ``image_l`` only (``image_u`` and λ_t unused); logs ``loss_sup``."""
        loss = ce_plus_dice(self.networks["net"](batch.image_l), batch.label_l)
        return StepOutput(loss=loss, scalars={"loss_sup": loss.detach()})

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """The V-Net's logits (B, K, D, H, W)."""
        return self.networks["net"](image)


def _register_bound(key: str, bound: str, trained_on: str, **fields: Any) -> None:
    """Register :class:`Supervised` as a bound of the tables, trained on ``trained_on``.

    ``bound`` names it in the title ("V-Net (<bound>)"); ``fields`` are the other
    :class:`~dhcbench.methods.base.MethodInfo` fields (description, data mode, …).
    """
    register_method(key, Supervised, title=f"V-Net ({bound})", family="bound",
                    paper=f"Milletari et al., V-Net, 3DV 2016 (trained on {trained_on})",
                    networks="1 V-Net (default init)", reference_lambda="not used",
                    search_space={"lr": ("log_float", 1e-3, 1e-1)}, **fields)


_register_bound(
    "fully", "fully", "every training case: upper bound", data_mode="all",
    description=one_line("""
        Supervised V-Net on all training cases, batch 4, no early stopping (reference
        §8.12).
    """),
    train_overrides={"train": {"batch_labeled": 4, "patience": None}}, aliases=("vnet_fully",),
)
_register_bound("labeled-only", "labeled only", "the labeled cases: lower bound",
                data_mode="labeled",
                description=one_line("""
                    Supervised V-Net on the labeled cases only, with the semi-supervised
                    methods' schedule (2 labeled patches per step).
                """))
