"""Networks of the DHC reference code.

:class:`VNet` is the plain (non-residual) V-Net used by DHC and most baselines of the paper
(Wang & Li, MICCAI 2023, reference §4.1): BatchNorm, additive skip connections, Dropout3d on
the bottleneck and before the head. Its parameter count equals the reference network's
(every convolution carries a bias, as ``nn.Conv3d`` does by default).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


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
        f = base_filters
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.enc1 = _conv_stage(1, in_channels, f)
        self.down1 = _down(f, 2 * f)
        self.enc2 = _conv_stage(2, 2 * f, 2 * f)
        self.down2 = _down(2 * f, 4 * f)
        self.enc3 = _conv_stage(3, 4 * f, 4 * f)
        self.down3 = _down(4 * f, 8 * f)
        self.enc4 = _conv_stage(3, 8 * f, 8 * f)
        self.down4 = _down(8 * f, 16 * f)
        self.enc5 = _conv_stage(3, 16 * f, 16 * f)
        self.up5 = _up(16 * f, 8 * f)
        self.dec6 = _conv_stage(3, 8 * f, 8 * f)
        self.up6 = _up(8 * f, 4 * f)
        self.dec7 = _conv_stage(3, 4 * f, 4 * f)
        self.up7 = _up(4 * f, 2 * f)
        self.dec8 = _conv_stage(2, 2 * f, 2 * f)
        self.up8 = _up(2 * f, f)
        self.dec9 = _conv_stage(1, f, f)
        self.head = nn.Conv3d(f, num_classes, kernel_size=1, padding=0)
        self.dropout = nn.Dropout3d(p=0.5, inplace=False) if has_dropout else nn.Identity()

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five encoder feature maps, finest first (x1 … x5, x5 after dropout)."""
        x1 = self.enc1(x)
        x2 = self.enc2(self.down1(x1))
        x3 = self.enc3(self.down2(x2))
        x4 = self.enc4(self.down3(x3))
        x5 = self.dropout(self.enc5(self.down4(x4)))
        return [x1, x2, x3, x4, x5]

    def decode_features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The last decoder feature (B, F, D, H, W) before dropout and the 1×1×1 head."""
        x1, x2, x3, x4, x5 = feats
        x = self.dec6(self.up5(x5) + x4)
        x = self.dec7(self.up6(x) + x3)
        x = self.dec8(self.up7(x) + x2)
        return self.dec9(self.up8(x) + x1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, D, H, W)`` for an image batch ``(B, C, D, H, W)``."""
        return self.head(self.dropout(self.decode_features(self.encode(x))))


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
