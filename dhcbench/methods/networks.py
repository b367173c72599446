"""The V-Net of the DHC reference code and its initialisers.

:class:`VNet` is the plain (non-residual) V-Net used by DHC and most baselines of the paper
(Wang & Li, MICCAI 2023, reference §4.1): BatchNorm, additive skip connections, Dropout3d on
the bottleneck and before the head. Its parameter count equals the reference network's
(every convolution carries a bias, as ``nn.Conv3d`` does by default). The networks only one
baseline uses live with it: URPC's deep-supervision U-Net in :mod:`~dhcbench.methods.urpc`,
DST's decoupled V-Net in :mod:`~dhcbench.methods.dst`, SS-Net's heads in
:mod:`~dhcbench.methods.ssnet`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: Convolutions per encoder stage (F, 2F, 4F, 8F, 16F channels) and per decoder stage
#: (8F, 4F, 2F, F channels) of :class:`VNet`.
ENCODER_CONVS = (1, 2, 3, 3, 3)
DECODER_CONVS = (3, 3, 2, 1)


def _conv_stage(n_convs: int, in_ch: int, out_ch: int) -> nn.Sequential:
    """``n_convs`` × (3×3×3 conv, BatchNorm3d, ReLU); the first conv maps in_ch -> out_ch."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [
            nn.Conv3d(in_ch if i == 0 else out_ch, out_ch, kernel_size=3, padding=1),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def _down(in_ch: int, out_ch: int) -> nn.Sequential:
    """Strided 2×2×2 convolution that halves every spatial axis, then BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_ch, out_ch, kernel_size=2, stride=2, padding=0),
        nn.BatchNorm3d(out_ch),
        nn.ReLU(inplace=True),
    )


def _up(in_ch: int, out_ch: int) -> nn.Sequential:
    """Transposed 2×2×2 convolution that doubles every spatial axis, then BatchNorm and ReLU."""
    return nn.Sequential(
        nn.ConvTranspose3d(in_ch, out_ch, kernel_size=2, stride=2, padding=0),
        nn.BatchNorm3d(out_ch),
        nn.ReLU(inplace=True),
    )


class VNet(nn.Module):
    """The reference V-Net (UA-MT style, no residual connections inside the stages).

    Encoder stages have 1, 2, 3, 3, 3 convolutions at F, 2F, 4F, 8F, 16F channels; the
    decoder adds the upsampled map to the encoder map of the same scale and has 3, 3, 2, 1
    convolutions. Input ``(B, in_channels, D, H, W)`` with D, H, W divisible by 16; output
    ``(B, num_classes, D, H, W)`` logits (no softmax). Dropout3d(0.5) acts on the bottleneck
    and on the last decoder feature in train mode only.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 14,
        base_filters: int = 32,
        has_dropout: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        f = base_filters
        # The reference's stages in its order (enc1, down1, …, enc5, up5, dec6, …, dec9), so
        # the parameter names and a seeded initialisation are the same.
        for i, n_convs in enumerate(ENCODER_CONVS):  # enc{i+1} at F·2^i channels
            width = f * 2**i
            self.add_module(f"enc{i + 1}", _conv_stage(n_convs, width if i else in_channels, width))
            if i < len(DECODER_CONVS):
                self.add_module(f"down{i + 1}", _down(width, 2 * width))
        for i, n_convs in enumerate(DECODER_CONVS):  # up{i+5} and dec{i+6} at 8F … F channels
            width = f * 2 ** (len(DECODER_CONVS) - 1 - i)
            self.add_module(f"up{i + 5}", _up(2 * width, width))
            self.add_module(f"dec{i + 6}", _conv_stage(n_convs, width, width))
        self.head = nn.Conv3d(f, num_classes, kernel_size=1, padding=0)
        self.dropout = nn.Dropout3d(p=0.5, inplace=False) if has_dropout else nn.Identity()

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five encoder feature maps of ``x`` (B, C, D, H, W), finest first.

        x1 … x5 have F … 16F channels at full, 1/2, … 1/16 resolution; x5 is after dropout.
        """
        x1 = self.enc1(x)
        x2 = self.enc2(self.down1(x1))
        x3 = self.enc3(self.down2(x2))
        x4 = self.enc4(self.down3(x3))
        x5 = self.dropout(self.enc5(self.down4(x4)))
        return [x1, x2, x3, x4, x5]

    def decode_features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The last decoder feature (B, F, D, H, W) before dropout and the 1×1×1 head."""
        return _decode(self, feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, D, H, W)`` for an image batch ``(B, C, D, H, W)``."""
        return self.head(self.dropout(self.decode_features(self.encode(x))))


def _decode(stages: nn.Module, feats: list[torch.Tensor]) -> torch.Tensor:
    """The V-Net decoder of ``stages`` (its ``up5`` … ``dec9``) on encoder maps x1 … x5.

    Each level upsamples, adds the encoder map of the same scale and convolves; returns the
    last decoder feature (B, F, D, H, W).
    """
    x1, x2, x3, x4, x5 = feats
    x = stages.dec6(stages.up5(x5) + x4)
    x = stages.dec7(stages.up6(x) + x3)
    x = stages.dec8(stages.up7(x) + x2)
    return stages.dec9(stages.up8(x) + x1)


def _init_convs(
    module: nn.Module, init: Callable[[torch.Tensor], torch.Tensor]
) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            init(m.weight)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def kaiming_init(module: nn.Module) -> nn.Module:
    """Reference §4.5: Kaiming-normal Conv3d weights, BatchNorm3d to (1, 0).

    ConvTranspose3d layers and all biases keep PyTorch's default initialisation, as in the
    reference code.
    """
    return _init_convs(module, nn.init.kaiming_normal_)


def xavier_init(module: nn.Module) -> nn.Module:
    """As :func:`kaiming_init` with Xavier-normal weights (branch B of the CPS baselines)."""
    return _init_convs(module, nn.init.xavier_normal_)


INITIALISERS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "kaiming": kaiming_init,
    "xavier": xavier_init,
    "default": lambda m: m,
}


class VNetDecoder(nn.Module):
    """The decoder stages, head and dropout of ``net``, run on another V-Net's encoder maps.

    DST's pseudo and worst-case decoders (reference §4.2): they share the main network's
    encoder. The modules are ``net``'s own (registered here under the same names).
    """

    def __init__(self, net: VNet) -> None:
        super().__init__()
        for name in ("up5", "dec6", "up6", "dec7", "up7", "dec8", "up8", "dec9", "head",
                     "dropout"):
            setattr(self, name, getattr(net, name))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Logits (B, K, D, H, W) from the encoder maps x1 … x5 of :meth:`VNet.encode`."""
        return self.head(self.dropout(_decode(self, feats)))


def set_vnet_dropout(module: nn.Module, p: float) -> None:
    """Set the Dropout3d probability of every V-Net (and V-Net decoder) inside ``module``.

    The reference builds every V-Net with ``Dropout3d(0.5)`` (§4.1); ``train.dropout``
    changes it for a run. Other networks' dropout layers (URPC's decoder) are left as they
    are.
    """
    for sub in module.modules():
        if isinstance(sub, (VNet, VNetDecoder)) and isinstance(sub.dropout, nn.Dropout3d):
            sub.dropout.p = float(p)
