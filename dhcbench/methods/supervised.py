"""The bounds of the paper's tables: a single V-Net trained on labeled data only.

``fully`` trains on every training case (the upper bound, "V-Net (fully)", reference §8.12:
batch 4 labeled patches, each case once per epoch, no early stopping); ``labeled-only``
trains on the labeled cases of the split (the lower bound) with the same schedule as the
semi-supervised methods (2 labeled patches per step, the labeled list repeated to the
unlabeled length). Both use unweighted CE + Dice and PyTorch's default initialisation.
"""

from __future__ import annotations

import torch

from dhcbench.methods.base import Batch, Method, StepContext, StepOutput, register_method
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
        loss = ce_plus_dice(self.networks["net"](batch.image_l), batch.label_l)
        return StepOutput(loss=loss, scalars={"loss_sup": loss.detach()})

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return self.networks["net"](image)


def _supervised(**kwargs: object) -> Supervised:
    return Supervised(**kwargs)  # type: ignore[arg-type]


register_method(
    "fully", title="V-Net (fully)", family="bound",
    paper="Milletari et al., V-Net, 3DV 2016 (trained on every training case: upper bound)",
    factory=_supervised, networks="1 V-Net (default init)",
    description="Supervised V-Net on all training cases, batch 4, no early stopping"
                " (reference §8.12).",
    data_mode="all", reference_lambda="not used",
    train_overrides={"train": {"batch_labeled": 4, "patience": None}},
    search_space={"lr": ("log_float", 1e-3, 1e-1)},
    aliases=("vnet_fully",),
)
register_method(
    "labeled-only", title="V-Net (labeled only)", family="bound",
    paper="Milletari et al., V-Net, 3DV 2016 (trained on the labeled cases: lower bound)",
    factory=_supervised, networks="1 V-Net (default init)",
    description="Supervised V-Net on the labeled cases only, with the semi-supervised"
                " methods' schedule (2 labeled patches per step).",
    data_mode="labeled", reference_lambda="not used",
    search_space={"lr": ("log_float", 1e-3, 1e-1)},
)
