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


class VGGTeacher(nn.Module):
    """A VGG-class teacher: four stages of two 3x3 conv + BN + ReLU, max-pooled (48→24→12→6→3).

    The shape of the best published single network on FER2013 without extra data (Khaireddin
    & Chen 2021, 73.3%), with a pooled head instead of their 4096-wide fully connected layers
    (fewer parameters, same accuracy in their ablations). 4.7 M parameters, 0.47 G MACs: far
    too slow for the daemon, cheap on a GPU. It only ever labels views for a student.
    """

    def __init__(self, classes: int = 7, dropout: float = 0.4, widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for c in widths:
            layers += [conv_bn(cin, c), conv_bn(c, c), nn.MaxPool2d(2)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.fc(self.dropout(x))


ARCHS = ("emonet", "vgg")


def build_net(args: dict) -> nn.Module:
    """The network a checkpoint's ``args`` describe (older checkpoints have no ``arch``)."""
    arch = args.get("arch", "emonet")
    if arch == "vgg":
        return VGGTeacher()
    if arch != "emonet":
        raise ValueError(f"unknown network arch {arch!r}; known: {', '.join(ARCHS)}")
    return EmoNet(width=args["width"], residual=args.get("residual", False), deep=args.get("deep", False))


class Ensemble(torch.nn.Module):
    """Mean of the members' probabilities: one file, one input, one output.

    Members trained with different seeds make different mistakes; averaging them is worth
    more accuracy than the same CPU time spent on one longer run (and costs one more
    0.3 ms network per face at inference).
    """

    def __init__(self, nets: list[torch.nn.Module], folds: list | None = None) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)
        # Per net: ((K, N), faces in the split) when trained with --fold K/N, else None.
        self.folds = folds or [None] * len(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [torch.softmax(net(x), dim=1) for net in self.nets]
        return probs[0] if len(probs) == 1 else torch.stack(probs).mean(dim=0)


def load_trained(checkpoints: list[Path]) -> Ensemble:
    nets, folds = [], []
    for path in checkpoints:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        net = build_net(ck["args"])
        # Teachers may come back from the GPU in bf16 (smaller files): the nets run in fp32.
        state = ck["state_dict"]
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        nets.append(net)
        fold, n_total = ck["args"].get("fold"), ck["args"].get("n_total")
        if fold:
            k, _, n = str(fold).partition("/")
            folds.append(((int(k), int(n)), n_total))
        else:
            folds.append(None)
    return Ensemble(nets, folds).eval()
