"""The types that cross the package's layers: what the trainer hands a method and gets back.

Methods, datasets (whose loaders build :class:`Batch`) and the training engine all import
these from here, so no layer reaches up into another to find them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    """One training step's input: labeled and unlabeled patches (reference §3.3: 2 + 2).

    ``image_l`` (B_l, C, D, H, W) float, ``label_l`` (B_l, D, H, W) long, ``image_u``
    (B_u, C, D, H, W) float. Unlabeled patches never carry labels.
    """

    image_l: torch.Tensor
    label_l: torch.Tensor
    image_u: torch.Tensor

    @property
    def n_l(self) -> int:
        """How many labeled patches come first in :meth:`images` (B_l)."""
        return self.image_l.shape[0]

    def images(self) -> torch.Tensor:
        """The labeled then the unlabeled patches, ``(B_l + B_u, C, D, H, W)`` float.

        What every learner sees in one step (reference §7: one forward pass over both,
        no perturbation); its first :attr:`n_l` samples are the labeled ones.
        """
        return torch.cat([self.image_l, self.image_u])

    def to(self, device: torch.device) -> Batch:
        """A copy with the three tensors on ``device`` (copied without blocking)."""
        return Batch(
            self.image_l.to(device, non_blocking=True),
            self.label_l.to(device, non_blocking=True),
            self.image_u.to(device, non_blocking=True),
        )


@dataclass(frozen=True)
class SetupContext:
    """What a method may need to know about the run before training starts."""

    num_unlabeled: int = 0
    iterations_per_epoch: int = 1


@dataclass
class StepContext:
    """Schedule values of the current step (set by the trainer)."""

    epoch: int
    iteration: int  # global iteration count, 0-based
    unsup_weight: float  # λ_t after ramp-up
    max_epochs: int
    lr: float


@dataclass
class StepOutput:
    """The loss to back-propagate and what to log.

    ``scalars`` are 0-d tensors (``loss_sup``, ``loss_unsup`` …) and ``vectors`` are (K,)
    tensors (``weight_a``, ``weight_b``), averaged over the epoch by the trainer and read back
    to the host only when logged.
    """

    loss: torch.Tensor
    scalars: dict[str, torch.Tensor] = field(default_factory=dict)
    vectors: dict[str, torch.Tensor] = field(default_factory=dict)
