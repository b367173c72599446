"""The class-weighting interface, its state handling and the WEIGHTINGS registry.

Every strategy maps what a branch sees in one iteration to a class-weight vector ``(K,)``
(K counts the background) used in that branch's supervised and unsupervised losses:

- ``reset(labeled_counts)`` -> the initial weights, from the voxel counts ``(K,)`` of the
  labeled ground truth (whole labeled volumes);
- ``update(logits_l=..., labels_l=..., logits_u=...)`` -> this iteration's weights. Logits are
  ``(B, K, D, H, W)``, labels ``(B, D, H, W)`` long; each strategy reads what it needs and
  ignores the rest. Call it under ``torch.no_grad()``.

``variant="reference"`` (default) reproduces the official DHC code exactly (reference §7.1,
§7.2, §8.8, §8.9), including its ×K scaling and EMA forms; ``variant="paper"`` follows the
DHC paper's Eq. 3–5 where they differ (reference §12 items 3–9). Strategies keep their state
as the tensors named in ``state_names`` and export it through ``state_dict`` so a resumed
run continues exactly. All histograms are computed on the logits' device with
``scatter_add_`` (no host round-trip); the co-training step calls :meth:`observe`, passing
the argmax it computes once per branch for every consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

import torch

from dhcbench.methods.losses import class_argmax
from dhcbench.methods.weighting.functional import ema
from dhcbench.registry import Registry

VARIANTS = ("reference", "paper")


class WeightingStrategy:
    """Base class: holds the current weights and the tensors of its state.

    A subclass implements ``reset`` and ``update``, sets ``title`` and lists any state
    tensor beyond ``weights`` in ``state_names``; moving, exporting and restoring the state
    is done here, once, for all of them.
    """

    #: The strategy's name in the DHC paper's ablation table (Table 3), e.g. ``"DistDW"``;
    #: the generated ``<a>-<b>`` pairings are titled from it.
    title: ClassVar[str] = ""
    #: Whether ``reset`` refuses (with a UserError) a class absent from the labeled counts.
    requires_every_class: ClassVar[bool] = False
    #: Whether ``update`` moves the weights; False: fixed by ``reset``, returned unchanged.
    adaptive: ClassVar[bool] = True
    #: Names of the tensor attributes that make up the state (exported by state_dict).
    state_names: ClassVar[tuple[str, ...]] = ("weights",)

    def __init__(self, num_classes: int, variant: str = "reference") -> None:
        if variant == "fixed":  # methods' "fixed" variant: the strategies as in the code
            variant = "reference"
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if num_classes < 2:
            raise ValueError("num_classes counts the background and must be >= 2")
        self.num_classes = num_classes
        self.variant = variant
        self.weights = torch.ones(num_classes, dtype=torch.float64)

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """Initialise the state from the labeled ground truth.

        Args:
            labeled_counts: (K,) integer voxel counts per class of the labeled volumes.

        Returns:
            The initial weights, (K,) float32.
        """
        raise NotImplementedError

    def update(
        self,
        logits_l: torch.Tensor | None = None,
        labels_l: torch.Tensor | None = None,
        logits_u: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Advance the state by one iteration and return its weights.

        Args:
            logits_l: (B_l, K, D, H, W) float logits of the labeled patches.
            labels_l: (B_l, D, H, W) int64 ground truth of the labeled patches.
            logits_u: (B_u, K, D, H, W) float logits of the unlabeled patches.

        Returns:
            This iteration's weights, (K,) float32 on the logits' device.
        """
        raise NotImplementedError

    def observe(
        self,
        *,
        logits_l: torch.Tensor | None = None,
        labels_l: torch.Tensor | None = None,
        logits_u: torch.Tensor | None = None,
        argmax_l: torch.Tensor | None = None,
        argmax_u: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`update` as the co-training step calls it, with the argmaxes it has already.

        ``argmax_l`` and ``argmax_u`` are ``class_argmax`` of ``logits_l`` and ``logits_u``,
        (B, D, H, W) int64: a strategy that counts argmaxes overrides this method to use them
        rather than compute its own. The default ignores them and calls :meth:`update`.
        """
        del argmax_l, argmax_u
        return self.update(logits_l=logits_l, labels_l=labels_l, logits_u=logits_u)

    @staticmethod
    def _argmax(logits: torch.Tensor | None, argmax: torch.Tensor | None) -> torch.Tensor | None:
        """``argmax`` when given, else ``class_argmax(logits)`` (None when neither is)."""
        if argmax is not None or logits is None:
            return argmax
        return class_argmax(logits)

    def _require(self, what: str, *tensors: torch.Tensor | None) -> None:
        """Raise ``ValueError("<Class>.update needs <what>")`` if any of ``tensors`` is None."""
        if any(t is None for t in tensors):
            raise ValueError(f"{type(self).__name__}.update needs {what}")

    def current(self) -> torch.Tensor:
        """The latest weights (K,) float32."""
        return self.weights.float()

    def to(self, device: torch.device | str) -> WeightingStrategy:
        """Move the state tensors to ``device``."""
        for name in self.state_names:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the state tensors."""
        return {name: getattr(self, name).detach().clone() for name in self.state_names}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore tensors written by :meth:`state_dict` (kept on their current device)."""
        for name in self.state_names:
            current = getattr(self, name)
            setattr(self, name, state[name].to(device=current.device, dtype=current.dtype))


class EMAWeighting(WeightingStrategy):
    """A strategy whose weights are an EMA of per-iteration raw weights.

    DistDW, CReST and SimiS differ only in how they turn one iteration into raw weights;
    :meth:`smooth` folds those in as ``W <- momentum * W + (1 - momentum) * w`` (0.99 in
    the reference code for all three).
    """

    def __init__(
        self, num_classes: int, momentum: float = 0.99, variant: str = "reference"
    ) -> None:
        super().__init__(num_classes, variant)
        self.momentum = momentum

    def smooth(self, raw: torch.Tensor) -> torch.Tensor:
        """Fold this iteration's raw weights into the EMA.

        Args:
            raw: (K,) float64 raw weights; the state moves to their device.

        Returns:
            The smoothed weights, (K,) float32.
        """
        self.weights = ema(self.weights.to(raw.device), raw, self.momentum)
        return self.current()


#: Weighting strategies by key; pairings such as ``diffdw-distdw`` combine two of them.
WEIGHTINGS: Registry[type[WeightingStrategy]] = Registry("weighting")

S = TypeVar("S", bound=type[WeightingStrategy])


def weighting(key: str) -> Callable[[S], S]:
    """Class decorator: register the strategy in :data:`WEIGHTINGS` under ``key``.

    The class must set ``title``; registering it also makes the ``<key>-<other>`` ablation
    pairings of :mod:`dhcbench.methods.cotraining_methods` (for every other registered strategy).
    """

    def decorate(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, WeightingStrategy)):
            raise TypeError(f"@weighting({key!r}) decorates WeightingStrategy subclasses")
        if not cls.title:
            raise ValueError(f"weighting {key!r} ({cls.__name__}) needs a title")
        WEIGHTINGS.add(key, cls)
        return cls

    return decorate
