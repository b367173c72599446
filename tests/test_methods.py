"""Every registered method: one training step on a tiny batch gives a finite loss and a
gradient on every trainable parameter; predict keeps the spatial shape; state round-trips."""

from __future__ import annotations

import pytest
import torch

from dhcbench.methods import METHODS
from dhcbench.methods.base import Batch, StepContext

K = 14


def tiny_batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        image_l=torch.rand(2, 1, 16, 32, 32, generator=g),
        label_l=torch.randint(0, K, (2, 16, 32, 32), generator=g),
        image_u=torch.rand(2, 1, 16, 32, 32, generator=g),
    )


def build(key: str, variant: str = "reference"):
    torch.manual_seed(0)
    method = METHODS.get(key).build(num_classes=K, in_channels=1, base_filters=4,
                                    variant=variant, kwargs={})
    counts = torch.tensor([50_000] + [100 * (k + 1) for k in range(K - 1)])
    method.setup(counts)
    return method


CASES = [(key, v) for key, info in METHODS.items() for v in info.variants]


@pytest.mark.parametrize(("key", "variant"), CASES)
def test_one_step_finite_loss_and_gradients(key: str, variant: str) -> None:
    method = build(key, variant)
    method.train()
    out = method.training_step(tiny_batch(), StepContext(0, 0, 0.1, 10, 0.03))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, net in method.optimized_networks().items():
        for pname, p in net.named_parameters():
            assert p.grad is not None, f"{name}.{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}.{pname} non-finite gradient"
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
    for step in range(2):
        out = method.training_step(tiny_batch(step), StepContext(0, step, 0.1, 10, 0.03))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    method.eval()
    x = torch.rand(1, 1, 16, 32, 32)
    logits = method.predict(x)
    assert logits.shape == (1, K, 16, 32, 32)

    clone = build(key)
    clone.load_state_dict(method.state_dict())
    clone.eval()
    assert torch.equal(clone.predict(x), logits)
    # The strategies' state came along: the next step weighs classes identically.
    method.train()
    clone.train()
    torch.manual_seed(1)
    a = method.training_step(tiny_batch(5), StepContext(1, 2, 0.1, 10, 0.03))
    torch.manual_seed(1)
    b = clone.training_step(tiny_batch(5), StepContext(1, 2, 0.1, 10, 0.03))
    for name in a.vectors:
        assert torch.equal(a.vectors[name], b.vectors[name])
    assert torch.equal(a.loss, b.loss)


def test_cps_is_unweighted_and_dhc_pairs_diffdw_with_distdw() -> None:
    cps = build("cps")
    dhc = build("dhc")
    assert [type(s).__name__ for s in cps.strategies.values()] == ["Uniform", "Uniform"]
    assert [type(s).__name__ for s in dhc.strategies.values()] == ["DiffDW", "DistDW"]
    out = cps.training_step(tiny_batch(), StepContext(0, 0, 0.1, 10, 0.03))
    assert torch.equal(out.vectors["weight_a"], torch.ones(K))


def test_unknown_method_argument_is_rejected() -> None:
    from dhcbench.errors import UserError

    with pytest.raises(UserError, match="takes no argument 'gamma'"):
        METHODS.get("dhc").build(num_classes=K, in_channels=1, base_filters=4,
                                 variant="reference", kwargs={"gamma": 1})
