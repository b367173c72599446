"""Inference options: BatchNorm folding, channels-last evaluation copies, window batch.

- folding a BatchNorm into the convolution before it is exact algebra: the folded copy's
  logits match the original's (float64: to rounding; float32: within 1e-5 of their scale),
  for Conv3d and ConvTranspose3d, with and without a convolution bias;
- only eval-mode BatchNorms behind a convolution that feeds nothing else are folded;
- the default options give the plain path's labels on volumes with non-trivial BatchNorm
  statistics (exactly, apart from voxels whose two best classes tie to rounding);
- inference leaves the training networks as they were: values, memory format, modes,
  gradients flags, and the method's ``networks`` object;
- the kept evaluation copy follows the networks' new values and modes (never stale);
- windows go through ``predict`` under inference mode, ``window_batch`` at a time;
- a channels-last copy's 1×1×1 heads return contiguous logits, equal to the convolution's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from dhcbench.evaluation import fold
from dhcbench.evaluation.inference import (
    InferenceOptions,
    default_inference_options,
    predict_case,
    predict_case_probs,
    sliding_window_probs,
)
from dhcbench.methods.base import METHODS, Method
from dhcbench.methods.networks import VNet

CPU = torch.device("cpu")
PLAIN = InferenceOptions(channels_last=False, fold_bn=False, window_batch=None)
ALL_ON = InferenceOptions(channels_last=True, fold_bn=True, window_batch=None)
DATASET = SimpleNamespace(patch_size=(16, 16, 16), num_classes=3)
SETTINGS = SimpleNamespace(stride=(8, 8, 8), window_batch=3)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Hundreds of tiny convolutions: with two threads on a busy 2-core machine, each one
    # can wait a scheduler tick for its second thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _smooth(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A smooth random volume batch ``(B, 1, D, H, W)`` with unit variance."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn((shape[0], 1, *[max(2, s // 4) for s in shape[1:]]), generator=g)
    x = nn.functional.interpolate(coarse, size=shape[1:], mode="trilinear")
    x = x + 0.2 * torch.randn(x.shape, generator=g)
    return (x - x.mean()) / x.std()


@torch.no_grad()
def _calibrate(net: nn.Module, seed: int) -> nn.Module:
    """Random BatchNorm affine parameters and running statistics of real activations."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
    net.train()
    for i in range(2):
        net(_smooth((3, 16, 16, 16), seed + i))
    return net.eval()


def _method(seed: int = 0, name: str = "dhc") -> Method:
    torch.manual_seed(seed)
    info = METHODS.get(name)
    method = info.build(num_classes=3, in_channels=1, base_filters=2,
                        variant=info.variants[0], kwargs={})
    for net in method.networks.values():
        _calibrate(net, 10 * seed)
    method.eval()
    return method


def test_default_options() -> None:
    cpu = default_inference_options(CPU)
    assert isinstance(cpu, InferenceOptions)
    assert cpu.fold_bn and cpu.channels_last and cpu.window_batch is None
    cuda = default_inference_options(torch.device("cuda"))
    assert cuda.fold_bn and not cuda.channels_last


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_folding_is_exact(dtype: torch.dtype) -> None:
    net = _calibrate(VNet(1, 3, base_filters=2), seed=1).to(dtype)
    folded = fold.EvaluationCopy(net, fold_bn=True, channels_last=False).module
    n_bn = sum(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    assert n_bn > 0 and not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    x = _smooth((3, 16, 16, 16), seed=5).to(dtype)
    with torch.inference_mode():
        ref, out = net(x), folded(x)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert (out - ref).abs().max() <= tol * ref.abs().max()


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_fold_conv_bn_pair(transposed: bool, bias: bool) -> None:
    torch.manual_seed(2)
    kind = nn.ConvTranspose3d if transposed else nn.Conv3d
    seq = nn.Sequential(kind(3, 5, 2, stride=2, bias=bias), nn.BatchNorm3d(5), nn.ReLU())
    bn = seq[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    seq.eval().double()
    x = torch.randn(2, 3, 4, 4, 4, dtype=torch.float64)
    ref = seq(x)
    assert fold.fold_batchnorm(seq) == [("0", "1")]
    assert isinstance(seq[1], nn.Identity)
    torch.testing.assert_close(seq(x), ref, rtol=0, atol=1e-12)


def test_only_safe_pairs_are_folded() -> None:
    shared = nn.Conv3d(1, 2, 1)
    model = nn.ModuleDict({
        "train_bn": nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2)),
        "shared": nn.Sequential(shared, nn.BatchNorm3d(2).eval()),
        "elsewhere": nn.Sequential(shared),
        "bn_first": nn.Sequential(nn.BatchNorm3d(1).eval(), nn.Conv3d(1, 2, 1)),
    })
    assert fold.fold_batchnorm(model) == []


def _labels_and_gap(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    top = probs.topk(2, dim=0).values
    return probs.argmax(0), top[0] - top[1]


@pytest.mark.parametrize("name", ["dhc", "dst"])
def test_default_labels_match_plain_path(name: str) -> None:
    method = _method(seed=3, name=name)
    for seed in range(3):
        image = _smooth((1, 16, 32, 32), seed=20 + seed)[0].numpy()
        plain = predict_case_probs(method.predict, image, DATASET, SETTINGS, CPU,
                                   options=PLAIN)
        fast = predict_case_probs(method.predict, image, DATASET, SETTINGS, CPU)
        assert (fast - plain).abs().max() < 1e-4
        labels, gap = _labels_and_gap(plain)
        differ = fast.argmax(0) != labels
        assert not differ[gap > 1e-4].any()  # only exact ties may go either way
        assert differ.sum() <= 1
        assert predict_case(method.predict, image, DATASET, SETTINGS, CPU).shape == labels.shape


def _snapshot(method: Method) -> dict[str, object]:
    nets = method.networks
    return {"networks": nets, "state": copy.deepcopy(nets.state_dict()),
            "modes": [m.training for m in nets.modules()],
            "grad": [p.requires_grad for p in nets.parameters()],
            "strides": [p.stride() for p in nets.parameters()],
            "modules": [type(m) for m in nets.modules()]}


@pytest.mark.parametrize("train_mode", [False, True])
def test_training_networks_untouched(train_mode: bool) -> None:
    method = _method(seed=4)
    method.train(train_mode)
    before = _snapshot(method)
    image = _smooth((1, 16, 32, 32), seed=7)[0].numpy()
    predict_case(method.predict, image, DATASET, SETTINGS, CPU, options=ALL_ON)
    after = _snapshot(method)
    assert after["networks"] is before["networks"]
    assert {k: v for k, v in after.items() if k != "state"} == \
        {k: v for k, v in before.items() if k != "state"}
    for key, value in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(after["state"][key], value), key  # type: ignore[index]


def test_kept_copy_follows_the_networks() -> None:
    method = _method(seed=5)
    image = _smooth((1, 16, 32, 32), seed=8)[0].numpy()
    patch, stride = (16, 16, 16), (8, 8, 8)

    def run(options: InferenceOptions) -> torch.Tensor:
        return sliding_window_probs(method.predict, image, patch, stride, 3, CPU, 3,
                                    options=options)

    run(ALL_ON)
    with torch.no_grad():  # a training step's worth of change: weights and statistics
        for p in method.networks.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in method.networks.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_var.mul_(1.7)
    assert (run(ALL_ON) - run(PLAIN)).abs().max() < 1e-4
    method.train()  # modes changed: BatchNorm uses batch statistics, nothing is folded
    torch.manual_seed(0)
    in_train = run(ALL_ON)
    assert fold._KEPT[0][1]._folds == []
    torch.manual_seed(0)
    assert (in_train - run(PLAIN)).abs().max() < 1e-3  # batch statistics of 3 windows


def test_windows_batched_under_inference_mode() -> None:
    calls: list[tuple[int, bool, bool]] = []

    def predict(x: torch.Tensor) -> torch.Tensor:
        calls.append((x.shape[0], torch.is_inference_mode_enabled(),
                      x.is_contiguous(memory_format=torch.channels_last_3d)))
        return torch.zeros((x.shape[0], 2, *x.shape[2:]))

    image = np.zeros((2, 4, 4, 8), dtype=np.float32)
    options = InferenceOptions(channels_last=True, fold_bn=True, window_batch=3)
    probs = sliding_window_probs(predict, image, (4, 4, 4), (1, 1, 1), 2, CPU, 1,
                                 options=options)
    assert [c[0] for c in calls] == [3, 2] and all(c[1] and c[2] for c in calls)
    torch.testing.assert_close(probs, torch.full((2, 4, 4, 8), 0.5))


@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_head_contiguous(bias: bool) -> None:
    torch.manual_seed(6)
    head = nn.Conv3d(4, 3, 1, bias=bias)
    x = torch.randn(2, 4, 3, 5, 6)
    ref = head(x)
    copy_ = fold.EvaluationCopy(nn.Sequential(head), fold_bn=False, channels_last=True)
    assert isinstance(copy_.module[0], fold.PointwiseConv3d)
    out = copy_.module(x.contiguous(memory_format=torch.channels_last_3d))
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
