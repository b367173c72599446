"""The contract of every registered pseudo-labeler (parametrised over ``PSEUDO_LABELERS``
and both variants, so a new labeler is tested for free):

- ``targets`` returns one :class:`PseudoTargets` per learner of its topology: ``target``
  long ``(B, D, H, W)`` in [0, K) for the samples ``start:`` (all, or the unlabeled ones),
  ``mask`` float in [0, 1] of the same shape, ``(K,)`` class weights, logit factors that
  broadcast to the logits, soft targets that are distributions, scalar or ``(K,)`` logs;
  the co-training step's loss on them is finite and has a finite gradient;
- the argmax the co-training step computes once per learner (``PseudoInput.argmax``) gives
  the same targets as the labeler's own;
- the state round-trips: ``state_dict`` -> a fresh instance -> identical next outputs, and
  the exported state is a copy; a move to the CPU keeps the state and the outputs;
- registration: a labeler decorated in this file joins a (throw-away) registry and is
  usable by the co-training step, with no state code of its own; a module dropped into
  the package is imported and registered.

Small inputs: K = 4, two labeled and two unlabeled samples of 1 × 2 × 3 voxels, random
logits; the teacher of the mean-teacher topology is a fixed function of its input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import dhcbench.methods.cotraining as cotraining
import dhcbench.methods.pseudo as pseudo_package
import dhcbench.methods.pseudo.base as pseudo_base
from dhcbench.interfaces import Batch, SetupContext, StepContext
from dhcbench.methods.cotraining import Branch, CoTraining, unsupervised_loss
from dhcbench.methods.pseudo import (
    PSEUDO_LABELERS,
    PseudoInput,
    PseudoLabeler,
    PseudoTargets,
    pseudo_labeler,
)
from dhcbench.registry import Registry

K = 4
N_L = 2
SPATIAL = (1, 2, 3)
LABELS = torch.tensor([[[[0, 1, 1], [0, 3, 2]]], [[[0, 0, 0], [0, 1, 3]]]])
COUNTS = torch.tensor([40, 10, 5, 1])
#: Adsh refreshes its thresholds every step, Basak et al. their rates every second step.
SETUP = SetupContext(num_unlabeled=8, iterations_per_epoch=2)
HISTORY = 5
LEARNERS = {"cross": ("a", "b"), "mean_teacher": ("student",)}
CASES = [pytest.param(key, variant, id=f"{key}-{variant}")
         for key in PSEUDO_LABELERS for variant in ("reference", "fixed")]


def _teacher(x: torch.Tensor) -> torch.Tensor:
    """A fixed 'network': (B, 1, D, H, W) -> (B, K, D, H, W) logits."""
    return torch.cat([(x - 0.5) * (3.0 * c - 4.0) for c in range(K)], 1)


def _input(topology: str, seed: int) -> PseudoInput:
    g = torch.Generator().manual_seed(seed)
    learners = LEARNERS[topology]
    return PseudoInput(
        logits={k: 3.0 * torch.randn(2 * N_L, K, *SPATIAL, generator=g) for k in learners},
        n_l=N_L, labels_l=LABELS,
        weights={k: torch.rand(K, generator=g) + 0.5 for k in learners},
        teacher=_teacher, image_u=torch.rand(N_L, 1, *SPATIAL, generator=g),
        ctx=StepContext(epoch=seed // 2, iteration=seed, unsup_weight=0.1, max_epochs=10,
                        lr=0.01))


def _labeler(key: str, variant: str, steps: int = 0) -> PseudoLabeler:
    """A registered labeler (K = 4, default arguments; built with the RNG seeded, as CLD
    draws its initial confidences), set up, after ``steps`` steps."""
    torch.manual_seed(1234)
    labeler = PSEUDO_LABELERS.get(key)(K, variant=variant)
    labeler.setup(COUNTS, SETUP)
    for seed in range(steps):
        _step(labeler, seed)
    return labeler


def _step(labeler: PseudoLabeler, seed: int) -> dict[str, PseudoTargets]:
    """One step's targets, under no_grad as in the co-training step, the RNG seeded."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return labeler.targets(_input(labeler.topology, seed))


def _same(a: Any, b: Any) -> bool:
    """Equality of tensors, dicts of them, PseudoTargets and plain values."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and torch.equal(a, b))
    if isinstance(a, PseudoTargets) and isinstance(b, PseudoTargets):
        return all(_same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _tensors(state: Any) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    return []


@pytest.mark.parametrize(("key", "variant"), CASES)
def test_targets_shapes_dtypes_and_a_finite_loss(key: str, variant: str) -> None:
    labeler = _labeler(key, variant)
    assert labeler.topology in LEARNERS
    for seed in range(HISTORY):
        inp = _input(labeler.topology, seed)
        torch.manual_seed(seed)
        with torch.no_grad():
            out = labeler.targets(inp)
        assert tuple(out) == LEARNERS[labeler.topology]
        for learner, t in out.items():
            assert t.start in (0, N_L)
            n = 2 * N_L - t.start
            full = (n, K, *SPATIAL)
            assert t.target.dtype == torch.long and t.target.shape == (n, *SPATIAL)
            assert 0 <= int(t.target.min()) and int(t.target.max()) < K
            if t.mask is not None:
                assert t.mask.is_floating_point() and t.mask.shape == (n, *SPATIAL)
                assert float(t.mask.min()) >= 0.0 and float(t.mask.max()) <= 1.0
            if t.weight is not None:
                assert t.weight.shape == (K,) and torch.isfinite(t.weight).all()
            for factor in (t.logit_scale, t.logit_shift):
                if factor is not None:
                    assert torch.broadcast_shapes(factor.shape, full) == full
                    assert torch.isfinite(factor).all()
            if t.soft is not None:
                assert t.soft.is_floating_point() and t.soft.shape == full
                assert torch.allclose(t.soft.sum(1), torch.ones(n, *SPATIAL))
            for value in t.logs.values():
                assert value.shape in ((), (K,)) and torch.isfinite(value).all()
            for name in ("wce", "ce+dice"):
                z = inp.logits[learner].clone().requires_grad_()
                loss = unsupervised_loss(name, z, t)
                assert loss.shape == () and torch.isfinite(loss)
                loss.backward()
                assert z.grad is not None and torch.isfinite(z.grad).all()
                assert not z.grad[: t.start].any()  # samples outside the targets: no gradient


@pytest.mark.parametrize(("key", "variant"), CASES)
def test_the_steps_argmax_gives_the_same_targets(key: str, variant: str) -> None:
    """The co-training step passes each learner's argmax once; the targets do not change."""
    a, b = _labeler(key, variant), _labeler(key, variant)
    for seed in range(3):
        inp = _input(a.topology, seed)
        shared = PseudoInput(**{**inp.__dict__, "argmax": {
            k: torch.max(z, 1).indices for k, z in inp.logits.items()}})
        assert all(torch.equal(shared.argmax_of(k), inp.argmax_of(k)) for k in inp.logits)
        torch.manual_seed(seed)
        with torch.no_grad():
            plain = a.targets(inp)
        torch.manual_seed(seed)
        with torch.no_grad():
            assert _same(b.targets(shared), plain)


def test_argmax_of_reads_the_given_argmax() -> None:
    inp = _input("cross", 0)
    given = torch.zeros(2 * N_L, *SPATIAL, dtype=torch.long)
    shared = PseudoInput(**{**inp.__dict__, "argmax": {"a": given}})
    assert shared.argmax_of("a") is given
    assert torch.equal(shared.argmax_of("b"), inp.logits["b"].argmax(1))


@pytest.mark.parametrize(("key", "variant"), CASES)
def test_state_dict_round_trip(key: str, variant: str) -> None:
    a = _labeler(key, variant, HISTORY)
    snapshot = a.state_dict()
    state = a.state_dict()
    assert list(state) == list(a.state_names)
    b = _labeler(key, variant)
    if a.state_names:  # the history is in the state, so the round trip is not vacuous
        assert not _same(b.state_dict(), snapshot)
    b.load_state_dict(state)
    assert _same(b.state_dict(), snapshot)
    for tensor in _tensors(state):  # exported and loaded state are copies
        tensor.fill_(-1 if tensor.dtype != torch.bool else 1)
    assert _same(a.state_dict(), snapshot) and _same(b.state_dict(), snapshot)
    for seed in range(HISTORY, HISTORY + 3):
        assert _same(_step(b, seed), _step(a, seed)), seed
    assert _same(b.state_dict(), a.state_dict())


@pytest.mark.parametrize(("key", "variant"), CASES)
def test_device_move_keeps_the_state(key: str, variant: str) -> None:
    a = _labeler(key, variant, HISTORY)
    b = _labeler(key, variant, HISTORY)
    dtypes = [t.dtype for t in _tensors(b.state_dict())]
    assert b.to(torch.device("cpu")) is b
    moved = _tensors(b.state_dict())
    assert [t.dtype for t in moved] == dtypes
    assert all(t.device == torch.device("cpu") for t in moved)
    assert _same(_step(b, 99), _step(a, 99))


def test_every_learner_gets_targets_from_the_registry() -> None:
    assert {"hard", "depl", "adsh", "cld", "uamt", "basak"} <= set(PSEUDO_LABELERS)
    assert {PSEUDO_LABELERS.get(k).topology for k in PSEUDO_LABELERS} == set(LEARNERS)


def test_the_package_imports_every_labeler_module() -> None:
    """Each module of the package but base and functional registers a labeler."""
    package = Path(pseudo_package.__file__).parent
    modules = {p.stem for p in package.glob("*.py")} - {"__init__", "base", "functional"}
    registered = {cls.__module__.rsplit(".", 1)[-1] for _, cls in PSEUDO_LABELERS.items()}
    assert modules <= registered


TOY_MODULE = '''
from dhcbench.methods.pseudo.base import PseudoLabeler, pseudo_labeler


@pseudo_labeler("dropped")
class Dropped(PseudoLabeler):
    pass
'''


def test_a_dropped_in_file_is_imported_and_registered(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The package's import loop picks up a new module with no other change (here from an
    extra folder of the package path, into a throw-away registry)."""
    (tmp_path / "dropped.py").write_text(TOY_MODULE)
    registry: Registry[type[PseudoLabeler]] = Registry("pseudo-labeler")
    monkeypatch.setattr(pseudo_base, "PSEUDO_LABELERS", registry)
    monkeypatch.setattr(pseudo_package, "__path__", [*pseudo_package.__path__, str(tmp_path)])
    name = f"{pseudo_package.__name__}.dropped"
    try:
        assert "dropped" in pseudo_package._import_labelers()
        assert list(registry) == ["dropped"]
    finally:
        sys.modules.pop(name, None)
        if hasattr(pseudo_package, "dropped"):
            delattr(pseudo_package, "dropped")
    assert "dropped" not in PSEUDO_LABELERS


def test_a_decorated_labeler_joins_the_registry_and_the_step(monkeypatch) -> None:  # noqa: ANN001
    registry: Registry[type[PseudoLabeler]] = Registry("pseudo-labeler")
    monkeypatch.setattr(pseudo_base, "PSEUDO_LABELERS", registry)
    monkeypatch.setattr(cotraining, "PSEUDO_LABELERS", registry)

    @pseudo_labeler("toy")
    class Toy(PseudoLabeler):
        """Teaches every learner background on every voxel; counts its calls."""

        state_names = ("calls",)

        def __init__(self, num_classes: int, variant: str = "reference") -> None:
            super().__init__(num_classes, variant)
            self.calls = torch.zeros((), dtype=torch.long)

        def targets(self, inp: PseudoInput) -> dict[str, PseudoTargets]:
            self.calls = self.calls + 1
            return {k: PseudoTargets(torch.zeros_like(z[:, 0], dtype=torch.long),
                                     weight=inp.weights[k]) for k, z in inp.logits.items()}

    assert registry.get("toy") is Toy and "toy" not in PSEUDO_LABELERS
    torch.manual_seed(0)
    method = CoTraining(num_classes=K, in_channels=1, base_filters=2, variant="reference",
                        branch_a=Branch("uniform"), branch_b=Branch("uniform", "xavier"),
                        pseudo="toy")
    method.setup(COUNTS, SETUP)
    method.train()
    g = torch.Generator().manual_seed(0)
    batch = Batch(image_l=torch.rand(2, 1, 16, 16, 16, generator=g),
                  label_l=torch.randint(0, K, (2, 16, 16, 16), generator=g),
                  image_u=torch.rand(2, 1, 16, 16, 16, generator=g))
    out = method.training_step(batch, StepContext(0, 0, 0.1, 10, 0.01))
    assert isinstance(method.pseudo, Toy) and int(method.pseudo.calls) == 1
    assert torch.isfinite(out.loss) and float(out.scalars["loss_unsup"]) > 0
    # The state handling comes from the base class: nothing in Toy.
    fresh = Toy(K)
    fresh.load_state_dict(method.extra_state()["pseudo"])
    assert int(fresh.calls) == 1
    with pytest.raises(ValueError, match="duplicate"):
        pseudo_labeler("toy")(Toy)
    with pytest.raises(TypeError):
        pseudo_labeler("not-a-labeler")(type("NotALabeler", (), {}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topology"):
        pseudo_labeler("nowhere")(type("Nowhere", (PseudoLabeler,), {"topology": "ring"}))


@pytest.mark.parametrize(("key", "topology"), [("uamt", "cross"), ("hard", "mean_teacher")])
def test_a_labeler_of_another_topology_is_refused(key: str, topology: str) -> None:
    branch_b = Branch("uniform") if topology == "cross" else None
    with pytest.raises(ValueError, match="topology"):
        CoTraining(num_classes=K, in_channels=1, base_filters=2, variant="reference",
                   branch_a=Branch("uniform"), branch_b=branch_b, topology=topology,
                   pseudo=key)
