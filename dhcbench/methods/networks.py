"""Networks of the DHC reference code.

:class:`VNet` is the plain (non-residual) V-Net used by DHC and most baselines of the paper
(Wang & Li, MICCAI 2023, reference §4.1): BatchNorm, additive skip connections, Dropout3d on
the bottleneck and before the head. Its parameter count equals the reference network's
(every convolution carries a bias, as ``nn.Conv3d`` does by default).
"""

from __future__ import annotations

import math
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


class UNet3DDeepSup(nn.Module):
    """URPC's 3D U-Net with four deep-supervision heads (reference §4.3).

    Filters F/2, F, 2F, 4F, 8F (16/32/64/128/256 for F = 32, the reference's
    ``feature_scale=4``); two 3×3×3 conv + InstanceNorm3d (affine False, as the reference
    builds despite its flag name) + ReLU per block; max-pool down, trilinear ×2 up and
    concatenation; Dropout3d 0.5/0.3/0.2/0.1 after the four up blocks; 1×1×1 heads on every
    decoder level, upsampled to full resolution. Train mode returns the four logits maps
    (finest first), eval mode the finest only. Kaiming-normal conv weights.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 14, base_filters: int = 32
                 ) -> None:
        super().__init__()
        f = [max(1, base_filters // 2) * m for m in (1, 2, 4, 8, 16)]

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, padding=1), nn.InstanceNorm3d(cout), nn.ReLU(inplace=True),
                nn.Conv3d(cout, cout, 3, padding=1), nn.InstanceNorm3d(cout),
                nn.ReLU(inplace=True),
            )

        self.down = nn.ModuleList([block(in_channels, f[0])] +
                                  [block(f[i], f[i + 1]) for i in range(4)])
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList([block(f[i + 1] + f[i], f[i]) for i in reversed(range(4))])
        self.drops = nn.ModuleList(nn.Dropout3d(p) for p in (0.5, 0.3, 0.2, 0.1))
        self.heads = nn.ModuleList(nn.Conv3d(f[i], num_classes, 1) for i in reversed(range(4)))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else self.pool(x))
            skips.append(x)
        outputs = []
        size = skips[0].shape[2:]
        x = skips[-1]
        for j, (blk, drop, head) in enumerate(zip(self.up, self.drops, self.heads, strict=True)):
            skip = skips[-2 - j]
            x = nn.functional.interpolate(x, size=skip.shape[2:], mode="trilinear",
                                          align_corners=False)
            x = drop(blk(torch.cat([skip, x], dim=1)))
            out = head(x)
            if out.shape[2:] != size:
                out = nn.functional.interpolate(out, size=size, mode="trilinear",
                                                align_corners=False)
            outputs.append(out)
        outputs.reverse()  # finest (dsv1) first
        return outputs if self.training else outputs[0]


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # noqa: ANN001
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return -ctx.coeff * grad, None


class WarmStartGRL(nn.Module):
    """Gradient reversal with a warm-start coefficient (DST, Chen et al., NeurIPS 2022):
    ``2 (hi - lo) / (1 + exp(-alpha i / N)) - (hi - lo) + lo`` after i ``step()`` calls
    (reference §4.2: alpha 1, lo 0, hi 0.1, N 500)."""

    def __init__(self, alpha: float = 1.0, lo: float = 0.0, hi: float = 0.1,
                 max_iters: int = 500) -> None:
        super().__init__()
        self.alpha, self.lo, self.hi, self.max_iters = alpha, lo, hi, max_iters
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))

    def coefficient(self) -> float:
        i = float(self.iters)
        span = self.hi - self.lo
        return float(2.0 * span / (1.0 + math.exp(-self.alpha * i / self.max_iters))
                     - span + self.lo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GradReverse.apply(x, self.coefficient())

    def step(self) -> None:
        self.iters += 1


class VNetDecoupled(nn.Module):
    """DST's network (reference §4.2): one V-Net encoder and three decoders of the V-Net's
    architecture — ``main``, ``pseudo`` and ``worst`` (the worst-case decoder sees the encoder
    features through a warm-start gradient reversal layer). Train mode returns the three
    logits maps; eval mode the main decoder's only."""

    def __init__(self, in_channels: int = 1, num_classes: int = 14, base_filters: int = 32
                 ) -> None:
        super().__init__()
        self.main = VNet(in_channels, num_classes, base_filters, has_dropout=True)
        template = VNet(in_channels, num_classes, base_filters, has_dropout=True)
        self.pseudo = _decoder_of(template)
        self.worst = _decoder_of(VNet(in_channels, num_classes, base_filters, has_dropout=True))
        self.grl = WarmStartGRL()

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feats = self.main.encode(x)
        main = self.main.head(self.main.dropout(self.main.decode_features(feats)))
        if not self.training:
            return main
        pseudo = self.pseudo(feats)
        worst = self.worst([self.grl(f) for f in feats])
        return main, pseudo, worst


class _Decoder(nn.Module):
    """A V-Net decoder (and head) reused on another V-Net's encoder features."""

    def __init__(self, net: VNet) -> None:
        super().__init__()
        for name in ("up5", "dec6", "up6", "dec7", "up7", "dec8", "up8", "dec9", "head",
                     "dropout"):
            setattr(self, name, getattr(net, name))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x1, x2, x3, x4, x5 = feats
        x = self.dec6(self.up5(x5) + x4)
        x = self.dec7(self.up6(x) + x3)
        x = self.dec8(self.up7(x) + x2)
        x = self.dec9(self.up8(x) + x1)
        return self.head(self.dropout(x))


def _decoder_of(net: VNet) -> _Decoder:
    return _Decoder(net)


class SSNetHeads(nn.Module):
    """SS-Net's heads on the V-Net's last decoder feature (reference §4.1, VNet4SSNet):
    projection and prediction MLPs (F -> 64 -> 64) and, per class, two selector MLPs
    (64 -> 64 -> 1) that weigh features and memory entries."""

    def __init__(self, base_filters: int, num_classes: int, dim: int = 64) -> None:
        super().__init__()

        def mlp(cin: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(cin, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                                 nn.Linear(dim, dim))

        def selector() -> nn.Sequential:
            return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim),
                                 nn.LeakyReLU(0.2, inplace=True), nn.Linear(dim, 1))

        self.projection = mlp(base_filters)
        self.prediction = mlp(dim)
        self.selector = nn.ModuleList(selector() for _ in range(num_classes))
        self.selector_memory = nn.ModuleList(selector() for _ in range(num_classes))
