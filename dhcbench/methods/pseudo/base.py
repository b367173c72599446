"""The pseudo-labeling slot: what a labeler is given, what it returns, its state and registry.

A pseudo-labeler turns what the learners predicted in one step into the targets each
learner is taught by the unsupervised objective; it computes no loss. The co-training step
(:mod:`dhcbench.methods.cotraining`) applies the unsupervised loss once, from the returned
:class:`PseudoTargets`. A labeler works on one topology:

- ``cross``: two branches ``a`` and ``b`` see labeled ⊕ unlabeled samples and each is taught
  from the other's predictions (cross pseudo supervision); targets cover every sample.
- ``mean_teacher``: a ``student`` is taught from an EMA teacher, which the labeler runs itself
  (:attr:`PseudoInput.teacher` on :attr:`PseudoInput.image_u`); targets cover the unlabeled
  samples only (``start = n_l``).

A labeler keeps its state (priors, banks, thresholds) in the attributes named by
``state_names`` — tensors, or dicts of tensors keyed by branch — and :class:`TensorState`
moves, exports and restores them, once for all. A new labeler is one module of this package:
a :class:`PseudoLabeler` subclass decorated with ``@pseudo_labeler("key")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch

from dhcbench.interfaces import SetupContext, StepContext
from dhcbench.methods.losses import class_argmax
from dhcbench.registry import Registry

#: The branch each branch of the cross topology learns from.
OTHER = {"a": "b", "b": "a"}
TOPOLOGIES = ("cross", "mean_teacher")


@dataclass(frozen=True)
class PseudoInput:
    """One step, as a labeler sees it (read what you need).

    ``logits``: each learner's ``(B, K, D, H, W)`` float logits on labeled ⊕ unlabeled
    samples (the first ``n_l`` labeled, ``labels_l`` ``(n_l, D, H, W)`` int64 their ground
    truth); ``weights``: each learner's class weights ``(K,)`` float32 from its weighting
    strategy, None when it has none; ``teacher``, ``image_u`` ``(B_u, C, D, H, W)`` and
    ``ctx``: the EMA teacher, the unlabeled images and the step context (mean-teacher
    topology); ``argmax``: each learner's ``class_argmax`` of its logits ``(B, D, H, W)``
    int64, computed once by the step and shared (read it through :meth:`argmax_of`).
    """

    logits: dict[str, torch.Tensor]
    n_l: int
    labels_l: torch.Tensor
    weights: dict[str, torch.Tensor | None] = field(default_factory=dict)
    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None
    image_u: torch.Tensor | None = None
    ctx: StepContext | None = None
    argmax: dict[str, torch.Tensor] = field(default_factory=dict)

    def argmax_of(self, key: str) -> torch.Tensor:
        """Learner ``key``'s argmax (B, D, H, W) int64: the step's, or computed here."""
        found = self.argmax.get(key)
        return class_argmax(self.logits[key]) if found is None else found


@dataclass(frozen=True)
class PseudoTargets:
    """What one learner is taught.

    The samples ``start:`` of its logits are compared with:

    - ``target`` ``(B, D, H, W)`` long: the pseudo-label of each voxel;
    - ``mask`` ``(B, D, H, W)`` float in [0, 1]: a per-voxel factor (None: every voxel);
    - ``weight`` ``(K,)``: class weights (None: unweighted);
    - ``logit_scale`` / ``logit_shift``: the learner's logits are multiplied by the one and
      then shifted by the other before the loss (broadcast to ``(B, K, D, H, W)``);
    - ``soft`` ``(B, K, D, H, W)``: soft targets (probabilities) of a squared-error
      consistency, which then replaces the CE on ``target``.

    How they are learned is :func:`dhcbench.methods.cotraining.unsupervised_loss`. ``logs``:
    scalars or ``(K,)`` vectors the step reports under their names.
    """

    target: torch.Tensor
    mask: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None
    logit_shift: torch.Tensor | None = None
    soft: torch.Tensor | None = None
    start: int = 0
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


def _map(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` applied to a tensor or to each tensor of a dict; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    return value


class TensorState:
    """State handling from ``state_names`` (tensors or dicts of tensors), written once."""

    #: Names of the attributes that make up the state (exported by ``state_dict``).
    state_names: ClassVar[tuple[str, ...]] = ()

    def to(self, device: torch.device | str) -> Any:
        """Move the state tensors to ``device``; returns self."""
        for name in self.state_names:
            setattr(self, name, _map(getattr(self, name), lambda t: t.to(device)))
        return self

    def state_dict(self) -> dict[str, Any]:
        """Copies of the state (detached)."""
        return {name: _map(getattr(self, name), lambda t: t.detach().clone())
                for name in self.state_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore (copies of) the entries of ``state`` named in ``state_names``."""
        for name in self.state_names:
            if name in state:
                setattr(self, name, _map(state[name], lambda t: t.clone()))


class PseudoLabeler(TensorState):
    """The interface: ``setup`` once, then ``targets`` each step.

    ``targets`` runs under ``torch.no_grad()`` and returns one :class:`PseudoTargets` per
    learner of its ``topology``. ``variant`` is the method's (``"reference"``: the DHC code;
    ``"fixed"``: the method's paper where they differ).
    """

    topology: ClassVar[str] = "cross"

    def __init__(self, num_classes: int, variant: str = "reference") -> None:
        self.num_classes = num_classes
        self.variant = variant

    def setup(self, labeled_counts: torch.Tensor, context: SetupContext) -> None:
        """Called once before training: the labeled class counts (K,) and the run's sizes."""
        del labeled_counts, context

    def targets(self, inp: PseudoInput) -> dict[str, PseudoTargets]:
        """Make this step's targets.

        Args:
            inp: the learners' logits and what else the step offers.

        Returns:
            One :class:`PseudoTargets` per learner (``a`` and ``b``, or ``student``).
        """
        raise NotImplementedError


#: Pseudo-labelers by key (``pseudo=`` of :class:`~dhcbench.methods.cotraining.CoTraining`).
PSEUDO_LABELERS: Registry[type[PseudoLabeler]] = Registry("pseudo-labeler")

P = TypeVar("P", bound=type[PseudoLabeler])


def pseudo_labeler(key: str) -> Callable[[P], P]:
    """Class decorator: register the labeler in :data:`PSEUDO_LABELERS` under ``key``."""

    def decorate(cls: P) -> P:
        if not (isinstance(cls, type) and issubclass(cls, PseudoLabeler)):
            raise TypeError(f"@pseudo_labeler({key!r}) decorates PseudoLabeler subclasses")
        if cls.topology not in TOPOLOGIES:
            raise ValueError(f"pseudo-labeler {key!r}: topology must be one of {TOPOLOGIES}")
        PSEUDO_LABELERS.add(key, cls)
        return cls

    return decorate
