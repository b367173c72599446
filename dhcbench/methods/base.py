"""What the trainer knows about a method: the :class:`Method` interface and the registry.

The trainer (``dhcbench.benchmark``) never names a method: it builds one optimiser per
entry of :attr:`Method.networks`, calls :meth:`Method.training_step` with a
:class:`Batch`, steps the optimisers, calls :meth:`Method.after_optimizer_step`, and uses
:meth:`Method.predict` for evaluation. Everything a method learns or accumulates (networks,
weighting-strategy state, EMA teachers) is in :meth:`Method.state_dict`, so a resumed run
continues exactly.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dhcbench.errors import UserError
from dhcbench.interfaces import Batch, SetupContext, StepContext, StepOutput
from dhcbench.registry import Registry

# The step types live in dhcbench.interfaces; they stay importable from here.
__all__ = ["METHODS", "Batch", "Method", "MethodInfo", "SetupContext", "StepContext",
           "StepOutput"]


class Method:
    """Base class of every method. Subclasses set ``self.networks`` in ``__init__``.

    Images are ``(B, C, D, H, W)`` float, labels ``(B, D, H, W)`` int64 and logits
    ``(B, K, D, H, W)`` float, with K counting the background. ``frozen_by_design`` lists
    parameter-name prefixes (``<network>.<parameter>``) that never receive a gradient in this
    variant (a documented quirk of the reference, e.g. DST's pseudo head);
    ``sometimes_without_gradient`` those whose gradient depends on the batch (SS-Net's
    per-class selectors get one only when their class has memory and features).
    """

    frozen_by_design: tuple[str, ...] = ()
    sometimes_without_gradient: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.networks: nn.ModuleDict = nn.ModuleDict()

    # -- lifecycle -------------------------------------------------------------------------
    def setup(self, labeled_counts: torch.Tensor, context: SetupContext | None = None) -> None:
        """Prepare for training; called once, before the first step.

        Args:
            labeled_counts: (K,) int64 voxel counts per class of the labeled ground truth.
            context: the run's sizes (unlabeled cases, iterations per epoch).
        """

    def to(self, device: torch.device) -> Method:
        """Move the networks (and any state a subclass keeps) to ``device``; returns self."""
        self.networks.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        """Put every network in train mode (``mode=False``: eval mode)."""
        self.networks.train(mode)

    def eval(self) -> None:
        """Put every network in eval mode."""
        self.train(False)

    # -- steps -----------------------------------------------------------------------------
    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        """One training step's loss, to back-propagate, and what to log.

        Args:
            batch: the labeled and unlabeled patches of this step.
            ctx: the schedule values (epoch, iteration, λ_t, learning rate).

        Returns:
            The scalar loss (0-d float, with gradient) and detached scalars and (K,) vectors.
        """
        raise NotImplementedError

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """Hook after the optimisers stepped (EMA teachers update here)."""

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, D, H, W)`` for ``(B, C, D, H, W)`` in eval mode."""
        raise NotImplementedError

    def optimized_networks(self) -> dict[str, nn.Module]:
        """Networks that get an optimiser of their own (teachers are excluded)."""
        return dict(self.networks.items())

    # -- state -----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """State beyond the networks' parameters (weighting strategies, banks …)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""
        del state

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: ``{"networks": ..., "extra": extra_state()}``."""
        return {"networks": self.networks.state_dict(), "extra": self.extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (``extra`` may be missing)."""
        self.networks.load_state_dict(state["networks"])
        self.load_extra_state(dict(state.get("extra", {})))


@dataclass(frozen=True)
class MethodInfo:
    """A registry entry: how to build a method and what to say about it.

    ``factory(num_classes=, in_channels=, base_filters=, variant=, **kwargs)`` builds the
    method; :attr:`defaults` are its keyword arguments' defaults, read from the factory's
    signature (so each is written once, there), and ``train_overrides`` the run-spec values
    it changes (for example its own λ). Register one with :func:`register_method`.
    """

    key: str
    title: str
    family: str  # general | imbalance | ours | bound
    paper: str
    factory: Callable[..., Method]
    networks: str
    description: str
    variants: tuple[str, ...] = ("reference",)
    data_mode: str = "semi"  # semi | labeled (labeled cases only) | all (every training case)
    reference_lambda: str = "0.1"  # λ of the reference script's code default, for the record
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, Any] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        """The factory's keyword arguments beyond the build arguments, with their defaults."""
        return keyword_defaults(self.factory, BUILD_ARGS)

    def build(
        self,
        *,
        num_classes: int,
        in_channels: int,
        base_filters: int,
        variant: str,
        kwargs: Mapping[str, Any],
    ) -> Method:
        """Instantiate the method, validating the variant and the keyword arguments."""
        if variant not in self.variants:
            raise UserError(
                f"method {self.key!r} has no variant {variant!r}"
                f" (valid: {', '.join(self.variants)})"
            )
        defaults = self.defaults  # read from the factory's signature: once
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(defaults), n=1)
            raise UserError(
                f"method {self.key!r} takes no argument {unknown[0]!r}"
                + (f"; did you mean method.kwargs.{close[0]}?" if close else
                   f" (valid: {', '.join(sorted(defaults)) or 'none'})")
            )
        args = {**defaults, **kwargs}
        try:
            return self.factory(
                num_classes=num_classes,
                in_channels=in_channels,
                base_filters=base_filters,
                variant=variant,
                **args,
            )
        except ValueError as exc:  # a keyword argument the method's parts refuse
            raise UserError(f"method {self.key!r}: bad method.kwargs ({exc})") from exc


FAMILIES = ("bound", "general", "imbalance", "ours", "ablation")

#: The search space every semi-supervised method shares: learning rate and λ (log scales).
LR_LAMBDA_SPACE: dict[str, tuple[str, float, float]] = {
    "lr": ("log_float", 1e-3, 1e-1),
    "lambda": ("log_float", 1e-2, 1.0),
}

#: Every method by key.
METHODS: Registry[MethodInfo] = Registry("method")


#: What every factory takes from the run (the rest are the method's own keyword arguments).
BUILD_ARGS = ("num_classes", "in_channels", "base_filters", "variant")


def register_method(key: str, factory: Callable[..., Method] | None = None, *,
                    aliases: tuple[str, ...] = (), **fields: Any) -> Any:
    """Register a method under ``key`` in :data:`METHODS`.

    Either ``register_method(key, factory, title=…, …)``, or as a decorator of the factory
    (``@register_method(key, title=…, …)``). ``fields`` are the other :class:`MethodInfo`
    fields; the defaults come from the factory's signature.
    """

    def add(func: Callable[..., Method]) -> Callable[..., Method]:
        METHODS.add(key, MethodInfo(key=key, factory=func, **fields), aliases=aliases)
        return func

    return add if factory is None else add(factory)


def one_line(text: str) -> str:
    """``text`` on one line: each run of white space (line breaks, indentation) one space.

    The registry's prose (papers, descriptions) is written as wrapped triple-quoted
    paragraphs and stored and shown as one line.
    """
    return " ".join(text.split())


def semi_supervised_output(sup: torch.Tensor, unsup: torch.Tensor, ctx: StepContext,
                           **extra: torch.Tensor) -> StepOutput:
    """The step's objective ``sup + λ_t · unsup`` with its terms logged.

    Args:
        sup: 0-d float supervised loss.
        unsup: 0-d float unsupervised loss, weighted by ``ctx.unsup_weight`` (λ_t).
        ctx: the step's schedule values.
        **extra: more 0-d terms to log after ``loss_sup`` and ``loss_unsup``.

    Returns:
        The loss, and the detached terms as scalars.
    """
    loss = sup + ctx.unsup_weight * unsup
    scalars = {"loss_sup": sup.detach(), "loss_unsup": unsup.detach()}
    scalars.update({name: value.detach() for name, value in extra.items()})
    return StepOutput(loss=loss, scalars=scalars)


def register_semi_supervised(key: str, factory: Callable[..., Method] | None = None,
                             **fields: Any) -> Any:
    """:func:`register_method` for a semi-supervised method.

    Its search space is the learning rate and λ (:data:`LR_LAMBDA_SPACE`) unless
    ``search_space`` is among ``fields``; used like :func:`register_method`.
    """
    return register_method(key, factory, **{"search_space": LR_LAMBDA_SPACE, **fields})


def check_kwarg(name: str, value: Any, *, integer: bool = False, low: float | None = None,
                high: float | None = None, low_open: bool = False, high_open: bool = False
                ) -> None:
    """A UserError naming ``method.kwargs.<name>`` unless ``value`` is a number in range.

    ``integer`` asks for an int; ``low``/``high`` bound the value, excluded when
    ``low_open``/``high_open``. Bools, text and non-finite numbers are refused.
    """
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
        if low is not None and high is not None:
            want = f"in {lo}, {hi}"
        elif low is not None:
            want = f"{'>' if low_open else '>='} {low:g}"
        else:
            want = f"{'<' if high_open else '<='} {high:g}"
        kind = "an integer" if integer else "a number"
        raise UserError(f"method.kwargs.{name} must be {kind} {want}, got {value!r}")


def keyword_defaults(func: Callable[..., Any], skip: tuple[str, ...]) -> dict[str, Any]:
    """The keyword arguments of ``func`` with their defaults, leaving out ``skip``."""
    sig = inspect.signature(func)
    return {
        name: p.default
        for name, p in sig.parameters.items()
        if name not in skip and p.default is not inspect.Parameter.empty
    }
