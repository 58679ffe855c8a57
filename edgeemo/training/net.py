"""The emotion network: plain 3x3 conv + BN + ReLU stacks, chosen for the CPU budget.

Measured on the 2-core dev VM: plain convolutions train 2-3x faster per MAC in PyTorch than
depthwise-separable blocks, and every op here (conv, add, mean, fully connected, relu)
maps onto the Edge TPU. Strided convs downsample early so the 48x48 stage stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class EmoNet(nn.Module):
    """48x48x1 in [0, 1] → 7 logits (FER2013 order)."""

    def __init__(
        self,
        width: int = 32,
        classes: int = 7,
        dropout: float = 0.3,
        residual: bool = False,
        deep: bool = False,
    ) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [
            conv_bn(1, w),
            conv_bn(w, w, 2),  # 24x24
            conv_bn(w, 2 * w),
            conv_bn(2 * w, 2 * w, 2),  # 12x12
            conv_bn(2 * w, 4 * w),
        ]
        if deep:  # one more conv per low-resolution stage: 90 M MACs instead of 48 M
            layers.append(conv_bn(4 * w, 4 * w))
        if residual:
            layers.append(Residual(4 * w))
        layers += [conv_bn(4 * w, 4 * w, 2), conv_bn(4 * w, 8 * w)]  # 6x6
        if deep:
            layers.append(conv_bn(8 * w, 8 * w))
        if residual:
            layers.append(Residual(8 * w))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pooling rather than .mean(dim=(2, 3)): the latter exports with a TRANSPOSE.
        x = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.fc(self.dropout(x))


class Ensemble(torch.nn.Module):
    """Mean of the members' probabilities: one file, one input, one output.

    Members trained with different seeds make different mistakes; averaging them is worth
    more accuracy than the same CPU time spent on one longer run (and costs one more
    0.3 ms network per face at inference).
    """

    def __init__(self, nets: list[torch.nn.Module]) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [torch.softmax(net(x), dim=1) for net in self.nets]
        return probs[0] if len(probs) == 1 else torch.stack(probs).mean(dim=0)


def load_trained(checkpoints: list[Path]) -> Ensemble:
    nets = []
    for path in checkpoints:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        args = ck["args"]
        net = EmoNet(width=args["width"], residual=args.get("residual", False), deep=args.get("deep", False))
        net.load_state_dict(ck["state_dict"])
        nets.append(net)
    return Ensemble(nets).eval()
