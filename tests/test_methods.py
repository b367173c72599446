"""Every registered method (parametrised over the registry, so a new entry is tested for
free): two training steps on a tiny batch give a finite loss and a gradient on every
trainable parameter (except documented quirks); predict keeps the spatial shape; the state
round-trips; EMA teachers move only in ``after_optimizer_step``. The co-training step's
fused losses equal the composed ones (values and gradients), and DHC's step takes one
argmax per branch and no ``bincount``."""

from __future__ import annotations

import pytest
import torch

import dhcbench.methods.cotraining as cotraining
import dhcbench.methods.losses as losses
import dhcbench.methods.pseudo.base as pseudo_base
import dhcbench.methods.pseudo.functional as pseudo_functional
import dhcbench.methods.weighting.base as weighting_base
import dhcbench.methods.weighting.functional as weighting_functional
from dhcbench.errors import UserError
from dhcbench.methods import METHODS
from dhcbench.methods.base import (
    Batch,
    SetupContext,
    StepContext,
    one_line,
    semi_supervised_output,
)
from dhcbench.methods.cotraining import (
    SUP_LOSSES,
    learner_losses,
    supervised_loss,
    unsupervised_loss,
)
from dhcbench.methods.pseudo import PseudoTargets

K = 14
CTX = SetupContext(num_unlabeled=16, iterations_per_epoch=2)


def tiny_batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        image_l=torch.rand(2, 1, 16, 16, 32, generator=g),
        label_l=torch.randint(0, K, (2, 16, 16, 32), generator=g),
        image_u=torch.rand(2, 1, 16, 16, 32, generator=g),
    )


def build(key: str, variant: str = "reference"):
    torch.manual_seed(0)
    method = METHODS.get(key).build(num_classes=K, in_channels=1, base_filters=4,
                                    variant=variant, kwargs={})
    counts = torch.tensor([50_000] + [100 * (k + 1) for k in range(K - 1)])
    method.setup(counts, CTX)
    return method


def step(method, i: int, batch: Batch | None = None):
    ctx = StepContext(0, i, 0.1, 10, 0.03)
    out = method.training_step(batch or tiny_batch(i), ctx)
    return out, ctx


# Every method with every variant; the generated <A>-<B> pairings (one class, many
# weighting combinations) with their reference variant only, plus one in its paper variant.
CASES = [(key, v) for key, info in METHODS.items() for v in info.variants
         if info.family != "ablation" or v == "reference"] + [("distdw-crest", "paper")]


@pytest.mark.parametrize(("key", "variant"), CASES)
def test_two_steps_finite_loss_and_gradients(key: str, variant: str) -> None:
    method = build(key, variant)
    method.train()
    params = [p for net in method.optimized_networks().values() for p in net.parameters()]
    opt = torch.optim.SGD(params, lr=0.01)
    for i in range(2):
        opt.zero_grad()
        out, ctx = step(method, i)
        assert torch.isfinite(out.loss), f"step {i}"
        out.loss.backward()
        opt.step()
        method.after_optimizer_step(ctx)
    for name, net in method.optimized_networks().items():
        for pname, p in net.named_parameters():
            full = f"{name}.{pname}"
            if full.startswith(method.frozen_by_design):
                assert p.grad is None, f"{full} should get no gradient (documented quirk)"
            elif not full.startswith(method.sometimes_without_gradient):
                assert p.grad is not None, f"{full} got no gradient"
                assert torch.isfinite(p.grad).all(), f"{full} non-finite gradient"
    for value in out.scalars.values():
        assert value.ndim == 0 and torch.isfinite(value)
    for value in out.vectors.values():
        assert value.shape == (K,) and torch.isfinite(value).all()


@pytest.mark.parametrize("key", sorted(METHODS))
def test_predict_shape_and_state_round_trip(key: str) -> None:
    method = build(key)
    method.train()
    opt = torch.optim.SGD([p for n in method.optimized_networks().values()
                           for p in n.parameters()], lr=0.01)
    for i in range(1):
        out, ctx = step(method, i)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        method.after_optimizer_step(ctx)
    method.eval()
    x = torch.rand(1, 1, 16, 16, 32)
    logits = method.predict(x)
    assert logits.shape == (1, K, 16, 16, 32)

    clone = build(key)
    clone.load_state_dict(method.state_dict())
    clone.eval()
    assert torch.equal(clone.predict(x), logits)
    # Strategy / bank / teacher state came along: the next step is identical.
    method.train()
    clone.train()
    torch.manual_seed(1)
    a, _ = step(method, 2, tiny_batch(5))
    torch.manual_seed(1)
    b, _ = step(clone, 2, tiny_batch(5))
    assert torch.equal(a.loss, b.loss)
    for name in a.vectors:
        assert torch.equal(a.vectors[name], b.vectors[name])


@pytest.mark.parametrize("key", [k for k, i in METHODS.items() if "teacher" in i.networks])
def test_ema_teacher_moves_only_after_the_optimiser_step(key: str) -> None:
    method = build(key)
    method.train()
    teacher = method.networks["teacher"]
    before = [p.detach().clone() for p in teacher.parameters()]
    opt = torch.optim.SGD(method.optimized_networks()["student"].parameters(), lr=0.1)
    out, ctx = step(method, 0)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))
    assert "teacher" not in method.optimized_networks()
    method.after_optimizer_step(StepContext(3, 40, 0.1, 10, 0.03))
    changed = [not torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True)]
    assert any(changed)
    # α = min(1 - 1/(g+1), 0.99): the reference takes g from the epoch (3 -> 0.75).
    student = dict(method.networks["student"].named_parameters())
    name, p0 = next(iter(teacher.named_parameters()))
    expected = 0.75 * before[0] + 0.25 * student[name].detach()
    assert torch.allclose(p0, expected, atol=1e-6)


def test_registry_families_and_pairings() -> None:
    families = {k: i.family for k, i in METHODS.items()}
    assert {k for k, f in families.items() if f == "bound"} == {"fully", "labeled-only"}
    assert families["dhc"] == "ours"
    assert {"uamt", "urpc", "cps", "ssnet", "dst", "depl"} <= {
        k for k, f in families.items() if f == "general"}
    assert {"adsh", "crest", "simis", "basak", "cld"} <= {
        k for k, f in families.items() if f == "imbalance"}
    for alias, key in (("diffdw-distdw", "dhc"), ("uniform-uniform", "cps"),
                       ("acisis", "basak"), ("distdw", "distdw-distdw"),
                       ("vnet_fully", "fully")):
        assert METHODS.canonical(alias) == key
    for key in ("distdw-crest", "distdw-simis", "diffdw-crest", "diffdw-simis",
                "diffdw-diffdw", "cld-uniform"):
        assert key in METHODS
    for _key, info in METHODS.items():
        assert info.paper and info.networks and info.description and info.search_space
        assert info.family in ("bound", "general", "imbalance", "ours", "ablation")


def test_cps_is_unweighted_and_dhc_pairs_diffdw_with_distdw() -> None:
    cps = build("cps")
    dhc = build("dhc")
    assert [type(s).__name__ for s in cps.strategies.values()] == ["Uniform", "Uniform"]
    assert [type(s).__name__ for s in dhc.strategies.values()] == ["DiffDW", "DistDW"]
    out, _ = step(cps, 0)
    assert torch.equal(out.vectors["weight_a"], torch.ones(K))


def test_unknown_method_argument_is_rejected() -> None:
    with pytest.raises(UserError, match="takes no argument 'gamma'"):
        METHODS.get("dhc").build(num_classes=K, in_channels=1, base_filters=4,
                                 variant="reference", kwargs={"gamma": 1})


def test_cld_refuses_a_class_missing_from_the_labeled_set() -> None:
    method = METHODS.get("cld").build(num_classes=K, in_channels=1, base_filters=4,
                                      variant="reference", kwargs={})
    counts = torch.tensor([50_000] + [100] * (K - 2) + [0])
    with pytest.raises(UserError, match="absent from the labeled set"):
        method.setup(counts, CTX)


def test_paper_variant_uses_the_papers_losses_and_reference_the_codes() -> None:
    paper, reference = build("dhc", "paper"), build("dhc", "reference")
    assert (paper.sup_loss, paper.unsup_loss) == ("wce", "ce+dice")  # Eq. 1 and Eq. 2
    assert (reference.sup_loss, reference.unsup_loss) == ("w_ce+dice", "wce")
    mixed = METHODS.get("dhc").build(num_classes=K, in_channels=1, base_filters=4,
                                     variant="paper", kwargs={"sup_loss": "w_ce+dice"})
    assert (mixed.sup_loss, mixed.unsup_loss) == ("w_ce+dice", "ce+dice")


def test_batch_images_put_the_labeled_patches_first() -> None:
    batch = tiny_batch()
    x = batch.images()
    assert batch.n_l == 2 and x.shape == (4, 1, 16, 16, 32)
    assert torch.equal(x[:2], batch.image_l) and torch.equal(x[2:], batch.image_u)


def test_semi_supervised_output_weighs_the_unsupervised_term_and_logs_detached_terms() -> None:
    sup = torch.tensor(2.0, requires_grad=True)
    unsup = torch.tensor(3.0, requires_grad=True)
    extra = torch.tensor(5.0, requires_grad=True)
    out = semi_supervised_output(sup, unsup, StepContext(0, 0, 0.5, 10, 0.01), loss_x=extra)
    assert out.loss.item() == 3.5 and out.loss.requires_grad
    assert list(out.scalars) == ["loss_sup", "loss_unsup", "loss_x"]
    assert [v.item() for v in out.scalars.values()] == [2.0, 3.0, 5.0]
    assert not any(v.requires_grad for v in out.scalars.values()) and out.vectors == {}


def test_registry_prose_is_stored_on_one_line() -> None:
    assert one_line("""
        Two lines of
          wrapped  prose.
    """) == "Two lines of wrapped prose."
    for key, info in METHODS.items():
        for text in (info.paper, info.description):
            assert text == one_line(text), key


# -- the co-training step's fused losses and shared argmax ------------------------------------


def _pseudo_targets(z: torch.Tensor, masked: bool) -> PseudoTargets:
    g = torch.Generator().manual_seed(7)
    target = torch.randint(0, K, (z.shape[0], *z.shape[2:]), generator=g)
    mask = torch.rand(target.shape, generator=g) if masked else None
    return PseudoTargets(target, mask, weight=torch.rand(K, generator=g) * K)


@pytest.mark.parametrize("sup", SUP_LOSSES)
@pytest.mark.parametrize(("unsup", "masked"), [("wce", False), ("ce+dice", False),
                                               ("wce", True)])
def test_learner_losses_equal_the_composed_losses(sup: str, unsup: str, masked: bool) -> None:
    g = torch.Generator().manual_seed(3)
    z = (2.0 * torch.randn(4, K, 3, 4, 5, generator=g)).requires_grad_()
    y = torch.randint(0, K, (2, 3, 4, 5), generator=g)
    w = torch.rand(K, generator=g) * K
    targets = _pseudo_targets(z, masked)
    s, u = learner_losses(sup, unsup, z, y, w, targets)
    (grad,) = torch.autograd.grad(s + 0.1 * u, z)
    s_ref = supervised_loss(sup, z[:2], y, w)
    u_ref = unsupervised_loss(unsup, z, targets)
    (grad_ref,) = torch.autograd.grad(s_ref + 0.1 * u_ref, z)
    assert s.item() == pytest.approx(s_ref.item(), rel=1e-6)
    assert u.item() == pytest.approx(u_ref.item(), rel=1e-6)
    assert torch.allclose(grad, grad_ref, rtol=1e-4, atol=1e-7 * grad_ref.abs().max())


def test_the_dhc_step_takes_one_argmax_per_branch_and_no_bincount(monkeypatch) -> None:  # noqa: ANN001
    """Weighting and pseudo-labels share the step's argmax; counts stay on the device."""
    calls = []

    def counted(scores: torch.Tensor, dim: int = 1) -> torch.Tensor:
        calls.append(tuple(scores.shape))
        return torch.max(scores, dim).indices

    def no_bincount(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("torch.bincount reads its size back to the host on a GPU")

    for module in (cotraining, losses, weighting_base, weighting_functional, pseudo_base,
                   pseudo_functional):
        monkeypatch.setattr(module, "class_argmax", counted)
    monkeypatch.setattr(torch, "bincount", no_bincount)
    for key in ("dhc", "cps"):
        calls.clear()
        method = build(key)
        method.train()
        out, _ = step(method, 0)
        out.loss.backward()
        assert calls == [(4, K, 16, 16, 32)] * 2, key
