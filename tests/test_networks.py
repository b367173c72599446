"""Unit tests of the reference V-Net and its initialisers (dhcbench.methods.networks).

Pinned against reference §4.1 (architecture) and §4.5 (initialisation):

- the parameter count equals an explicit count of the architecture, written out below
  layer by layer (3x3x3 conv: 27·cin·cout + cout; strided 2x2x2 down conv: 8·cin·cout +
  cout; ConvTranspose3d 2x2x2: 8·cin·cout + cout; BatchNorm3d: 2·c; head 1x1x1: F·K + K).
  For F = 16, K = 2 the count must give the well-known UA-MT VNet figure 9,448,866;
- output shape, eval-mode determinism, dropout active in train mode only;
- kaiming_init / xavier_init: BatchNorm to (1, 0), Conv3d weights redrawn with the right
  scale, ConvTranspose3d weights and all biases untouched.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dhcbench.methods.networks import INITIALISERS, VNet, kaiming_init, xavier_init


@pytest.fixture(autouse=True)
def _single_thread():  # noqa: ANN202
    """Tiny convolutions run far faster on one intra-op thread than on a contended pool."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def conv3(cin: int, cout: int) -> int:
    return 27 * cin * cout + cout


def conv2(cin: int, cout: int) -> int:  # strided down conv and transposed up conv
    return 8 * cin * cout + cout


def bn(c: int) -> int:
    return 2 * c


def stage(n: int, cin: int, cout: int) -> int:
    """n × (3x3x3 conv + BN); the first conv maps cin -> cout."""
    return conv3(cin, cout) + bn(cout) + (n - 1) * (conv3(cout, cout) + bn(cout))


def vnet_params_by_hand(cin: int, k: int, f: int) -> int:
    """Reference §4.1: encoder 1,2,3,3,3 convs at F..16F; decoder 3,3,2,1; 1x1 head."""
    enc = (stage(1, cin, f)
           + conv2(f, 2 * f) + bn(2 * f) + stage(2, 2 * f, 2 * f)
           + conv2(2 * f, 4 * f) + bn(4 * f) + stage(3, 4 * f, 4 * f)
           + conv2(4 * f, 8 * f) + bn(8 * f) + stage(3, 8 * f, 8 * f)
           + conv2(8 * f, 16 * f) + bn(16 * f) + stage(3, 16 * f, 16 * f))
    dec = (conv2(16 * f, 8 * f) + bn(8 * f) + stage(3, 8 * f, 8 * f)
           + conv2(8 * f, 4 * f) + bn(4 * f) + stage(3, 4 * f, 4 * f)
           + conv2(4 * f, 2 * f) + bn(2 * f) + stage(2, 2 * f, 2 * f)
           + conv2(2 * f, f) + bn(f) + stage(1, f, f))
    head = f * k + k
    return enc + dec + head


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_hand_count_reproduces_uamt_figure() -> None:
    assert vnet_params_by_hand(1, 2, 16) == 9_448_866


def test_parameter_count_f16_two_classes() -> None:
    assert n_params(VNet(1, 2, 16)) == 9_448_866


def test_parameter_count_f32_fourteen_classes() -> None:
    expected = vnet_params_by_hand(1, 14, 32)
    # Sanity of the arithmetic: F = 32 is ~4× the F = 16 network.
    assert 4 * 9_400_000 < expected < 4 * 9_500_000
    assert n_params(VNet(1, 14, 32)) == expected


def test_no_dropout_changes_no_parameters() -> None:
    assert n_params(VNet(1, 3, 4, has_dropout=False)) == vnet_params_by_hand(1, 3, 4)


def test_output_shape() -> None:
    torch.manual_seed(0)
    net = VNet(1, 14, 4).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 16, 32, 32))
    assert out.shape == (2, 14, 16, 32, 32)
    assert torch.isfinite(out).all()


def test_eval_deterministic_train_dropout_random() -> None:
    torch.manual_seed(0)
    net = VNet(1, 3, 4)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        net.eval()
        a, b = net(x), net(x)
        assert torch.equal(a, b)
        net.train()
        c, d = net(x), net(x)
    assert not torch.allclose(c, d)
    # Without dropout, train mode (batch statistics) is deterministic as well, so the
    # difference above comes from Dropout3d.
    torch.manual_seed(0)
    net2 = VNet(1, 3, 4, has_dropout=False).train()
    with torch.no_grad():
        assert torch.equal(net2(x), net2(x))


@pytest.mark.parametrize("init, gain2", [(kaiming_init, 2.0), (xavier_init, 1.0)])
def test_initialisers(init, gain2: float) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    net = VNet(1, 3, 4)
    # Perturb the BatchNorm parameters so that "set to (1, 0)" is observable.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            nn.init.constant_(m.weight, 0.3)
            nn.init.constant_(m.bias, 0.7)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    assert init(net) is net
    n_conv = n_convt = 0
    for name, m in net.named_modules():
        if isinstance(m, nn.BatchNorm3d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
        elif isinstance(m, nn.ConvTranspose3d):
            n_convt += 1
            assert torch.equal(m.weight, before[f"{name}.weight"]), name
            assert torch.equal(m.bias, before[f"{name}.bias"]), name
        elif isinstance(m, nn.Conv3d):
            n_conv += 1
            assert not torch.equal(m.weight, before[f"{name}.weight"]), name
            assert torch.equal(m.bias, before[f"{name}.bias"]), name
    # 1+2+3+3+3 encoder + 4 down + 3+3+2+1 decoder + head = 26 Conv3d; 4 ConvTranspose3d.
    assert (n_conv, n_convt) == (26, 4)
    # Scale: a 16F -> 16F 3x3x3 conv (fan_in = fan_out = 27·64 = 1728, 110,592 weights).
    # kaiming_normal_ (fan_in, relu gain sqrt 2): std = sqrt(2 / 1728);
    # xavier_normal_: std = sqrt(2 / (1728 + 1728)) = sqrt(1 / 1728).
    w = net.enc5[3].weight
    assert w.shape == (64, 64, 3, 3, 3)
    assert w.std().item() == pytest.approx(math.sqrt(gain2 / 1728), rel=0.02)


def test_initialiser_registry() -> None:
    assert INITIALISERS["kaiming"] is kaiming_init
    assert INITIALISERS["xavier"] is xavier_init
    net = VNet(1, 2, 4)
    before = [p.detach().clone() for p in net.parameters()]
    assert INITIALISERS["default"](net) is net
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_stages_keep_the_reference_names_order_and_widths() -> None:
    # The stages are built in a loop; names and order (which fix the state dict and what a
    # seeded initialisation draws) must stay the reference's.
    f = 4
    net = VNet(3, 5, f)
    names = [name for name, _ in net.named_children()]
    assert names == ["enc1", "down1", "enc2", "down2", "enc3", "down3", "enc4", "down4", "enc5",
                     "up5", "dec6", "up6", "dec7", "up7", "dec8", "up8", "dec9", "head",
                     "dropout"]
    convs = {name: [m for m in getattr(net, name).modules() if isinstance(m, nn.Conv3d)]
             for name in names if name.startswith(("enc", "dec"))}
    assert [len(convs[f"enc{i}"]) for i in range(1, 6)] == [1, 2, 3, 3, 3]
    assert [len(convs[f"dec{i}"]) for i in range(6, 10)] == [3, 3, 2, 1]
    assert convs["enc1"][0].in_channels == 3
    assert [convs[f"enc{i}"][-1].out_channels for i in range(1, 6)] == [f, 2 * f, 4 * f, 8 * f,
                                                                         16 * f]
    assert [convs[f"dec{i}"][-1].out_channels for i in range(6, 10)] == [8 * f, 4 * f, 2 * f, f]
    assert [net.get_submodule(f"up{i}.0").in_channels for i in range(5, 9)] == [
        16 * f, 8 * f, 4 * f, 2 * f]



def test_train_dropout_reaches_every_vnet_of_a_method_and_no_other_layer() -> None:
    """``train.dropout`` sets both Dropout3d layers of each V-Net (DST's decoders share its
    main network's); URPC's own decoder dropouts (0.5/0.3/0.2/0.1) keep their values."""
    from dhcbench.benchmark.building import build_method
    from dhcbench.benchmark.planning import resolve_specs
    from dhcbench.datasets.base import DatasetSpec
    from dhcbench.methods.networks import VNetDecoder

    dspec = DatasetSpec("toy", ("background", "a", "b"), 1, (16, 16, 16), None, "toy")
    layer = [{"train": {"dropout": 0.2, "base_filters": 2}}]
    for name, vnets in (("dhc", 2), ("cps", 2), ("fully", 1), ("uamt", 2), ("dst", 2)):
        (spec,) = resolve_specs(name, "phantom", 0.2, [0], layer)
        modules = list(build_method(spec, dspec).networks.modules())
        nets = [m for m in modules if isinstance(m, (VNet, VNetDecoder))]
        assert len([m for m in nets if isinstance(m, VNet)]) == vnets, name
        assert {m.dropout.p for m in nets} == {0.2}, name
        assert {m.p for m in modules if isinstance(m, nn.Dropout3d)} == {0.2}, name
    (spec,) = resolve_specs("urpc", "phantom", 0.2, [0], layer)
    urpc = build_method(spec, dspec)
    assert sorted(m.p for m in urpc.networks.modules()
                  if isinstance(m, nn.Dropout3d)) == [0.1, 0.2, 0.3, 0.5]
    assert VNet(1, 3, 2).dropout.p == 0.5  # the reference's, and train.dropout's default
